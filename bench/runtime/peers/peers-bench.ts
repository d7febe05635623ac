/**
 * Peer measurements for the runtime benchmark: PM2 and crun on this machine, in one run, measured
 * like bench/runtime/start-bench.ts measures our process runtime.
 *
 *   node dist/bench/runtime/peers/peers-bench.js [--install] [--n 50] [--concurrency 20] [--total 100]
 *        [--node-n 50] [--cli-n 10] [--crun-node-n 20] [--hold 20] [--warmup 2] [--only plain,pm2,crun]
 *        [--pm2-prefix DIR] [--line-timeout 30000]
 *
 * Start latency is from issuing the start until the program's first stdout line is in its log
 * file, detected with fs.watch (inotify) on the file's directory, as in start-bench.ts:
 * - plain `child_process.spawn` with stdout to a file: the same reference row start-bench.ts prints,
 *   so this run can be lined up with that one;
 * - PM2 7 (installed from npm into the work dir, or reused from --pm2-prefix), through its
 *   programmatic API (pm2.start on one connection to the daemon: what an orchestrator built on PM2
 *   pays per start) and through one sample set of the `pm2 start` CLI (which adds its own Node
 *   start-up); the line is detected in the `--output` file the PM2 daemon writes;
 * - crun (Debian package), `crun run --detach` of an OCI bundle on a busybox rootfs, with stdout
 *   redirected to a file by the caller (a detached container inherits crun's stdio). The bundle is
 *   `crun spec` with the network namespace dropped and the limits start-bench.ts gives a star
 *   (cpu 50 %, 128 MiB, 64 pids), so the isolation is comparable: pid/mount/uts/ipc namespaces,
 *   cgroup limits, no-new-privs. On a hybrid cgroup host crun 1.8 refuses to run ("cgroups in
 *   hybrid mode not supported"); the crun part then re-runs this script in a private mount
 *   namespace with /sys/fs/cgroup/unified unmounted (the host's mounts are not changed).
 * Resident memory: PSS (/proc/PID/smaps_rollup) of held instances: PM2 apps plus the PM2 daemon,
 * crun containers (crun itself does not stay resident), and bare `node idle.mjs` for reference.
 *
 * Everything the script creates is in one directory under /var/tmp, removed at the end; PM2 is
 * stopped with `pm2 kill` and every container is killed and deleted, also on failure.
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  watch,
  writeFileSync,
} from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { machine, markdownTable, percentile } from "../../lib/report.js";

// ---------------------------------------------------------------------------------------------
// Options

const { values } = parseArgs({
  options: {
    install: { type: "boolean", default: false },
    n: { type: "string", default: "50" },
    concurrency: { type: "string", default: "20" },
    total: { type: "string", default: "100" },
    "node-n": { type: "string", default: "50" },
    "cli-n": { type: "string", default: "10" },
    "crun-node-n": { type: "string", default: "20" },
    hold: { type: "string", default: "20" },
    warmup: { type: "string", default: "2" },
    only: { type: "string", default: "plain,pm2,crun" },
    "pm2-prefix": { type: "string" },
    "line-timeout": { type: "string", default: "30000" },
    // Internal: the crun part, re-run inside a private mount namespace.
    "crun-worker": { type: "string" },
  },
});

function intOpt(name: string, v: string | undefined, min: number): number {
  const x = Number(v);
  if (!Number.isInteger(x) || x < min) throw new Error(`--${name} must be an integer >= ${min} (got ${String(v)})`);
  return x;
}

const N = intOpt("n", values.n, 1);
const CONC = intOpt("concurrency", values.concurrency, 1);
const TOTAL = intOpt("total", values.total, 1);
const NODE_N = intOpt("node-n", values["node-n"], 0);
const CLI_N = intOpt("cli-n", values["cli-n"], 0);
const CRUN_NODE_N = intOpt("crun-node-n", values["crun-node-n"], 0);
const HOLD = intOpt("hold", values.hold, 0);
const WARMUP = intOpt("warmup", values.warmup, 0);
const LINE_TIMEOUT = intOpt("line-timeout", values["line-timeout"], 100);
const ONLY = new Set(values.only.split(",").map((s) => s.trim()).filter(Boolean));
for (const o of ONLY) if (!["plain", "pm2", "crun"].includes(o)) throw new Error(`--only: unknown part "${o}" (plain, pm2, crun)`);

const SELF = fileURLToPath(import.meta.url);
const SRC = join(fileURLToPath(new URL(".", import.meta.url)), "../../../../bench/runtime");

// ---------------------------------------------------------------------------------------------
// Small helpers

const log = (msg: string) => process.stderr.write(`[peers] ${msg}\n`);
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Polls `cond` every `every` ms until it holds; throws after `ms`. */
async function until(cond: () => boolean, ms: number, what: string, every = 10): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(every);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => {
    t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

interface LineWatch {
  /** performance.now() when the file first held a complete line. */
  promise: Promise<number>;
  close: () => void;
}

/** Watches `dir` for `file` to hold a complete first line (inotify on the directory, as start-bench.ts). */
function watchFirstLine(dir: string, file: string, timeoutMs = LINE_TIMEOUT): LineWatch {
  const path = join(dir, file);
  let close: () => void = () => undefined;
  const promise = new Promise<number>((resolve, reject) => {
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      w.close();
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(performance.now());
    };
    const check = () => {
      if (!done && existsSync(path) && readText(path).includes("\n")) finish();
    };
    const w = watch(dir, check);
    w.on("error", (e) => finish(e));
    const timer = setTimeout(() => finish(new Error(`no line in ${path} after ${timeoutMs} ms`)), timeoutMs);
    close = () => finish(new Error("cancelled"));
    check();
  });
  promise.catch(() => undefined); // awaited later; never an unhandled rejection
  return { promise, close };
}

