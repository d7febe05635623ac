/**
 * The `process` runtime: each star is a Linux process in its own cgroup (limits) and its own
 * pid, mount, uts and ipc namespaces (network optional), running as an unprivileged user with
 * no-new-privileges. The node's launcher (native/star-shim.c) clones each star's init, which
 * joins the cgroups and namespaces before the program's first instruction and stays as the
 * star's tiny pid 1.
 *
 * State: <dataDir>/runtime.db (star-state.ts). Files of a star, under <dataDir>/stars/<id>/
 * (0700, root's: the star sees only what its sandbox binds, docs/security.md):
 *   stdout.log, stderr.log   the program's output, relayed and rotated by its init
 *   end                      how the last run ended ("exit N" | "signal N"), written by the init
 *   ctl                      the init's socket for exec health checks (root only)
 *   script/                  the star's transpiled script (root's, readable by its group)
 *   work/                    default working directory, owned by the star's user
 *   disk.img, disk/          with disk_mb: its filesystem (work/, tmp/, var-tmp/, run-lock/)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, statSync, watch } from "node:fs";
import { connect } from "node:net";
import { appendFile, chmod, mkdir, readFile, readdir, rm } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  InvalidArgumentError,
  LimitUnenforceableError,
  RuntimeUnavailableError,
  ScriptError,
  StarExistsError,
  StartFailedError,
} from "../../model/errors.js";
import type { CgroupDriver, StarCgroup } from "../cgroup/cgroup.js";
import { CgroupNoneDriver } from "../cgroup/cgroup-none.js";
import { detectCgroups, nodeCgroupsBusy } from "../cgroup/detect.js";
import { type NodeClaim, claimNode, nodeCgroupParent } from "../node-claim.js";
import { stamp } from "../logs.js";
import { mayEnter } from "../reader-view.js";
import { type ScriptAccess, resolveProgram } from "../script.js";
import { DEFAULT_NODE_LIMITS, DNS_LABEL, type Limits, type NodeCapacity, type StarSpec, type StarSpecInput, limitsOf, parseStarSpec } from "../../model/spec.js";
import { type RunHandle, type StarRecord, SupervisedRuntime } from "../supervisor.js";
import type { Orphan, StartOptions } from "../types.js";
import type { LogLine, LogOptions, StarStats, StarStatus } from "../../model/status.js";
import { type ProbeResult, probeWithin } from "../health.js";
import { checkHostRoom, diskLimitSupport, mountStarDisk, unmountStarDisk } from "./disk.js";
import { HIDDEN, SCRATCH_PLACES, checkHostPaths, isUnder, sandboxArgs } from "./sandbox.js";
import { Launcher, signalName } from "./launcher.js";
import { type RunInfo, type SavedStar, StarStateDb, findInit, pidNamespace, processInfo, processStart, readEnd } from "./star-state.js";

export interface ProcessRuntimeOptions {
  /** Where stars' files live (<dataDir>/stars/<id>). */
  dataDir: string;
  /** Cgroup driver (default: detected). */
  cgroups?: CgroupDriver;
  /** Run even where limits cannot be enforced; such stars are marked limitsEnforced: false. */
  devMode?: boolean;
  /**
   * One user for every star (tests, dev). By default each star gets a user of its own,
   * `uidBase` + n (uid = gid), so stars cannot read or change each other's files.
   */
  user?: { uid: number; gid: number };
  /** The node's capacity (default: this machine's cores and memory). */
  capacity?: NodeCapacity;
  /**
   * What this node owns on the host: its id (its cgroups are constellation/<id>/process) and its uid
   * range (node-claim.ts). Default: the data dir's claim, made on first use.
   */
  claim?: NodeClaim;
  /** First uid of the per-star users (default: the claim's range). */
  uidBase?: number;
  /** How many uids this node's stars take from uidBase (default: the claim's range but its last uid), handed out in turn. */
  uidCount?: number;
  /**
   * Paths hidden from every star besides /home, /root, /run/user and this runtime's data dir
   * (the constellation's data dir, with its store and admin token).
   */
  hide?: string[];
  /** The launcher binary (default: the one built into dist/native). */
  shimPath?: string;
  /**
   * For measurement only (bench/runtime): `false` starts stars without their view of the host
   * (read-only tree, hidden and private places) and without the system call filter, as before
   * issue 8, so a benchmark can show what the sandbox costs. Never for real stars.
   */
  sandbox?: boolean;
}

const DEFAULT_SHIM = fileURLToPath(new URL("../../../native/star-shim", import.meta.url));
const SAVE_RETRY_MS = 1000;
/** How often each running star's init is checked for life. */
const LIVENESS_MS = 2000;

