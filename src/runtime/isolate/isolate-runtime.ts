/**
 * The `isolate` runtime: JavaScript/TypeScript stars as V8 isolates (worker threads) inside one
 * isolate host process per runtime (host.ts). The host is started through the star launcher, so
 * user code never runs in the agent: it runs as nobody, with no-new-privs, in the host's own
 * namespaces and cgroup. Each isolate's heap is limited with `resourceLimits` (over it: the star
 * ends `oom_killed`); CPU is accounted per thread (/proc/<host>/task/<tid>/stat).
 *
 * Isolates share one process: they are a boundary against the rest of the node (the host is an
 * unprivileged, namespaced, cgroup-limited process), not against each other. Code that must be
 * kept apart from other stars' code runs as a process star.
 *
 * CPU limits: the isolate's thread goes into a cpu cgroup of its own before its code runs (v1: a
 * cpu group of its own; v2: a threaded child of the host's group). Not yet: outliving the agent
 * (the host ends when its control socket closes; the next agent restarts the stars).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chownSync, closeSync, constants, fchownSync, openSync, readFileSync, readdirSync } from "node:fs";
import { chmod, copyFile, mkdir, rename, unlink } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { LimitUnenforceableError, RuntimeUnavailableError, ScriptError, StartFailedError } from "../../model/errors.js";
import type { CgroupDriver, ThreadGroup } from "../cgroup/cgroup.js";
import { detectCgroups, nodeCgroupsBusy } from "../cgroup/detect.js";
import { type NodeClaim, claimNode, nodeCgroupParent } from "../node-claim.js";
import { resolveProgram } from "../script.js";
import type { Limits, NodeCapacity, StarSpec } from "../../model/spec.js";
import { type RunHandle, type StarRecord, SupervisedRuntime } from "../supervisor.js";
import type { LogLine, LogOptions, StarStats } from "../../model/status.js";

export interface IsolateRuntimeOptions {
  dataDir: string;
  cgroups?: CgroupDriver;
  /** What this node owns on the host (node-claim.ts): its cgroups' parent and its uid range. Default: the data dir's claim. */
  claim?: NodeClaim;
  /** The isolate host's user (default: the last uid of the claim's range, which no process star gets). */
  user?: { uid: number; gid: number };
  capacity?: NodeCapacity;
  shimPath?: string;
  /** Run CPU-limited specs without the CPU limit, marked limitsEnforced: false. */
  devMode?: boolean;
  /** Memory limit of the isolate host as a whole (default 4 GiB). */
  hostMemoryBytes?: number;
}

const DEFAULT_SHIM = fileURLToPath(new URL("../../../native/star-shim", import.meta.url));
const HOST_SCRIPT = fileURLToPath(new URL("./host.js", import.meta.url));
const DEFAULT_HEAP_MB = 128;
/** The isolate host's cgroup; isolates' CPU groups are made inside it. */
const HOST_GROUP = "isolate-host";

type HostEvent =
  | { ev: "ready" }
  | { ev: "started"; id: string; tid: number }
  | { ev: "exited"; id: string; code: number; oom: boolean }
  | { ev: "error"; id: string; message: string }
  | { ev: "stats"; ref: number; heapBytes: number }
  | { ev: "rotate"; id: string; stream: string };

interface Host {
  child: ChildProcess;
  /** Host-side pid of the host program. */
  pid: number;
  threads: HostThreads;
  send(o: object): void;
  listeners: Map<string, (e: HostEvent) => void>;
  stats: Map<number, (heap: number) => void>;
}

export class IsolateRuntime extends SupervisedRuntime {
  readonly kind = "isolate";
  private host: Promise<Host> | undefined;
  private readonly threadOf = new Map<string, number>();
  private readonly cpuGroups = new Map<string, ThreadGroup>();
  private readonly heapOf = new Map<string, number>();
  private hostPid: number | undefined;
  private ref = 0;