function pssKb(pid: number): number {
  const m = /^Pss:\s+(\d+) kB/m.exec(readText(`/proc/${pid}/smaps_rollup`));
  return m ? Number(m[1]) : 0;
}

const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);

/** PSS of `pids` once the total stops moving (within 1 % over 250 ms), or after 5 s. */
async function settledPss(pids: number[]): Promise<number[]> {
  let prev = pids.map(pssKb);
  const end = performance.now() + 5000;
  for (;;) {
    await delay(250);
    const cur = pids.map(pssKb);
    if (Math.abs(sum(cur) - sum(prev)) <= 0.01 * sum(prev) || performance.now() > end) return cur;
    prev = cur;
  }
}

interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function exitOf(child: ChildProcess): Promise<ExitInfo> {
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

/** Runs a command to completion; stdout and stderr are returned. */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`.trim();
  return { ok: r.status === 0, status: r.status, out, error: r.error };
}

function which(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    const p = join(d, cmd);
    if (d && existsSync(p)) return p;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Start-latency machinery, shared by every peer

interface Started {
  latency: number;
  /** ms until the start call itself returned (API callback, CLI exit); NaN where not meaningful. */
  returned: number;
  stop: () => Promise<void>;
  /** The program's pid (plain spawn) or the container id (crun), where the starter knows it. */
  pid?: number;
  id?: string;
}
type Starter = (i: number) => Promise<Started>;

interface Series {
  peer: string;
  via: string;
  program: string;
  mode: string;
  lat: number[];
  ret: number[];
}

async function sequential(start: Starter, n: number): Promise<{ lat: number[]; ret: number[] }> {
  for (let i = 0; i < WARMUP; i++) await (await start(900_000 + i)).stop();
  const lat: number[] = [];
  const ret: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = await start(i);
    lat.push(s.latency);
    ret.push(s.returned);
    await s.stop();
  }
  return { lat, ret };
}

async function batched(start: Starter, total: number, conc: number): Promise<{ lat: number[]; ret: number[] }> {
  const lat: number[] = [];
  const ret: number[] = [];
  for (let i = 0; i < total; i += conc) {
    const results = await Promise.allSettled(Array.from({ length: Math.min(conc, total - i) }, (_, k) => start(100_000 + i + k)));
    const ok = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    await Promise.all(ok.map((s) => s.stop()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    for (const s of ok) {
      lat.push(s.latency);
      ret.push(s.returned);
    }
  }
  return { lat, ret };
}

/** Starts `count` instances, `conc` at a time, and keeps them (for memory). */
async function holdMany(start: Starter, count: number, conc: number): Promise<Started[]> {
  const held: Started[] = [];
  try {
    for (let i = 0; i < count; i += conc) {
      const results = await Promise.allSettled(Array.from({ length: Math.min(conc, count - i) }, (_, k) => start(200_000 + i + k)));
      for (const r of results) if (r.status === "fulfilled") held.push(r.value);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
    }
    return held;
  } catch (e) {
    await Promise.allSettled(held.map((s) => s.stop()));
    throw e;
  }
}

/**
 * Synchronous last-resort cleanups, run on SIGINT/SIGTERM (the awaited cleanups in the parts'
 * finally blocks may never get to run then). Each part registers one while it has things running.
 */
const emergency = new Map<string, () => void>();

function onSignal(sig: NodeJS.Signals, then: () => void): void {
  log(`${sig}: stopping everything`);
  for (const [name, f] of emergency) {
    try {
      f();
    } catch (e) {
      log(`cleanup of ${name} failed: ${errText(e)}`);
    }
  }
  then();
  process.exit(130);
}

interface MemRow {
  what: string;
  instances: number;
  perInstanceKb: number;
  totalKb: number;
  resident: string;
}

// ---------------------------------------------------------------------------------------------
// Plain spawn (reference), as in start-bench.ts

const livePlain = new Set<ChildProcess>();

function plainStarter(work: string, argv: string[], tag: string): Starter {
  return async (i) => {
    const dir = join(work, "logs", "plain", `${tag}-${i}`);
    mkdirSync(dir, { recursive: true });
    const t0 = performance.now();
    const seen = watchFirstLine(dir, "stdout.log");
    const out = openSync(join(dir, "stdout.log"), "a");
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", out, "ignore"], detached: true });
    } finally {
      closeSync(out);
    }
    livePlain.add(child);
    const exited = exitOf(child);
    exited.catch(() => undefined);
    try {
      const t = await Promise.race([
        seen.promise,
        exited.then((x) => {
          throw new Error(`${argv.join(" ")} exited (${x.code ?? x.signal}) before its first line`);
        }),
      ]);
      return {
        latency: t - t0,
        returned: NaN,
        pid: child.pid,
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) {
            child.kill("SIGKILL");
            await exited.catch(() => undefined);
          }
          livePlain.delete(child);
        },
      };
    } catch (e) {
      seen.close();
      child.kill("SIGKILL");
      livePlain.delete(child);
      throw e;
    }
  };
}

async function plainPart(work: string, tiny: string, idle: string, series: Series[], mem: MemRow[]): Promise<void> {
  const peer = "plain spawn (reference)";
  const via = "`child_process.spawn`";
  log(`plain: tiny sequential ${N}, ${CONC} at a time ${TOTAL}; Node script sequential ${NODE_N}`);
  const ts = await sequential(plainStarter(work, [tiny], "ts"), N);
  series.push({ peer, via, program: "tiny (static C)", mode: "sequential", ...ts });
  const tc = await batched(plainStarter(work, [tiny], "tc"), TOTAL, CONC);
  series.push({ peer, via, program: "tiny (static C)", mode: `${CONC} at a time`, ...tc });
  if (NODE_N > 0) {
    const ns = await sequential(plainStarter(work, [process.execPath, idle], "ns"), NODE_N);
    series.push({ peer, via, program: "Node script", mode: "sequential", ...ns });
  }
  if (HOLD > 0) {
    log(`plain: holding ${HOLD} × node idle.mjs for memory`);
    const held = await holdMany(plainStarter(work, [process.execPath, idle], "hold"), HOLD, CONC);
    try {
      const pss = await settledPss(held.map((h) => h.pid ?? 0));
      mem.push({ what: "plain `node idle.mjs` (reference)", instances: HOLD, perInstanceKb: sum(pss) / HOLD, totalKb: sum(pss), resident: "nothing else" });
    } finally {
      await Promise.allSettled(held.map((h) => h.stop()));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// PM2

type Cb<T> = (err: Error | null, res: T) => void;
interface Pm2Proc {
  name?: string;
  pid?: number;
  pm2_env?: { status?: string };
}
interface Pm2Api {
  connect(cb: Cb<unknown>): void;
  start(opts: Record<string, unknown>, cb: Cb<unknown>): void;
  delete(name: string | number, cb: Cb<unknown>): void;
  list(cb: Cb<Pm2Proc[]>): void;
  disconnect(): void;
}

function pm2Call<T>(what: string, f: (cb: Cb<T>) => void, ms = 30_000): Promise<T> {
  return withTimeout(
    new Promise<T>((resolve, reject) => f((err, res) => (err ? reject(new Error(`pm2 ${what}: ${errText(err)}`)) : resolve(res)))),
    ms,
    `pm2 ${what}`,
  );
}

/** Installs pm2@7 with npm into `prefix` unless it is already there; returns the package dir. */
function ensurePm2(prefix: string): string {
  const pkgDir = join(prefix, "node_modules", "pm2");
  if (existsSync(join(pkgDir, "package.json"))) return pkgDir;
  log(`pm2: npm install --no-save --prefix ${prefix} pm2@7`);
  mkdirSync(prefix, { recursive: true });
  const r = run("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", prefix, "pm2@7"], { timeoutMs: 300_000 });
  if (!r.ok || !existsSync(join(pkgDir, "package.json"))) throw new Error(`pm2: npm install failed (exit ${r.status}): ${r.out || errText(r.error)}`);
  return pkgDir;
}

/** Every process whose initial environment names our PM2_HOME: the daemon and its apps. */
function pm2Processes(home: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync("/proc")) {
    const pid = Number(e);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    if (readText(`/proc/${pid}/environ`).split("\0").includes(`PM2_HOME=${home}`)) pids.push(pid);
  }
  return pids;
}

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readText(`/proc/${pid}/status`));

async function pm2Part(work: string, tiny: string, idle: string, series: Series[], mem: MemRow[], notes: string[]): Promise<void> {
  const prefix = values["pm2-prefix"] ?? join(work, "pm2");
  const pkgDir = ensurePm2(prefix);
  const version = (JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { version: string }).version;
  const home = join(work, "pm2home");
  mkdirSync(home, { recursive: true });
  // pm2 reads PM2_HOME when it is loaded; the daemon and its apps inherit it.
  process.env.PM2_HOME = home;
  const pm2 = createRequire(join(prefix, "package.json"))("pm2") as Pm2Api;
  const cliEnv: NodeJS.ProcessEnv = { ...process.env, PM2_HOME: home };
  delete cliEnv.PM2_PROGRAMMATIC; // set by require("pm2") in this process
  const pm2Bin = join(pkgDir, "bin", "pm2");
  const peer = `PM2 ${version}`;
  let connected = false;
  const killAll = () => {
    const k = run(process.execPath, [pm2Bin, "kill"], { env: cliEnv, timeoutMs: 60_000 });
    if (!k.ok) log(`pm2 kill failed (exit ${k.status}): ${k.out || errText(k.error)}`);
  };
  const killLeft = () => {
    for (const pid of pm2Processes(home).filter(alive)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
  };
  emergency.set("pm2", () => {
    killAll();
    killLeft();
  });
  try {
    const t0 = performance.now();
    await pm2Call("connect", (cb) => pm2.connect(cb));
    connected = true;
    notes.push(`PM2 ${version}: daemon started by pm2.connect() in ${(performance.now() - t0).toFixed(0)} ms (PM2_HOME private to this run).`);

    const apiStarter =
      (script: string, tag: string): Starter =>
      async (i) => {
        const name = `${tag}-${i}`;
        const dir = join(work, "logs", "pm2", name);
        mkdirSync(dir, { recursive: true });
        const t0 = performance.now();
        const seen = watchFirstLine(dir, "out.log");
        try {
          await pm2Call(`start ${name}`, (cb) =>
            pm2.start({ script, name, output: join(dir, "out.log"), error: join(dir, "err.log"), autorestart: false }, cb),
          );
        } catch (e) {
          seen.close();
          throw e;
        }
        const returned = performance.now() - t0;
        let t: number;
        try {
          t = await seen.promise;
        } catch (e) {
          throw new Error(`pm2 app ${name}: ${errText(e)}; its stderr: ${readText(join(dir, "err.log")).slice(0, 500)}`);
        }
        return { latency: t - t0, returned, stop: () => pm2Call(`delete ${name}`, (cb) => pm2.delete(name, cb)).then(() => undefined) };
      };

    const cliStarter =
      (script: string, tag: string): Starter =>
      async (i) => {
        const name = `${tag}-${i}`;
        const dir = join(work, "logs", "pm2", name);
        mkdirSync(dir, { recursive: true });
        const cliLog = openSync(join(dir, "cli.log"), "a");
        const t0 = performance.now();
        const seen = watchFirstLine(dir, "out.log");
        let child: ChildProcess;
        try {
          child = spawn(
            process.execPath,
            [pm2Bin, "start", script, "--name", name, "--output", join(dir, "out.log"), "--error", join(dir, "err.log"), "--no-autorestart"],
            { stdio: ["ignore", cliLog, cliLog], env: cliEnv },
          );
        } finally {
          closeSync(cliLog);
        }
        let returned: number;
        try {
          const x = await withTimeout(exitOf(child), 60_000, `pm2 start ${name} (CLI)`);
          returned = performance.now() - t0;
          if (x.code !== 0) throw new Error(`pm2 start ${name} (CLI) exited ${x.code ?? x.signal}: ${readText(join(dir, "cli.log")).slice(-800)}`);
        } catch (e) {
          seen.close();
          child.kill("SIGKILL");
          throw e;
        }
        const t = await seen.promise;
        return { latency: t - t0, returned, stop: () => pm2Call(`delete ${name}`, (cb) => pm2.delete(name, cb)).then(() => undefined) };
      };

    const api = "API `pm2.start`";
    log(`pm2: API, tiny sequential ${N}`);
    series.push({ peer, via: api, program: "tiny (static C)", mode: "sequential", ...(await sequential(apiStarter(tiny, "ts"), N)) });
    log(`pm2: API, tiny ${CONC} at a time, ${TOTAL}`);
    series.push({ peer, via: api, program: "tiny (static C)", mode: `${CONC} at a time`, ...(await batched(apiStarter(tiny, "tc"), TOTAL, CONC)) });
    if (NODE_N > 0) {
      log(`pm2: API, Node script sequential ${NODE_N}`);
      series.push({ peer, via: api, program: "Node script", mode: "sequential", ...(await sequential(apiStarter(idle, "ns"), NODE_N)) });
      log(`pm2: API, Node script ${CONC} at a time, ${TOTAL}`);
      series.push({ peer, via: api, program: "Node script", mode: `${CONC} at a time`, ...(await batched(apiStarter(idle, "nc"), TOTAL, CONC)) });
    }
    if (CLI_N > 0) {
      const cli = "CLI `pm2 start`";
      log(`pm2: CLI, tiny and Node script sequential ${CLI_N} each`);
      series.push({ peer, via: cli, program: "tiny (static C)", mode: "sequential", ...(await sequential(cliStarter(tiny, "cts"), CLI_N)) });
      if (NODE_N > 0) series.push({ peer, via: cli, program: "Node script", mode: "sequential", ...(await sequential(cliStarter(idle, "cns"), CLI_N)) });
    }

    if (HOLD > 0) {
      log(`pm2: holding ${HOLD} × idle.mjs apps for memory`);
      const held = await holdMany(apiStarter(idle, "hold"), HOLD, CONC);
      try {
        const daemonPid = Number(readText(join(home, "pm2.pid")).trim());
        if (!daemonPid) throw new Error(`pm2: no daemon pid in ${join(home, "pm2.pid")}`);
        const procs = await pm2Call<Pm2Proc[]>("list", (cb) => pm2.list(cb));
        const apps = procs.filter((p) => p.name?.startsWith("hold-") && p.pm2_env?.status === "online" && p.pid);
        if (apps.length !== HOLD) throw new Error(`pm2: ${apps.length} of ${HOLD} held apps online`);
        const pss = await settledPss([daemonPid, ...apps.map((a) => a.pid!)]);
        const daemon = pss[0]!;
        const appPss = sum(pss.slice(1));
        mem.push({
          what: "PM2 apps (`idle.mjs`, fork mode)",
          instances: HOLD,
          perInstanceKb: appPss / HOLD,
          totalKb: appPss + daemon,
          resident: `PM2 daemon PSS ${daemon} kB (total = apps + daemon)`,
        });
      } finally {
        await Promise.allSettled(held.map((h) => h.stop()));
      }
    }
  } finally {
    if (connected) pm2.disconnect();
    log("pm2: pm2 kill");
    killAll();
    // Anything still carrying our PM2_HOME (daemon, apps) is killed outright.
    try {
      await until(() => pm2Processes(home).filter(alive).length === 0, 5000, "the PM2 daemon and apps to exit");
    } catch {
      log(`pm2: killing leftover processes ${pm2Processes(home).filter(alive).join(" ")}`);
      killLeft();
    }
    emergency.delete("pm2");
  }
}

// ---------------------------------------------------------------------------------------------
// crun

interface CrunConfig {
  work: string;
  crun: string;
  stateRoot: string;
  prefix: string;
  bundles: { tiny: string; node?: string };
}
interface CrunResult {
  series: Series[];
  mem: MemRow[];
}

const HYBRID = "cgroups in hybrid mode not supported";
const NS_WRAP = ["--mount", "--propagation", "private", "sh", "-c", 'umount /sys/fs/cgroup/unified && exec "$@"', "sh"];

function crunArgs(cfg: CrunConfig, args: string[]) {
  return ["--root", cfg.stateRoot, ...args];
}

/** Runs crun, wrapped in the mount-namespace workaround when `ns` is set. */
function crunSync(cfg: CrunConfig, ns: boolean, args: string[]) {
  return ns ? run("unshare", [...NS_WRAP, cfg.crun, ...crunArgs(cfg, args)]) : run(cfg.crun, crunArgs(cfg, args));
}

function crunAsync(cfg: CrunConfig, args: string[]): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cfg.crun, crunArgs(cfg, args), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.once("error", (e) => resolve({ ok: false, out: errText(e) }));
    child.once("close", (code) => resolve({ ok: code === 0, out: out.trim() }));
  });
}

/** Writes a bundle: `crun spec`, adjusted. Returns the bundle dir. */
function makeBundle(crun: string, dir: string, rootfs: string, args: string[], extraMounts: object[] = []): string {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync(crun, ["spec"], { cwd: dir, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`crun spec failed: ${r.stderr}`);
  const c = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as {
    root: { path: string };
    process: { terminal: boolean; args: string[] };
    mounts: object[];
    linux: { namespaces: Array<{ type: string }>; resources?: Record<string, unknown> };
  };
  c.root.path = rootfs;
  c.process.terminal = false;
  c.process.args = args;
  c.mounts.push(...extraMounts);
  // Same isolation as a star: pid/mount/uts/ipc namespaces (no network namespace) and the limits
  // start-bench.ts gives: cpu 50 %, 128 MiB memory, 64 pids.
  c.linux.namespaces = c.linux.namespaces.filter((ns) => ns.type !== "network");
  c.linux.resources = {
    ...c.linux.resources,
    cpu: { quota: 50_000, period: 100_000 },
    memory: { limit: 128 * 2 ** 20 },
    pids: { limit: 64 },
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(c, null, 1));
  return dir;
}

/** The rootfs: static busybox, the tiny binary, and mount points for a read-only host /usr (Node). */
function makeRootfs(work: string, tiny: string, idle: string): string {
  const root = join(work, "oci", "rootfs");
  for (const d of ["bin", "proc", "sys", "dev", "tmp", "etc", "usr", "app"]) mkdirSync(join(root, d), { recursive: true });
  copyFileSync("/bin/busybox", join(root, "bin", "busybox"));
  chmodSync(join(root, "bin", "busybox"), 0o755);
  const r = run("chroot", [root, "/bin/busybox", "--install", "-s", "/bin"]);
  if (!r.ok) throw new Error(`busybox in the rootfs does not run (is /bin/busybox from busybox-static?): ${r.out}`);
  copyFileSync(tiny, join(root, "tiny"));
  chmodSync(join(root, "tiny"), 0o755);
  copyFileSync(idle, join(root, "app", "idle.mjs"));
  // Debian is usr-merged: /lib and /lib64 are links into /usr.
  symlinkSync("usr/lib", join(root, "lib"));
  symlinkSync("usr/lib64", join(root, "lib64"));
  return root;
}

const liveContainers = new Set<string>();

function crunStarter(cfg: CrunConfig, bundle: string, tag: string): Starter {
  return async (i) => {
    const id = `${cfg.prefix}-${tag}-${i}`;
    const dir = join(cfg.work, "logs", "crun", `${tag}-${i}`);
    mkdirSync(dir, { recursive: true });
    const errPath = join(dir, "crun.err");
    const out = openSync(join(dir, "stdout.log"), "a");
    const err = openSync(errPath, "a");
    liveContainers.add(id);
    const t0 = performance.now();
    const seen = watchFirstLine(dir, "stdout.log");
    let child: ChildProcess;
    try {
      child = spawn(cfg.crun, crunArgs(cfg, ["run", "--detach", "--bundle", bundle, id]), { stdio: ["ignore", out, err] });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    const exited = exitOf(child).then((x) => {
      if (x.code !== 0) throw new Error(`crun run --detach ${id} exited ${x.code ?? x.signal}: ${readText(errPath).trim()}`);
      return performance.now();
    });
    exited.catch(() => undefined);
    const stop = async () => {
      await exited.catch(() => undefined);
      await crunAsync(cfg, ["kill", id, "KILL"]);
      const d = await crunAsync(cfg, ["delete", "-f", id]);
      if (!d.ok && !/does not exist|not found/i.test(d.out)) throw new Error(`crun delete -f ${id}: ${d.out}`);
      liveContainers.delete(id);
    };
    try {
      const t = await Promise.race([seen.promise, exited.then(() => seen.promise)]);
      const returned = (await exited) - t0;
      return { latency: t - t0, returned, stop, id };
    } catch (e) {
      seen.close();
      await stop().catch(() => undefined);
      const stderr = readText(errPath).trim();
      throw new Error(`crun container ${id}: ${errText(e)}${stderr ? `; crun/container stderr: ${stderr.slice(0, 500)}` : ""}`);
    }
  };
}

/** Container init pid from `crun state`. */
async function crunPid(cfg: CrunConfig, id: string): Promise<number> {
  const r = await crunAsync(cfg, ["state", id]);
  if (!r.ok) throw new Error(`crun state ${id}: ${r.out}`);
  return (JSON.parse(r.out) as { pid: number }).pid;
}

function processesNamed(name: string): number {
  let n = 0;
  for (const e of readdirSync("/proc")) if (/^\d+$/.test(e) && readText(`/proc/${e}/comm`).trim() === name && alive(Number(e))) n++;
  return n;
}

/** The crun measurements; runs in this process or in the namespace worker. */
async function crunMeasure(cfg: CrunConfig, version: string): Promise<CrunResult> {
  const series: Series[] = [];
  const mem: MemRow[] = [];
  const peer = `crun ${version}`;
  const via = "`crun run --detach`";
  try {
    log(`crun: tiny sequential ${N}`);
    series.push({ peer, via, program: "tiny (static C)", mode: "sequential", ...(await sequential(crunStarter(cfg, cfg.bundles.tiny, "ts"), N)) });
    log(`crun: tiny ${CONC} at a time, ${TOTAL}`);
    series.push({ peer, via, program: "tiny (static C)", mode: `${CONC} at a time`, ...(await batched(crunStarter(cfg, cfg.bundles.tiny, "tc"), TOTAL, CONC)) });
    if (cfg.bundles.node && CRUN_NODE_N > 0) {
      log(`crun: Node script sequential ${CRUN_NODE_N}`);
      series.push({ peer, via, program: "Node script (host /usr bound read-only)", mode: "sequential", ...(await sequential(crunStarter(cfg, cfg.bundles.node, "ns"), CRUN_NODE_N)) });
    }
    const holds: Array<[string, string, string]> = [[cfg.bundles.tiny, "htiny", "crun containers (tiny)"]];
    if (cfg.bundles.node) holds.push([cfg.bundles.node, "hnode", "crun containers (`node idle.mjs`)"]);
    for (const [bundle, tag, what] of HOLD > 0 ? holds : []) {
      log(`crun: holding ${HOLD} containers (${tag}) for memory`);
      const held = await holdMany(crunStarter(cfg, bundle, tag), HOLD, CONC);
      try {
        const pids = await Promise.all(held.map((h) => crunPid(cfg, h.id!)));
        const pss = await settledPss(pids);
        const crunLeft = processesNamed("crun");
        mem.push({
          what,
          instances: HOLD,
          perInstanceKb: sum(pss) / HOLD,
          totalKb: sum(pss),
          resident: crunLeft === 0 ? "no crun process stays resident" : `${crunLeft} crun processes resident`,
        });
      } finally {
        await Promise.allSettled(held.map((h) => h.stop()));
      }
    }
    return { series, mem };
  } finally {
    for (const id of liveContainers) {
      await crunAsync(cfg, ["kill", id, "KILL"]);
      await crunAsync(cfg, ["delete", "-f", id]);
    }
  }
}

function ensureCrun(): string | undefined {
  const ready = () => {
    const crun = which("crun");
    const bb = existsSync("/bin/busybox") && run("dpkg-query", ["-W", "-f=${Status}", "busybox-static"]).out.includes("install ok installed");
    return crun && bb ? crun : undefined;
  };
  const found = ready();
  if (found) return found;
  if (!values.install) {
    log("crun: not installed, run with --install (apt-get install -y crun busybox-static)");
    return undefined;
  }
  log("crun: apt-get install -y crun busybox-static");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  let r = run("apt-get", ["install", "-y", "crun", "busybox-static"], { env, timeoutMs: 600_000 });
  if (!r.ok) {
    log("crun: install failed, running apt-get update and trying again");
    run("apt-get", ["update"], { env, timeoutMs: 600_000 });
    r = run("apt-get", ["install", "-y", "crun", "busybox-static"], { env, timeoutMs: 600_000 });
  }
  if (!r.ok) throw new Error(`crun: apt-get install -y crun busybox-static failed (exit ${r.status}): ${r.out.slice(-1500)}`);
  const after = ready();
  if (!after) throw new Error("crun: installed, but crun or /bin/busybox (busybox-static) is still missing");
  return after;
}

async function crunPart(work: string, tiny: string, idle: string, series: Series[], mem: MemRow[], notes: string[]): Promise<void> {
  const crun = ensureCrun();
  if (!crun) {
    notes.push("crun: not measured (not installed; run with --install).");
    return;
  }
  const version = run(crun, ["--version"]).out.split("\n")[0]?.replace(/^crun version\s*/, "") ?? "?";
  const rootfs = makeRootfs(work, tiny, idle);
  const oci = join(work, "oci");
  const cfg: CrunConfig = {
    work,
    crun,
    stateRoot: join(work, "crun-state"),
    prefix: `cstl-peers-${process.pid}`,
    bundles: {
      tiny: makeBundle(crun, join(oci, "tiny"), rootfs, ["/tiny"]),
      node: makeBundle(crun, join(oci, "node"), rootfs, ["/usr/bin/node", "/app/idle.mjs"], [
        { destination: "/usr", type: "bind", source: "/usr", options: ["rbind", "ro", "nosuid", "nodev"] },
      ]),
    },
  };
  const probeBundle = makeBundle(crun, join(oci, "probe"), rootfs, ["/bin/true"]);
  if (!process.execPath.startsWith("/usr/")) {
    notes.push(`crun: Node script under crun skipped (node is ${process.execPath}, not under /usr).`);
    delete cfg.bundles.node;
  }
  mkdirSync(cfg.stateRoot, { recursive: true });

  // Probe: a foreground run of `true` (removes itself). Plain first, then the namespace workaround.
  let ns = false;
  const probe = crunSync(cfg, false, ["run", "--bundle", probeBundle, `${cfg.prefix}-probe`]);
  if (!probe.ok) {
    if (!probe.out.includes(HYBRID)) throw new Error(`crun: a trial run failed: ${probe.out || errText(probe.error)}`);
    if (!which("unshare")) throw new Error(`crun: "${probe.out}", and unshare (util-linux) for the workaround is missing`);
    const p2 = crunSync(cfg, true, ["run", "--bundle", probeBundle, `${cfg.prefix}-probe2`]);
    if (!p2.ok) throw new Error(`crun: fails on this host ("${probe.out}"), and also in a private mount namespace without /sys/fs/cgroup/unified: ${p2.out}`);
    ns = true;
    notes.push(
      `crun: plain \`crun run\` fails here ("${probe.out}"); measured with the workaround: crun runs inside ` +
        "`unshare --mount --propagation private sh -c 'umount /sys/fs/cgroup/unified && …'` (this script re-runs its crun part there; the host's mounts are unchanged).",
    );
  }
  notes.push(
    "crun bundle: `crun spec` with terminal false, network namespace dropped (pid, ipc, uts, mount remain), " +
      "cpu quota 50 ms/100 ms, memory 128 MiB, pids 64, read-only busybox rootfs; the Node bundle binds host /usr read-only.",
  );

  const removeLeftovers = () => {
    const list = crunSync(cfg, ns, ["list", "-q"]);
    for (const id of list.ok ? list.out.split("\n").filter((s) => s.startsWith(cfg.prefix)) : []) {
      crunSync(cfg, ns, ["kill", id, "KILL"]);
      const d = crunSync(cfg, ns, ["delete", "-f", id]);
      if (!d.ok) log(`crun: could not delete leftover container ${id}: ${d.out}`);
    }
  };
  let workerProc: ChildProcess | undefined;
  emergency.set("crun", () => {
    // The worker (same process group on Ctrl-C) removes its own containers; tell it when only we got the signal.
    if (workerProc && workerProc.exitCode === null) workerProc.kill("SIGTERM");
    removeLeftovers();
  });
  try {
    let result: CrunResult;
    if (!ns) {
      result = await crunMeasure(cfg, version);
    } else {
      const cfgPath = join(work, "crun-worker.json");
      const outPath = join(work, "crun-result.json");
      writeFileSync(cfgPath, JSON.stringify({ cfg, version, outPath }));
      const argv = [...process.execArgv, SELF, "--crun-worker", cfgPath, ...forwardedArgs()];
      const child = spawn("unshare", [...NS_WRAP, process.execPath, ...argv], { stdio: ["ignore", "inherit", "inherit"] });
      workerProc = child;
      const x = await exitOf(child);
      const out = JSON.parse(readText(outPath) || "{}") as Partial<CrunResult> & { error?: string };
      if (x.code !== 0 || !out.series || !out.mem) {
        throw new Error(`crun: the measurement (run in the mount namespace) failed (exit ${x.code ?? x.signal}): ${out.error ?? "see its messages above"}`);
      }
      result = { series: out.series, mem: out.mem };
    }
    series.push(...result.series);
    mem.push(...result.mem);
  } finally {
    // Whatever the measurement left behind (it cleans up itself; this is for crashes).
    removeLeftovers();
    emergency.delete("crun");
  }
}