export class ProcessRuntime extends SupervisedRuntime {
  readonly kind = "process";
  private readonly cgroupOf = new Map<string, StarCgroup>();
  private readonly children = new Set<ChildProcess>();
  private launcher: Launcher | undefined;
  private readonly groupIdOf = new Map<string, string>();
  private readonly runInfo = new Map<string, RunInfo>();
  private readonly uids = new Map<string, number>();
  /** The next uid to hand out: uids go round the node's range, so one is reused as late as can be. */
  private nextUid: number | undefined;
  private readonly cleaning = new Map<string, Promise<void>>();
  /** Each running star's init, checked every LIVENESS_MS (two misses in a row: its run is over). */
  private readonly liveness = new Map<string, { pid: number; start: number; misses: number; gone: () => void }>();
  private livenessTimer: NodeJS.Timeout | undefined;
  /** Stars whose last state could not be written to runtime.db (a full disk): tried again every second. */
  private readonly unsaved = new Set<string>();
  private saveRetry: NodeJS.Timeout | undefined;
  /** Watches of inits we follow by their files (closed with the runtime). */
  private readonly exitWatches = new Set<() => void>();

  private constructor(
    private readonly options: ProcessRuntimeOptions & { claim: NodeClaim; cgroups: CgroupDriver; shimPath: string },
    private readonly isolated: boolean,
    private readonly db: StarStateDb,
  ) {
    super(options.capacity ?? { cpuCores: availableParallelism(), memoryBytes: totalmem() });
  }

  static async create(options: ProcessRuntimeOptions): Promise<ProcessRuntime> {
    if (process.platform !== "linux") throw new RuntimeUnavailableError(`the process runtime needs Linux (this is ${process.platform})`);
    const root = process.getuid?.() === 0;
    if (!root && !options.devMode) {
      throw new RuntimeUnavailableError(
        "the process runtime needs root to create namespaces and cgroups: run the agent as root, or in dev mode (limits not enforced)",
      );
    }
    // Everything of this node on the host is named by it: cgroups, uids (issue 9, break 5).
    const claim = options.claim ?? claimNode(options.dataDir, root ? { busy: (id) => nodeCgroupsBusy(id) } : { registry: null });
    // Without root the cgroup tree is not ours to write (dev mode): nothing is limited or measured.
    const cgroups = options.cgroups ?? (root ? await detectCgroups({ parent: nodeCgroupParent(claim, "process") }) : new CgroupNoneDriver("not root: cgroups are not writable"));
    // Root's alone: stars see their own files only through their sandbox's binds.
    await mkdir(join(options.dataDir, "stars"), { recursive: true, mode: 0o700 });
    if (root) await chmod(join(options.dataDir, "stars"), 0o700);
    let db: StarStateDb;
    try {
      db = StarStateDb.open(options.dataDir);
    } catch (err) {
      const busy = (err as { code?: string }).code === "SQLITE_BUSY";
      throw new RuntimeUnavailableError(
        busy
          ? `the data dir ${options.dataDir} is in use by another agent (runtime.db is locked): stop it or use another data dir`
          : `cannot open ${join(options.dataDir, "runtime.db")}: ${(err as Error).message}`,
      );
    }
    const rt = new ProcessRuntime({ ...options, claim, cgroups, shimPath: options.shimPath ?? DEFAULT_SHIM }, root, db);
    // (Started on first use; recovery may start a star whose start a crash cut short.)
    if (root) rt.launcher = new Launcher(rt.options.shimPath);
    // Stars a previous agent left here are ours again before anything else touches cgroups.
    await rt.recover();
    return rt;
  }

  /** The node's uids for process stars: its range but the last uid, the isolate host's (isolate-runtime.ts). */
  private uidRange(): { base: number; count: number } {
    return { base: this.options.uidBase ?? this.options.claim.uidBase, count: this.options.uidCount ?? this.options.claim.uidCount - 1 };
  }

  /** The star's own user: given once, kept for its life (saved with its state). */
  private userOf(id: string): { uid: number; gid: number } {
    if (this.options.user) return this.options.user;
    let uid = this.uids.get(id);
    if (uid === undefined) {
      const used = new Set(this.uids.values());
      const { base, count } = this.uidRange();
      if (used.size >= count) throw new RuntimeUnavailableError(`all ${count} star users of this node are taken: remove stars, or give the node a larger uid range`);
      const last = Math.max(base - 1, ...used);
      let next = this.nextUid ?? last + 1;
      for (let i = 0; i < count; i++, next++) {
        if (next >= base + count) next = base;
        if (!used.has(next)) break;
      }
      uid = next;
      this.nextUid = uid + 1;
      this.uids.set(id, uid);
    }
    return { uid, gid: uid };
  }

  private dir(id: string): string {
    return join(this.options.dataDir, "stars", id);
  }