  private constructor(private readonly options: IsolateRuntimeOptions & { user: { uid: number; gid: number }; cgroups: CgroupDriver; shimPath: string }) {
    super(options.capacity ?? { cpuCores: availableParallelism(), memoryBytes: totalmem() });
  }

  static async create(options: IsolateRuntimeOptions): Promise<IsolateRuntime> {
    if (process.platform !== "linux" || process.getuid?.() !== 0) {
      throw new RuntimeUnavailableError("the isolate runtime needs Linux and root (its host runs isolated, as an unprivileged user)");
    }
    const claim = options.claim ?? claimNode(options.dataDir, { busy: (id) => nodeCgroupsBusy(id) });
    const cgroups = options.cgroups ?? (await detectCgroups({ parent: nodeCgroupParent(claim, "isolate") }));
    await mkdir(join(options.dataDir, "stars"), { recursive: true, mode: 0o755 });
    const last = claim.uidBase + claim.uidCount - 1;
    return new IsolateRuntime({ ...options, user: options.user ?? { uid: last, gid: last }, cgroups, shimPath: options.shimPath ?? DEFAULT_SHIM });
  }

  /**
   * Moves a star's log along (FILE → FILE.1 → ... FILE.keep, the oldest dropped), as the process
   * runtime's init does: the host asks (it may not rename in the star's root-owned directory) and
   * opens the new file when told. Failures leave the files as they are.
   */
  private async rotateLog(dir: string, stream: "stdout" | "stderr", keep: number): Promise<void> {
    const base = join(dir, `${stream}.log`);
    try {
      for (let i = keep - 1; i >= 1; i--) await rename(`${base}.${i}`, `${base}.${i + 1}`).catch(() => undefined);
      if (keep > 0) await rename(base, `${base}.1`);
      else await unlink(base);
      // The new file, as the first: the host's to append to.
      const fd = openSync(base, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o640);
      try {
        fchownSync(fd, this.options.user.uid, this.options.user.gid);
      } finally {
        closeSync(fd);
      }
    } catch {
      // no room, or gone with the star
    }
  }

  private dir(id: string): string {
    return join(this.options.dataDir, "stars", id);
  }

  protected async admit(spec: StarSpec, limits: Limits): Promise<boolean> {
    const problems: Array<[string, string]> = [];
    if (spec.command) problems.push(["command", "the isolate runtime runs scripts (.js, .mjs, .ts), not commands"]);
    if (spec.cwd !== undefined) problems.push(["cwd", "isolates share their host's working directory: give cwd to a star of the process runtime"]);
    if (limits.cpuMillis !== undefined && !this.threadCpuLimits()) {
      problems.push([spec.cpu_cores !== undefined ? "cpu_cores" : "cpu_percent", "per-isolate CPU limits need the cpu cgroup controller, which this node does not have"]);
    }
    if (limits.diskBytes !== undefined) problems.push(["disk_mb", "isolates have no disk of their own"]);
    const first = problems[0];
    if (first && (first[0] === "command" || first[0] === "cwd" || !this.options.devMode)) throw new LimitUnenforceableError(first[0], first[1]);
    return problems.length === 0;
  }

  protected async check(spec: StarSpec): Promise<void> {
    const program = await resolveProgram(spec);
    if (program.source?.startsWith("/tmp/")) {
      throw new ScriptError(program.source, "is under /tmp, which the isolate host cannot see (its /tmp is private): keep scripts elsewhere");
    }
  }