function forwardedArgs(): string[] {
  const keys = ["n", "concurrency", "total", "crun-node-n", "hold", "warmup", "line-timeout"] as const;
  return keys.flatMap((k) => [`--${k}`, String(values[k])]);
}

// ---------------------------------------------------------------------------------------------
// Output

const ms = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)} ms` : "–");
function p(lat: number[], q: number): number {
  const s = lat.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return percentile(s, q);
}

function printReport(series: Series[], mem: MemRow[], notes: string[]): void {
  console.log(`Machine: ${machine()}\n`);
  console.log("Start latency: start issued → the program's first stdout line is in its log file (fs.watch on the directory, as start-bench.ts).");
  console.log(`Sequential runs start each instance after the previous one is stopped (after ${WARMUP} uncounted warm-up starts); "${CONC} at a time" starts groups of ${CONC} together and stops them before the next group.\n`);
  if (series.length === 0) console.log("(no start latency measured)");
  else console.log(
    markdownTable(
      ["peer", "started via", "program", "mode", "n", "p50", "p99", "start call returned (p50)"],
      series.map((s) => [s.peer, s.via, s.program, s.mode, s.lat.length, ms(p(s.lat, 50)), ms(p(s.lat, 99)), ms(p(s.ret, 50))]),
    ),
  );
  if (mem.length > 0) {
    console.log(`\nResident memory with ${HOLD} instances held (PSS from /proc/PID/smaps_rollup, after it settles):\n`);
    console.log(
      markdownTable(
        ["what", "instances", "PSS per instance", "PSS total", "resident besides the instances"],
        mem.map((m) => [m.what, m.instances, `${m.perInstanceKb.toFixed(0)} kB`, `${m.totalKb.toFixed(0)} kB`, m.resident]),
      ),
    );
  }
  if (notes.length > 0) console.log(`\n${notes.map((n) => `- ${n}`).join("\n")}`);
}

// ---------------------------------------------------------------------------------------------
// Main

function killPlain(): void {
  for (const c of livePlain) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  livePlain.clear();
}

async function worker(cfgPath: string): Promise<void> {
  const { cfg, version, outPath } = JSON.parse(readFileSync(cfgPath, "utf8")) as { cfg: CrunConfig; version: string; outPath: string };
  emergency.set("crun containers", () => {
    for (const id of liveContainers) {
      spawnSync(cfg.crun, crunArgs(cfg, ["kill", id, "KILL"]));
      spawnSync(cfg.crun, crunArgs(cfg, ["delete", "-f", id]));
    }
  });
  process.once("SIGINT", () => onSignal("SIGINT", () => undefined));
  process.once("SIGTERM", () => onSignal("SIGTERM", () => undefined));
  try {
    writeFileSync(outPath, JSON.stringify(await crunMeasure(cfg, version)));
  } catch (e) {
    writeFileSync(outPath, JSON.stringify({ error: errText(e) }));
    throw e;
  }
}

async function main(): Promise<void> {
  const work = await mkdtemp("/var/tmp/constellation-peers-");
  chmodSync(work, 0o755);
  emergency.set("plain", killPlain);
  const removeWork = () => rmSync(work, { recursive: true, force: true });
  process.once("SIGINT", () => onSignal("SIGINT", removeWork));
  process.once("SIGTERM", () => onSignal("SIGTERM", removeWork));

  const series: Series[] = [];
  const mem: MemRow[] = [];
  const notes: string[] = [];
  const failures: string[] = [];
  try {
    const tiny = join(work, "tiny");
    const cc = run("cc", ["-O2", "-static", "-o", tiny, join(SRC, "tiny.c")]);
    if (!cc.ok) throw new Error(`cannot compile ${join(SRC, "tiny.c")} with cc -O2 -static: ${cc.out || errText(cc.error)}`);
    const idle = join(work, "idle.mjs");
    copyFileSync(join(SRC, "idle.mjs"), idle);
    chmodSync(idle, 0o644);

    // Each part runs on its own; a failing part is reported and the others still run.
    const parts: Array<[string, () => Promise<void>]> = [
      ["plain", () => plainPart(work, tiny, idle, series, mem)],
      ["pm2", () => pm2Part(work, tiny, idle, series, mem, notes)],
      ["crun", () => crunPart(work, tiny, idle, series, mem, notes)],
    ];
    for (const [name, part] of parts) {
      if (!ONLY.has(name)) continue;
      try {
        await part();
      } catch (e) {
        failures.push(`${name}: ${errText(e)}`);
        log(`${name} FAILED: ${errText(e)}`);
      }
    }
    printReport(series, mem, [...notes, ...failures.map((f) => `FAILED ${f}`)]);
  } finally {
    killPlain();
    await rm(work, { recursive: true, force: true });
  }
  process.exitCode = failures.length > 0 ? 1 : 0;
}

try {
  if (values["crun-worker"]) await worker(values["crun-worker"]);
  else await main();
} catch (e) {
  const who = values["crun-worker"] ? "peers-bench (crun part)" : "peers-bench";
  console.error(`${who}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exitCode = 1;
}
// pm2's client can leave sockets that keep reconnecting; everything is stopped by now.
process.exit();