  protected async admit(spec: StarSpec, limits: Limits): Promise<boolean> {
    const caps = this.options.cgroups.capabilities();
    const problems: Array<[string, string]> = [];
    if (!this.isolated) problems.push(["isolation", "not running as root"]);
    if (limits.cpuMillis !== undefined && !caps.cpu) problems.push([spec.cpu_cores !== undefined ? "cpu_cores" : "cpu_percent", caps.missing.join("; ")]);
    if (limits.memoryBytes !== undefined && !caps.memory) problems.push([spec.ram_gb !== undefined ? "ram_gb" : "ram_mb", caps.missing.join("; ")]);
    if (!caps.pids) problems.push(["pids", caps.missing.join("; ")]);
    if (limits.diskBytes !== undefined) {
      const missing = this.isolated ? await diskLimitSupport() : "not running as root";
      if (missing) problems.push(["disk_mb", missing]);
      else await checkHostRoom(this.options.dataDir, limits.diskBytes);
    }
    if (problems.length === 0) return true;
    if (this.options.devMode) return false;
    const [limit, missing] = problems[0]!;
    throw new LimitUnenforceableError(limit, missing || "not supported here");
  }

  protected async check(spec: StarSpec, trusted: boolean): Promise<void> {
    const program = await this.program(spec, trusted ? {} : { reader: "all", refuseUnder: this.unseenPlaces() });
    // An admin's script's directory is shown to its star.
    const shown = trusted && program.source ? [dirname(program.source)] : [];
    if (this.isolated) await checkHostPaths(spec, this.dataDirs(), shown);
  }

  /** The argv to run (scripts checked and transpiled). */
  private async program(spec: StarSpec, access: ScriptAccess) {
    const program = await resolveProgram(spec, access);
    if (this.isolated && program.source && underTmp(program.source)) {
      throw new ScriptError(program.source, "is under /tmp, which the star cannot see (its /tmp is private): keep scripts elsewhere");
    }
    if (this.isolated && spec.cwd && underTmp(resolve(spec.cwd))) {
      throw new InvalidArgumentError("cwd", `cwd ${spec.cwd} is under /tmp, which the star replaces with its private /tmp`);
    }
    return program;
  }

  /** Where a star's child may not name a script: what stars do not see of the host. */
  private unseenPlaces(): string[] {
    return [...this.hiddenPlaces(), ...SCRATCH_PLACES, "/dev/shm", "/proc"];
  }

  /** What no star sees of the host (docs/security.md). */
  private hiddenPlaces(): string[] {
    return [...HIDDEN, ...this.dataDirs()];
  }

  /** The node's own places: this runtime's data dir, and what the node asked to hide. */
  private dataDirs(): string[] {
    return [resolve(this.options.dataDir), ...(this.options.hide ?? []).map((h) => resolve(h))];
  }