  protected async launch(rec: StarRecord): Promise<RunHandle> {
    // The transpiled file: readable by root and the host's user only.
    const reader = this.options.user;
    const program = await resolveProgram(rec.spec, { cacheDir: join(this.options.dataDir, "cache", "scripts"), cacheReader: reader });
    const host = await this.ensureHost();
    const dir = this.dir(rec.id);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const { uid, gid } = this.options.user;
    for (const f of ["stdout.log", "stderr.log"]) {
      closeSync(openSync(join(dir, f), "a", 0o640));
      chownSync(join(dir, f), uid, gid); // the host appends to them as the star's user
    }
    const asked = rec.spec.ram_mb !== undefined || rec.spec.ram_gb !== undefined; // else the node's default memory is more than a heap needs
    const heapMb = asked && rec.limits.memoryBytes ? Math.max(8, Math.floor(rec.limits.memoryBytes / 2 ** 20)) : DEFAULT_HEAP_MB;
    const limitCpu = rec.limits.cpuMillis !== undefined && this.threadCpuLimits();
    let resolveEnd!: (e: { exitCode: number | null; signal: string | null; oomKilled: boolean }) => void;
    const ended = new Promise<{ exitCode: number | null; signal: string | null; oomKilled: boolean }>((r) => (resolveEnd = r));
    const started = new Promise<number>((ok, fail) => {
      host.listeners.set(rec.id, (e) => {
        if (e.ev === "rotate") void this.rotateLog(dir, e.stream === "stderr" ? "stderr" : "stdout", rec.spec.log_max_files - 1).then(() => host.send({ op: "rotated", id: rec.id, stream: e.stream }));
        else if (e.ev === "started") ok(e.tid);
        else if (e.ev === "error") fail(new StartFailedError(rec.id, e.message));
        else if (e.ev === "exited") {
          host.listeners.delete(rec.id);
          this.threadOf.delete(rec.id);
          fail(new StartFailedError(rec.id, "the isolate ended before it started"));
          resolveEnd({ exitCode: e.oom ? null : e.code, signal: e.oom ? "SIGKILL" : null, oomKilled: e.oom });
        }
      });
    });
    host.send({
      op: "start",
      id: rec.id,
      file: program.file,
      argv: rec.spec.args,
      env: { CONSTELLATION_STAR: rec.id, CONSTELLATION_STAR_NAME: rec.spec.name, ...rec.spec.env },
      hostname: rec.spec.name,
      heapMb,
      stdout: join(dir, "stdout.log"),
      stderr: join(dir, "stderr.log"),
      logMax: Math.round(rec.spec.log_max_mb * 2 ** 20),
      hold: limitCpu, // the star's code waits until its thread is in its cpu group
    });
    const nsTid = await started;
    const tid = host.threads.lookup(nsTid) ?? 0;
    // The host's word is checked: only a thread of the host, and never its main thread, is moved.
    if (rec.limits.cpuMillis !== undefined && (tid === 0 || tid === host.pid)) {
      host.send({ op: "kill", id: rec.id });
      throw new StartFailedError(rec.id, "the isolate host reported a thread that is not one of its workers");
    }
    this.threadOf.set(rec.id, tid);
    if (limitCpu) {
      // The isolate's thread into a cpu group of its own before any of its code runs.
      const group = await this.options.cgroups.threadGroup(HOST_GROUP, rec.id, rec.limits.cpuMillis!);
      if (!group) {
        host.send({ op: "kill", id: rec.id });
        throw new StartFailedError(rec.id, "the node's cgroups cannot limit a thread's CPU");
      }
      this.cpuGroups.set(rec.id, group);
      await group.addThread(tid);
      host.send({ op: "go", id: rec.id });
    }
    return {
      pid: host.pid,
      ended,
      terminate: () => host.send({ op: "stop", id: rec.id }),
      kill: () => host.send({ op: "kill", id: rec.id }),
    };
  }

  /** Starts the host on first use (and again if it died). */
  private ensureHost(): Promise<Host> {
    this.host ??= this.startHost().catch((err: unknown) => {
      this.host = undefined;
      throw err;
    });
    return this.host;
  }