  protected async launch(rec: StarRecord): Promise<RunHandle> {
    // A star started again right after its last run: that run's cleanup (its cgroup) goes first.
    await this.cleaning.get(rec.id)?.catch(() => undefined);
    const dir = this.dir(rec.id);
    const { uid, gid } = this.userOf(rec.id);
    // The star's directory (root's); the init makes work/ and the scratch places, the star's own.
    // (Not recursive: Node's recursive mkdir reports a full disk as ENOENT; stars/ is made at create.)
    await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
    });
    if (this.options.sandbox === false) {
      // Measurement only: no binds, so the star reaches its work dir through the host's paths.
      for (const d of [this.options.dataDir, dirname(dir), dir]) await chmod(d, 0o711);
    }
    // The script as the star may read it (an admin's: as root), checked on the file that is read,
    // at every start; a transpiled one is written where only root and the star can read it.
    const program = await this.program(rec.spec, {
      ...(rec.trusted ? {} : { reader: { uid, gid }, refuseUnder: this.unseenPlaces() }),
      cacheDir: join(dir, "script"),
      cacheReader: { uid, gid },
    });

    // With disk_mb, the star's writable places live on its own size-limited filesystem.
    const base = rec.limits.diskBytes !== undefined && this.isolated ? await mountStarDisk(dir, rec.limits.diskBytes) : dir;
    // A star with a root of its own starts in its "/" (its work directory is not inside the root).
    // Its work directory is its own and writable (its HOME). A script's star starts in its
    // script's directory (read-only to it, as PM2 starts a script where it is) if its user may
    // enter it, unless told.
    const work = rec.spec.cwd === undefined && !rec.spec.root ? join(base, "work") : undefined;
    const scriptDir = work && program.source && (await mayEnter(dirname(program.source), { uid, gid })) ? dirname(program.source) : undefined;
    const cwd = rec.spec.cwd ?? (rec.spec.root ? "/" : (scriptDir ?? work!));
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
      HOME: work ?? cwd,
      CONSTELLATION_STAR: rec.id,
      CONSTELLATION_STAR_NAME: rec.spec.name,
      ...rec.spec.env,
    };
    let cgroup = this.cgroupOf.get(rec.id);
    let oomBefore = 0;
    if (this.isolated) {
      const args = ["-H", rec.spec.name, "-u", String(uid), "-g", String(gid), cwd === work ? "-W" : "-d", cwd];
      if (work && cwd !== work) args.push("-w", work);
      args.push("-s", join(dir, "end"), "-k", join(dir, "ctl"), "-n", String(rec.limits.nofile ?? 1024));
      if (this.options.sandbox !== false) {
        const cgroupDirs = (cgroup ?? this.options.cgroups.handle(rec.id)).procsFiles.map((f) => dirname(f));
        args.push(...sandboxArgs({ spec: rec.spec, limits: rec.limits, trusted: rec.trusted, starDir: dir, base, work, program, hidden: this.hiddenPlaces(), cgroupDirs }));
      } else {
        args.push("-T", `/tmp=${join(base, "tmp")}`); // as before: a private /tmp on disk
      }
      args.push("-o", join(dir, "stdout.log"), "-e", join(dir, "stderr.log"));
      args.push("-L", String(Math.round(rec.spec.log_max_mb * 2 ** 20)), "-K", String(rec.spec.log_max_files - 1));
      for (const [k, v] of Object.entries(env)) args.push("-E", `${k}=${v}`);
      if (rec.spec.network === "none") args.push("-N");
      args.push("--", ...program.argv);
      // The launcher's child makes the cgroup, writes the limits and joins, then unshares.
      const setup: string[] = [];
      if (cgroup) {
        oomBefore = (await cgroup.stats()).oomKills;
        for (const f of cgroup.procsFiles) setup.push("-c", f);
      } else {
        const plan = await this.options.cgroups.plan(rec.id, rec.limits);
        for (const d of plan.mkdirs) setup.push("-D", d);
        for (const [f, v] of plan.writes) setup.push("-F", `${f}=${v}`);
        for (const f of plan.procsFiles) setup.push("-c", f);
      }
      // Known before the launch, so that cleanup removes the group even if the start fails.
      cgroup ??= this.options.cgroups.handle(rec.id);
      this.cgroupOf.set(rec.id, cgroup);
      this.groupIdOf.set(rec.id, rec.id);
      // A start that fails says why where its output would have been (`logs` shows it).
      const launched = await this.launcher!.launch(rec.id, [...setup, ...args]).catch(async (err: unknown) => {
        await appendFile(join(dir, "stderr.log"), `${stamp()}[constellation] failed to start: ${(err as Error).message}\n`, { mode: 0o640 }).catch(() => undefined);
        throw err;
      });
      const info: RunInfo = {
        groupId: rec.id,
        shimPid: launched.shimPid,
        shimStart: processStart(launched.shimPid) ?? 0,
        initPid: launched.initPid,
        initStart: processStart(launched.initPid) ?? 0,
        oomBefore,
      };
      this.runInfo.set(rec.id, info);
      this.changed(rec); // on disk with its pids before anything else can go wrong
      // The launcher lost (it ends with the runtime): watch for the end, unless the runtime is
      // closed (a watch begun then would never be stopped, and hold the process open).
      const exited = launched.exited.then((e) => (!e.lost ? e : this.closed ? new Promise<never>(() => undefined) : watchExit(dir, info, this.exitWatches)));
      return this.handle(rec.id, launched.pid, info, cgroup, exited);
    }

    // Dev mode without root: a plain child process, nothing isolated or limited.
    if (!cgroup) {
      cgroup = await this.options.cgroups.create(rec.id, rec.limits);
      this.groupIdOf.set(rec.id, rec.id);
    }
    if (work) await mkdir(work, { recursive: true });
    await rm(join(dir, "end"), { force: true });
    const out = openSync(join(dir, "stdout.log"), "a", 0o640);
    const err = openSync(join(dir, "stderr.log"), "a", 0o640);
    let child: ChildProcess;
    try {
      child = spawn(program.argv[0]!, program.argv.slice(1), { stdio: ["ignore", out, err], env, cwd, detached: true });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    this.cgroupOf.set(rec.id, cgroup);
    this.children.add(child);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", () => resolve({ code: null, signal: null }));
    });
    void exited.then(() => this.children.delete(child));
    const info: RunInfo = { groupId: rec.id, shimPid: child.pid ?? 0, shimStart: processStart(child.pid ?? 0) ?? 0, initPid: 0, oomBefore };
    this.runInfo.set(rec.id, info);
    return this.handle(rec.id, child.pid ?? 0, info, cgroup, exited);
  }

  /** A run of star `id`: how to end it, and how its end is learned (`exited`: the shim is gone). */
  private handle(
    id: string,
    pid: number,
    info: RunInfo,
    group: StarCgroup,
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
  ): RunHandle {
    const dir = this.dir(id);
    // However its end is learned (the launcher, the end file), the init's process is checked
    // too: a run whose init is gone is over, even if no word of it came (issue 9).
    const gone = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      if (info.initPid) this.liveness.set(id, { pid: info.initPid, start: info.initStart ?? info.shimStart, misses: 0, gone: () => resolve({ code: null, signal: null }) });
    });
    this.livenessTimer ??= setInterval(() => this.checkLiveness(), LIVENESS_MS);
    this.livenessTimer.unref();
    const ended = Promise.race([exited, gone]).then(async ({ code, signal }) => {
      if (this.liveness.get(id)?.pid === info.initPid) this.liveness.delete(id);
      const end = this.isolated ? await readEnd(join(dir, "end")) : undefined;
      const oomKills = await group.stats().then((s) => s.oomKills).catch(() => info.oomBefore);
      // An init that is gone without writing the end was killed outright (by our stop's SIGKILL,
      // say) — when the launcher did not see it, that is all there is to know.
      const killed = this.isolated && !end && code === null && signal === null;
      return {
        exitCode: end ? end.exitCode : code,
        signal: end ? (end.signal === null ? null : signalName(end.signal)) : killed ? "SIGKILL" : signal,
        oomKilled: oomKills > info.oomBefore,
      };
    });
    return {
      pid,
      ended,
      // Signals go only to the very processes we started (pid and start time), never to a
      // process that later got a recycled pid.
      terminate: () => signalPid(info.shimPid, "SIGTERM", info.shimStart),
      kill: () => {
        if (info.initPid) {
          // The init's death takes the whole pid namespace with it (the launcher sees the signal).
          signalPid(info.initPid, "SIGKILL", info.initStart);
        } else {
          signalPid(info.shimPid, "SIGKILL", info.shimStart);
          void group.killAll("SIGKILL").catch(() => undefined);
        }
      },
    };
  }

  protected override changed(rec: StarRecord): void {
    if (this.closed) return; // a closed runtime no longer speaks for its stars
    const running = rec.status.state === "running" || rec.status.state === "starting";
    const run = running ? this.runInfo.get(rec.id) : undefined;
    const saved: SavedStar = { version: 1, spec: rec.spec, status: rec.status, history: rec.history, stopRequested: rec.stopRequested, trusted: rec.trusted };
    if (rec.identity) saved.identity = rec.identity;
    const uid = this.uids.get(rec.id);
    if (uid !== undefined) saved.uid = uid;
    if (run) saved.run = run;
    if (!this.stars.has(rec.id)) return; // removed
    try {
      this.db.save(rec.id, saved);
      this.unsaved.delete(rec.id);
    } catch {
      // A full disk, say: the state is kept in memory and written when there is room again.
      this.unsaved.add(rec.id);
      this.saveRetry ??= setInterval(() => this.saveAgain(), SAVE_RETRY_MS);
      this.saveRetry.unref();
    }
  }

  private checkLiveness(): void {
    for (const [id, w] of this.liveness) {
      if (processStart(w.pid) === w.start) {
        w.misses = 0;
      } else if (++w.misses >= 2) {
        this.liveness.delete(id);
        w.gone();
      }
    }
  }

  /** Writes the states a full disk (or any error) kept from runtime.db, until none is left. */
  private saveAgain(): void {
    for (const id of [...this.unsaved]) {
      const rec = this.stars.get(id);
      if (rec) this.changed(rec);
      else this.unsaved.delete(id);
      if (this.unsaved.has(id)) break; // still no room: the rest waits for the next round
    }
    if (this.unsaved.size === 0 || this.closed) {
      clearInterval(this.saveRetry);
      this.saveRetry = undefined;
    }
  }

  /**
   * Takes back the stars a previous agent left on this node: running ones are re-attached (their
   * state, stats and logs continue), ones that ended meanwhile get their restart policy applied.
   * create() does this first; calling it again only picks up stars not yet known.
   */
  async recover(): Promise<StarStatus[]> {
    const root = join(this.options.dataDir, "stars");
    await this.importStateFiles(root);
    const recovered: StarStatus[] = [];
    for (const { id, saved } of this.db.all()) {
      if (this.stars.has(id) || !DNS_LABEL.test(id)) continue;
      if (saved.uid !== undefined) this.uids.set(id, saved.uid);
      const spec = parseStarSpec(saved.spec);
      const rec: StarRecord = {
        id,
        spec,
        trusted: saved.trusted ?? true,
        ...(saved.identity ? { identity: saved.identity } : {}),
        limits: recoveredLimits(spec, this.capacity),
        status: saved.status,
        history: saved.history,
        stopRequested: saved.stopRequested,
        waiters: [],
      };
      const run = saved.run;
      const group = run ? await this.options.cgroups.open(run.groupId) : undefined;
      if (run && group) {
        this.cgroupOf.set(id, group);
        this.groupIdOf.set(id, run.groupId);
        this.runInfo.set(id, run);
      }
      if (run && group && (saved.status.state === "running" || saved.status.state === "starting")) {
        const end = await readEnd(join(root, id, "end"));
        const alive = processStart(run.shimPid) === run.shimStart;
        if (end || !alive) {
          const oomKills = await group.stats().then((s) => s.oomKills).catch(() => run.oomBefore);
          this.adopt(rec, {
            ended: {
              exitCode: end ? end.exitCode : null,
              signal: end ? (end.signal === null ? null : signalName(end.signal)) : "SIGKILL",
              oomKilled: oomKills > run.oomBefore,
            },
          });
        } else {
          this.adopt(rec, { run: this.handle(id, saved.status.pid ?? 0, run, group, watchExit(join(root, id), run, this.exitWatches)) });
        }
      } else if (saved.status.state === "running" || saved.status.state === "starting") {
        // Its pids were never recorded (the agent died mid-start: the init may have been made,
        // or not yet) or its cgroup is gone (the node rebooted). A star that runs is taken back
        // from its group (issue 9, break 4: such stars were killed); one that never started is
        // started now: the crash was the node's, not the star's.
        const found = await this.runningIn(run?.groupId ?? id);
        if (found) {
          this.adopt(rec, { run: found });
        } else {
          // Its group goes (an init that ended unreaped still counts in it); a start makes a new one.
          const group = this.options.cgroups.handle(run?.groupId ?? id);
          await group.killAll("SIGKILL").catch(() => undefined);
          await group.destroy().catch(() => undefined);
          if (saved.status.state === "starting" && !run) this.adopt(rec, { start: true });
          else this.adopt(rec, { ended: { exitCode: null, signal: "SIGKILL", oomKilled: false } });
        }
      } else {
        this.adopt(rec, {});
      }
      recovered.push({ ...rec.status });
    }
    this.reserveOwners(root);
    return recovered;
  }

  /**
   * A star directory with no record (runtime.db was lost) keeps the user its files have: the
   * owner of its work dir is reserved for it, so no new star is handed that user (and reads its
   * files), and the star, started again, is its files' owner still.
   */
  private reserveOwners(root: string): void {
    if (this.options.user) return;
    const { base, count } = this.uidRange();
    const taken = new Set(this.uids.values());
    for (const id of readdirSyncSafe(root)) {
      if (this.uids.has(id) || !DNS_LABEL.test(id)) continue;
      const owner = ownerOf(join(root, id, "work"));
      if (owner === undefined || owner < base || owner >= base + count || taken.has(owner)) continue;
      this.uids.set(id, owner);
      taken.add(owner);
    }
  }

  /**
   * The star running in group `id`, unrecorded (its init and program, found by their pid
   * namespace): a handle to follow it, its pids and user taken into this runtime's records.
   */
  private async runningIn(id: string): Promise<RunHandle | undefined> {
    const group = await this.options.cgroups.open(id);
    if (!group) return undefined;
    const found = findInit(await group.pids().catch(() => []));
    if (!found) return undefined;
    const start = processStart(found.pid);
    if (start === undefined) return undefined;
    const run: RunInfo = {
      groupId: id,
      shimPid: found.pid,
      shimStart: start,
      initPid: found.pid,
      initStart: start,
      oomBefore: await group.stats().then((s) => s.oomKills).catch(() => 0),
    };
    if (found.uid !== undefined && found.uid > 0) this.uids.set(id, found.uid);
    this.cgroupOf.set(id, group);
    this.groupIdOf.set(id, id);
    this.runInfo.set(id, run);
    return this.handle(id, found.program ?? found.pid, run, group, watchExit(this.dir(id), run, this.exitWatches));
  }

  async reattach(id: string, input: StarSpecInput, options: StartOptions = {}): Promise<StarStatus> {
    if (this.stars.has(id)) throw new StarExistsError(id);
    const spec = parseStarSpec(input);
    const limits = recoveredLimits(spec, this.capacity);
    const limitsEnforced = await this.admit(spec, limits);
    const run = await this.runningIn(id);
    if (!run) throw new StartFailedError(id, "no star runs in its group to take over");
    if (this.stars.has(id)) {
      run.kill(); // raced with a start of the name: never two
      throw new StarExistsError(id);
    }
    const rec: StarRecord = {
      id,
      spec,
      trusted: options.trusted === true,
      ...(options.identity ? { identity: options.identity } : {}),
      limits,
      status: { id, name: spec.name, state: "running", restarts: 0, limits, limitsEnforced, ready: false, startedAt: Date.now() },
      history: { restarts: [], streak: 0 },
      stopRequested: false,
      waiters: [],
    };
    this.adopt(rec, { run });
    return { ...rec.status };
  }

  async orphans(): Promise<Orphan[]> {
    const out: Orphan[] = [];
    for (const group of await this.options.cgroups.groups()) {
      const pids = await this.options.cgroups.handle(group).pids().catch(() => [] as number[]);
      if (pids.length === 0) continue;
      // Read after the pids: a start or a cleanup under way has its group's processes to itself.
      const rec = this.stars.get(group);
      if (rec?.status.state === "starting" || this.cleaning.has(group)) continue;
      const run = rec?.run ? this.runInfo.get(group) : undefined;
      const ns = run?.initPid ? pidNamespace(run.initPid, "pid_for_children") : undefined;
      // The star's own: its init, what is in its pid namespace, and what descends from its init
      // (a namespace of its own below the star's: an unconfined star's sandbox, say).
      const strays = ns ? pids.filter((p) => p !== run!.initPid && pidNamespace(p) !== ns && !descendsFrom(p, run!.initPid)) : pids;
      // Gone meanwhile: not orphans.
      const alive = strays.filter((p) => processStart(p) !== undefined);
      if (alive.length === 0) continue;
      const init = rec ? undefined : findInit(alive);
      out.push({ group, pids: alive, known: rec !== undefined, ...(init ? { init: { pid: init.pid, ...(init.uid === undefined ? {} : { uid: init.uid }) } } : {}) });
    }
    return out;
  }

  async endOrphan(orphan: Orphan): Promise<void> {
    const group = this.options.cgroups.handle(orphan.group);
    if (this.stars.has(orphan.group)) {
      for (const pid of orphan.pids) signalPid(pid, "SIGKILL");
      return;
    }
    await group.killAll("SIGKILL");
    if (!this.stars.has(orphan.group)) await group.destroy().catch(() => undefined);
  }

  /**
   * Agents before runtime.db kept a `state.json` per star: taken into the table (and deleted:
   * it holds the star's env), so stars such an agent started are recovered, not left unwatched.
   */
  private async importStateFiles(root: string): Promise<void> {
    const known = new Set(this.db.all().map((r) => r.id));
    for (const id of await readdir(root).catch(() => [] as string[])) {
      if (known.has(id) || !DNS_LABEL.test(id)) continue;
      const file = join(root, id, "state.json");
      let saved: SavedStar;
      try {
        saved = JSON.parse(await readFile(file, "utf8")) as SavedStar;
      } catch {
        continue; // none, or half a file: nothing to take
      }
      if (saved.version !== 1) continue;
      this.db.save(id, saved);
      await rm(file, { force: true });
    }
  }

  /**
   * An exec health check runs inside the star, started by the star's own init (native
   * star-shim.c): in its cgroups and namespaces, as its user, with its filter and limits — never
   * by root entering namespaces the star could have changed. We ask over the init's socket
   * (root's, in the star's directory); hanging up at the timeout makes the init kill the check
   * with its whole process group.
   */
  protected override async execProbe(rec: StarRecord, command: string[], timeoutMs: number): Promise<ProbeResult> {
    if (!rec.status.pid) return { ok: false, error: "the star is not running" };
    if (!this.isolated) return spawnProbe(command, timeoutMs);
    const payload = Buffer.from(command.map((a) => `${a}\0`).join(""));
    return probeWithin(timeoutMs, command.join(" "), (done) => {
      const socket = connect(socketPath(join(this.dir(rec.id), "ctl")));
      const chunks: Buffer[] = [];
      // Written, not ended: the init takes our hanging up as "give up" and kills the check.
      socket.on("connect", () => socket.write(Buffer.concat([Buffer.from(`${payload.length}\n`), payload])));
      socket.on("data", (d: Buffer) => chunks.push(d));
      socket.on("error", (e: NodeJS.ErrnoException) =>
        done({ ok: false, error: e.code === "ENOENT" ? "the star's init takes no checks (started by an older agent: restart the star)" : `exec check: ${e.message}` }),
      );
      socket.on("end", () => {
        const reply = Buffer.concat(chunks).toString();
        const nl = reply.indexOf("\n");
        const [head, out] = nl < 0 ? [reply, ""] : [reply.slice(0, nl), reply.slice(nl + 1).trim()];
        if (head === "exit 0") return done({ ok: true });
        const [kind, n] = head.split(" ");
        const how = kind === "exit" ? `exited with ${n}` : kind === "signal" ? `was killed by signal ${n}` : head || "got no answer";
        done({ ok: false, error: `${command.join(" ")} ${how}${out ? `: ${out.slice(-300)}` : ""}` });
      });
      return () => socket.destroy();
    });
  }

  /** Releases a star's resources; a second call (remove after the star ended) waits for the first. */
  protected async cleanup(rec: StarRecord, removeFiles: boolean): Promise<void> {
    const previous = this.cleaning.get(rec.id);
    const next = (previous ?? Promise.resolve()).catch(() => undefined).then(() => this.release(rec, removeFiles));
    this.cleaning.set(rec.id, next);
    try {
      await next;
    } finally {
      if (this.cleaning.get(rec.id) === next) this.cleaning.delete(rec.id);
    }
  }

  private async release(rec: StarRecord, removeFiles: boolean): Promise<void> {
    const cgroup = this.cgroupOf.get(rec.id);
    this.runInfo.delete(rec.id);
    this.groupIdOf.delete(rec.id);
    if (cgroup) {
      this.cgroupOf.delete(rec.id);
      await cgroup.killAll("SIGKILL");
      await cgroup.destroy();
    }
    let mounted = false;
    if (rec.limits.diskBytes !== undefined) mounted = !(await unmountStarDisk(this.dir(rec.id)).then(() => true, () => false));
    if (removeFiles && mounted) {
      // Never rm -rf through a mount we could not undo: detach it, keep the files for a later try.
      await unmountStarDisk(this.dir(rec.id), true).catch(() => undefined);
    } else if (removeFiles) {
      this.forget(rec.id); // first: a crash during the rm must not bring the star back
      await rm(this.dir(rec.id), { recursive: true, force: true });
      this.uids.delete(rec.id);
    }
  }

  async stats(id: string): Promise<StarStats> {
    this.get(id);
    const cgroup = this.cgroupOf.get(id);
    if (!cgroup) return { cpuUsageUsec: 0, memoryBytes: 0, pids: 0 };
    const { cpuUsageUsec, memoryBytes, memoryPeakBytes, pids } = await cgroup.stats();
    return { cpuUsageUsec, memoryBytes, pids, ...(memoryPeakBytes === undefined ? {} : { memoryPeakBytes }) };
  }

  usage(id: string): { cpuUsageUsec: number; memoryBytes: number } | undefined {
    if (!this.stars.has(id)) return undefined;
    return this.cgroupOf.get(id)?.usage() ?? { cpuUsageUsec: 0, memoryBytes: 0 };
  }

  logs(id: string, options: LogOptions = {}): AsyncIterable<LogLine> {
    return this.logsIn(this.dir(id), id, options);
  }

  /** The star's saved state goes with it (unless the runtime is closed: then it stays ours). */
  private forget(id: string): void {
    if (this.closed || this.stars.has(id)) return;
    try {
      this.db.delete(id);
    } catch {
      // closed meanwhile
    }
  }

  override async close(): Promise<void> {
    this.saveAgain(); // a last try for states a full disk kept back
    clearInterval(this.saveRetry);
    clearInterval(this.livenessTimer);
    await super.close();
    for (const stop of [...this.exitWatches]) stop();
    this.db.close();
    this.launcher?.close();
    // Stars keep running (their shims are detached); we only stop listening to them.
    for (const child of this.children) {
      child.unref();
      (child.stdio[3] as { destroy?: () => void } | null)?.destroy?.();
    }
  }
}

/** A star's limits as it runs: the node's defaults, but no ceiling lowered since can refuse it. */
function recoveredLimits(spec: StarSpec, capacity: NodeCapacity | undefined) {
  try {
    return limitsOf(spec, capacity);
  } catch {
    const node = capacity?.limits ?? DEFAULT_NODE_LIMITS;
    return limitsOf(spec, { cpuCores: Infinity, memoryBytes: Infinity, limits: { ...node, maxPids: Infinity, maxNofile: Infinity, maxLogMb: Infinity } });
  }
}

/** Whether `ancestor` is on the chain of `pid`'s parents (as the host sees them). */
function descendsFrom(pid: number, ancestor: number): boolean {
  for (let p = pid, steps = 0; p > 1 && steps < 256; steps++) {
    const parent = processInfo(p)?.ppid;
    if (parent === undefined) return false;
    if (parent === ancestor) return true;
    p = parent;
  }
  return false;
}

function readdirSyncSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The owner of a file, or undefined if there is none. */
function ownerOf(path: string): number | undefined {
  try {
    return statSync(path).uid;
  } catch {
    return undefined;
  }
}

function underTmp(path: string): boolean {
  return isUnder(path, "/tmp");
}

/**
 * Resolves when an init we did not start ourselves (recovered, or its launcher died) ends: its
 * `end` file appears, or it is gone. The watch is registered in `open` so close() can end it.
 */