  private async startHost(): Promise<Host> {
    const dir = join(this.options.dataDir, "isolate-host");
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const { uid, gid } = this.options.user;
    // The host as a whole is held to a memory limit: off-heap memory (Buffers) is not in any
    // isolate's heap limit.
    const plan = await this.options.cgroups.plan(HOST_GROUP, { pids: 4096, memoryBytes: this.options.hostMemoryBytes ?? 4 * 2 ** 30 });
    const args: string[] = [];
    for (const d of plan.mkdirs) args.push("-D", d);
    for (const [f, v] of plan.writes) args.push("-F", `${f}=${v}`);
    for (const f of plan.procsFiles) args.push("-c", f);
    args.push("-H", "isolate-host", "-u", String(uid), "-g", String(gid), "-W", join(dir, "work"), "-t", join(dir, "tmp"));
    args.push("-s", join(dir, "end"), "-o", join(dir, "stdout.log"), "-e", join(dir, "stderr.log"));
    // The system call filter of process stars (no new namespaces, mounts, keyrings, bpf, ptrace):
    // the host runs user code. Its view of files stays the host's (it reads admins' scripts
    // wherever they are, and appends to the stars' logs).
    args.push("-P");
    // A data dir under /tmp is shown through the host's private /tmp, where it is.
    const data = resolve(this.options.dataDir);
    if (data === "/tmp" || data.startsWith("/tmp/")) args.push("-B", `${data}=${data}`);
    // The host program goes into the data dir: the host cannot see /tmp (where a checkout may be).
    const hostScript = join(dir, "host.mjs");
    await copyFile(HOST_SCRIPT, hostScript);
    await chmod(hostScript, 0o644);
    args.push("-E", `PATH=${process.env.PATH ?? "/usr/bin:/bin"}`, "--", process.execPath, hostScript);
    const child = spawn(this.options.shimPath, args, { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"], detached: true });
    const report = await new Promise<string>((ok) => {
      let text = "";
      const s = child.stdio[3] as NodeJS.ReadableStream;
      s.on("data", (d: Buffer) => (text += d.toString()));
      s.on("end", () => ok(text));
      child.once("exit", () => ok(text));
    });
    const m = /^started (\d+) (\d+)/.exec(report);
    if (!m) throw new RuntimeUnavailableError(`the isolate host did not start: ${report.trim() || "no report"}`);
    const control = child.stdio[4] as unknown as NodeJS.ReadWriteStream;
    this.hostPid = Number(m[1]);
    const host: Host = {
      child,
      pid: Number(m[1]),
      threads: new HostThreads(Number(m[1])),
      send: (o) => control.write(`${JSON.stringify(o)}\n`),
      listeners: new Map(),
      stats: new Map(),
    };
    let buf = "";
    control.on("error", () => undefined); // the host went away: its exit is handled below
    control.setEncoding("utf8");
    control.on("data", (d: string) => {
      buf += d;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const e = JSON.parse(buf.slice(0, nl)) as HostEvent;
        buf = buf.slice(nl + 1);
        if (e.ev === "stats") host.stats.get(e.ref)?.(e.heapBytes);
        else if (e.ev !== "ready") host.listeners.get(e.id)?.(e);
      }
    });
    child.once("exit", () => {
      this.host = undefined;
      for (const [id, fn] of host.listeners) fn({ ev: "exited", id, code: 1, oom: false });
    });
    return host;
  }

  protected override async execProbe(): Promise<{ ok: false; error: string }> {
    return { ok: false, error: "exec health checks need a process star; use http or tcp for isolates" };
  }

  protected async cleanup(rec: StarRecord): Promise<void> {
    this.threadOf.delete(rec.id);
    this.heapOf.delete(rec.id);
    const group = this.cpuGroups.get(rec.id);
    if (group) {
      this.cpuGroups.delete(rec.id);
      await group.destroy().catch(() => undefined);
    }
  }

  /** Per-thread CPU limits need the cpu controller (v1: a thread in any cpu group; v2: threaded groups). */
  private threadCpuLimits(): boolean {
    return this.options.cgroups.version !== "none" && this.options.cgroups.capabilities().cpu;
  }

  async stats(id: string): Promise<StarStats> {
    this.get(id);
    const host = await this.host;
    const tid = this.threadOf.get(id);
    if (!host || !tid) return { cpuUsageUsec: 0, memoryBytes: 0, pids: 0 };
    const ref = ++this.ref;
    const heap = await new Promise<number>((ok) => {
      const timer = setTimeout(() => ok(0), 1000);
      host.stats.set(ref, (h) => {
        clearTimeout(timer);
        ok(h);
      });
      host.send({ op: "stats", id, ref });
    });
    host.stats.delete(ref);
    this.heapOf.set(id, heap);
    return { cpuUsageUsec: threadCpuUsec(host.pid, tid), memoryBytes: heap, pids: 0 };
  }

  /** CPU from the thread's /proc entry; memory is the heap last reported by stats(). */
  usage(id: string): { cpuUsageUsec: number; memoryBytes: number } | undefined {
    if (!this.stars.has(id)) return undefined;
    const tid = this.threadOf.get(id);
    const pid = this.hostPid;
    return { cpuUsageUsec: tid && pid ? threadCpuUsec(pid, tid) : 0, memoryBytes: this.heapOf.get(id) ?? 0 };
  }

  logs(id: string, options: LogOptions = {}): AsyncIterable<LogLine> {
    return this.logsIn(this.dir(id), id, options);
  }

  override async close(): Promise<void> {
    await super.close();
    const host = await this.host?.catch(() => undefined);
    if (host) {
      const gone = new Promise((ok) => (host.child.exitCode !== null ? ok(undefined) : host.child.once("exit", ok)));
      (host.child.stdio[4] as NodeJS.WritableStream).end(); // the host stops its isolates and exits
      const timer = setTimeout(() => host.child.kill("SIGKILL"), 5000);
      await gone;
      clearTimeout(timer);
      // The isolates' CPU groups sit inside the host's group: they go first.
      for (const group of this.cpuGroups.values()) await group.destroy().catch(() => undefined);
      this.cpuGroups.clear();
      await this.options.cgroups
        .handle(HOST_GROUP)
        .destroy()
        .catch(() => undefined);
    }
  }
}

/**
 * Host-side ids of the isolate host's threads, which the host knows by their ids in its own pid
 * namespace (the `NSpid` line of each thread's status). Each thread's status is read once: with
 * 100 isolates the host has hundreds of threads, and reading all of them per start made the
 * agent's work per start grow with the number of isolates.
 */
class HostThreads {
  private readonly byNsTid = new Map<number, number>();
  private readonly read = new Set<string>();