function watchExit(dir: string, run: RunInfo, open: Set<() => void>): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    const stop = () => {
      watcher.close();
      clearInterval(timer);
      open.delete(stop);
    };
    const check = () => {
      if (processStart(run.shimPid) === run.shimStart && !existsSync(join(dir, "end"))) return;
      stop();
      resolve({ code: null, signal: null });
    };
    const watcher = watch(dir, check);
    const timer = setInterval(check, 500);
    timer.unref();
    open.add(stop);
    check();
  });
}

/** A unix socket path short enough for sun_path (108 bytes), through /proc/self/fd if needed. */
function socketPath(path: string): string {
  if (Buffer.byteLength(path) < 100) return path;
  const fd = openSync(dirname(path), "r");
  setTimeout(() => closeSync(fd), 5000).unref(); // connect resolves the path at once
  return `/proc/self/fd/${fd}/${path.slice(dirname(path).length + 1)}`;
}

/** Dev mode: the check as a plain child process (nothing is isolated there). */
function spawnProbe(command: string[], timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, command.slice(1), { stdio: ["ignore", "ignore", "pipe"], detached: true });
    let err = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // gone
      }
    }, timeoutMs);
    child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-300)));
    child.once("error", (e) => {
      clearTimeout(timer);
      resolve({ ok: false, error: `${command[0]}: ${e.message}` });
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve({ ok: true });
      else if (timedOut) resolve({ ok: false, error: `${command.join(" ")}: no answer within ${timeoutMs} ms` });
      else resolve({ ok: false, error: `${command.join(" ")} exited with ${code}${err ? `: ${err.trim()}` : ""}` });
    });
  });
}

function signalPid(pid: number | undefined, signal: NodeJS.Signals, startedAt?: number): void {
  if (!pid) return;
  if (startedAt && processStart(pid) !== startedAt) return; // gone, maybe reused: not ours
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}