  constructor(private readonly hostPid: number) {}

  lookup(nsTid: number): number | undefined {
    const cached = this.byNsTid.get(nsTid);
    if (cached !== undefined && this.nsTidOf(String(cached)) === nsTid) return cached;
    this.byNsTid.delete(nsTid);
    return this.scan(nsTid, false) ?? this.scan(nsTid, true);
  }

  /** Reads the threads not read yet (or all of them, to catch a host tid used again). */
  private scan(nsTid: number, all: boolean): number | undefined {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${this.hostPid}/task`);
    } catch {
      return undefined; // the host is gone
    }
    if (all) this.read.clear();
    const live = new Set(tasks);
    for (const t of this.read) if (!live.has(t)) this.read.delete(t);
    for (const t of tasks) {
      if (this.read.has(t)) continue;
      this.read.add(t);
      const ns = this.nsTidOf(t);
      if (ns !== undefined) this.byNsTid.set(ns, Number(t));
    }
    const found = this.byNsTid.get(nsTid);
    return found !== undefined && this.nsTidOf(String(found)) === nsTid ? found : undefined;
  }

  private nsTidOf(hostTid: string): number | undefined {
    try {
      const m = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${this.hostPid}/task/${hostTid}/status`, "utf8"));
      const ids = m?.[1]?.trim().split(/\s+/).map(Number);
      return ids?.[ids.length - 1];
    } catch {
      return undefined; // gone
    }
  }
}

/** utime + stime of a thread, in microseconds (clock ticks are 100 Hz on Linux). */
function threadCpuUsec(pid: number, tid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10_000;
  } catch {
    return 0;
  }
}
