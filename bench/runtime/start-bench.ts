/**
 * Runtime benchmark (issue 3): start latency, resident overhead per star, and mass starts, for
 * the process runtime beside plain `child_process.spawn` of the same program in one run.
 *
 *   node dist/bench/runtime/start-bench.js [--n 200] [--concurrency 20] [--hold 100]
 *
 * Start latency is from the start call until the program's first stdout line is in its log
 * file; both sides write stdout to a file and are detected the same way (inotify on the
 * directory), so the difference is what the runtime adds: cgroup limits (cpu, memory, pids),
 * pid/mount/uts/ipc namespaces, an unprivileged user, no-new-privs, and the sandbox of issue 8
 * (the star's read-only view of the host with private places hidden, its scratch tmpfs, the
 * seccomp filter, RLIMIT_NOFILE). A third column runs the same runtime with the sandbox off
 * (`sandbox: false`, a measurement-only option), so its cost is measured in the same run.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, openSync, closeSync, readFileSync, chmodSync, copyFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ProcessRuntime } from "../../src/runtime/process/process-runtime.js";
import { firstLine, machine, markdownTable, percentile } from "../lib/report.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "200" },
    concurrency: { type: "string", default: "20" },
    hold: { type: "string", default: "100" },
    "node-n": { type: "string", default: "50" },
  },
});
const N = Number(values.n);
const CONC = Number(values.concurrency);
const HOLD = Number(values.hold);
const NODE_N = Number(values["node-n"]);

const here = fileURLToPath(new URL(".", import.meta.url));
const src = join(here, "../../../bench/runtime");
// Where stars can see the program: not under /tmp or /var/tmp (each star has its own), nor
// /home or /root (hidden from stars).
await mkdir("/var/lib/constellation-bench", { recursive: true, mode: 0o755 });
const work = await mkdtemp("/var/lib/constellation-bench/run-");
chmodSync(work, 0o755);
const tiny = join(work, "tiny");
const cc = spawnSync("cc", ["-O2", "-static", "-o", tiny, join(src, "tiny.c")], { stdio: "inherit" });
if (cc.status !== 0) throw new Error("cannot compile tiny.c (needs cc)");
const idle = join(work, "idle.mjs");
copyFileSync(join(src, "idle.mjs"), idle);
chmodSync(idle, 0o644);


/** latency: from this start's own call; at: when its first line was seen (performance.now()). */
type Starter = (i: number) => Promise<{ latency: number; at: number; stop: () => Promise<void> }>;

function plainStarter(argv: string[], tag: string): Starter {
  return async (i) => {
    const dir = join(work, "plain", `${tag}-${i}`);
    mkdirSync(dir, { recursive: true });
    const t0 = performance.now();
    const seen = firstLine(dir, "stdout.log");
    const out = openSync(join(dir, "stdout.log"), "a");
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", out, "ignore"], detached: true });
    closeSync(out);
    const at = await seen;
    return {
      latency: at - t0,
      at,
      stop: async () => {
        const gone = new Promise((r) => child.once("exit", r));
        child.kill("SIGKILL");
        await gone;
      },
    };
  };
}

function runtimeStarter(rt: ProcessRuntime, argv: string[], tag: string, data = "data"): Starter {
  return async (i) => {
    const id = `${tag}-${i}`;
    const dir = join(work, data, "stars", id);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const t0 = performance.now();
    const seen = firstLine(dir, "stdout.log");
    await rt.start(id, { name: id, command: argv, cpu_percent: 50, ram_mb: 128, pids: 64 });
    const at = await seen;
    return { latency: at - t0, at, stop: () => rt.remove(id) };
  };
}

async function sequential(start: Starter, n: number): Promise<number[]> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = await start(i);
    lat.push(s.latency);
    await s.stop();
  }
  return lat;
}

/**
 * Groups of `conc` starts issued together. Two measures: from each start's own call (spawn()
 * blocks, so plain spawn issues its group one call after another, and each call's clock starts
 * late), and from the moment the group was issued (what a user who starts 20 things waits).
 */
async function batched(start: Starter, n: number, conc: number): Promise<{ perCall: number[]; fromIssue: number[] }> {
  const perCall: number[] = [];
  const fromIssue: number[] = [];
  for (let i = 0; i < n; i += conc) {
    const issued = performance.now();
    const group = await Promise.all(Array.from({ length: Math.min(conc, n - i) }, (_, k) => start(100_000 + i + k)));
    for (const s of group) {
      perCall.push(s.latency);
      fromIssue.push(s.at - issued);
    }
    await Promise.all(group.map((s) => s.stop()));
  }
  return { perCall, fromIssue };
}

const fmt = (lat: number[]) => {
  const s = [...lat].sort((a, b) => a - b);
  return [`${percentile(s, 50).toFixed(2)} ms`, `${percentile(s, 99).toFixed(2)} ms`];
};

function pssKb(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function rssKb(): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) : 0;
}

const rt = await ProcessRuntime.create({ dataDir: join(work, "data") });
const bare = await ProcessRuntime.create({ dataDir: join(work, "bare"), sandbox: false });
try {
  const rows: Array<Array<string | number>> = [];
  // Alternate plain and runtime runs so drift affects all alike.
  const tinyPlainSeq = await sequential(plainStarter([tiny], "ts"), N);
  const tinyBareSeq = await sequential(runtimeStarter(bare, [tiny], "bts", "bare"), N);
  const tinyRtSeq = await sequential(runtimeStarter(rt, [tiny], "ts"), N);
  const tinyPlainConc = await batched(plainStarter([tiny], "tc"), N, CONC);
  const tinyBareConc = await batched(runtimeStarter(bare, [tiny], "btc", "bare"), N, CONC);
  const tinyRtConc = await batched(runtimeStarter(rt, [tiny], "tc"), N, CONC);
  const nodePlain = await sequential(plainStarter([process.execPath, idle], "ns"), NODE_N);
  const nodeBare = await sequential(runtimeStarter(bare, [process.execPath, idle], "bns", "bare"), NODE_N);
  const nodeRt = await sequential(runtimeStarter(rt, [process.execPath, idle], "ns"), NODE_N);
  const med = (a: number[]) => percentile([...a].sort((x, y) => x - y), 50);
  const added = (rt: number[], plain: number[]) => `${med(rt) - med(plain) >= 0 ? "+" : ""}${(med(rt) - med(plain)).toFixed(2)} ms`;
  const row = (program: string, mode: string, n: number, plain: number[], noSandbox: number[], full: number[]) =>
    rows.push([program, mode, n, fmt(plain)[0]!, fmt(noSandbox)[0]!, ...fmt(full), added(full, plain), added(full, noSandbox)]);
  row("tiny (static C)", "sequential", N, tinyPlainSeq, tinyBareSeq, tinyRtSeq);
  row("tiny (static C)", `${CONC} at a time, from each call`, N, tinyPlainConc.perCall, tinyBareConc.perCall, tinyRtConc.perCall);
  row("tiny (static C)", `${CONC} at a time, from the group's issue`, N, tinyPlainConc.fromIssue, tinyBareConc.fromIssue, tinyRtConc.fromIssue);
  row("Node script", "sequential", NODE_N, nodePlain, nodeBare, nodeRt);

  // Hold HOLD stars at once: time until all run, then what each costs besides its program.
  global.gc?.();
  const rssBefore = rssKb();
  const t0 = performance.now();
  const held = await Promise.all(Array.from({ length: HOLD }, (_, i) => rt.start(`hold-${i}`, { name: `hold-${i}`, command: [tiny], ram_mb: 64, pids: 16 })));
  const allRunning = performance.now() - t0;
  global.gc?.();
  const rssAfter = rssKb();
  // Per star: its init (the parent of its program); once: the node's launcher (the inits' parent).
  let helperPss = 0;
  const launchers = new Set<number>();
  const ppid = (pid: number) => {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  };
  for (const s of held) {
    const initPid = ppid(s.pid!);
    launchers.add(ppid(initPid));
    helperPss += pssKb(initPid);
  }
  for (const pid of launchers) helperPss += pssKb(pid);
  const perStarKb = (helperPss + Math.max(0, rssAfter - rssBefore)) / HOLD;
  for (const s of held) await rt.remove(s.id);

  console.log(`Machine: ${machine()}\n`);
  console.log("Start latency: start call → first stdout line in the log file (same detection for both).\n");
  console.log(
    markdownTable(
      ["program", "mode", "n", "plain spawn p50", "runtime, sandbox off p50", "process runtime p50", "runtime p99", "added over plain (p50)", "the sandbox's share (p50)"],
      rows,
    ),
  );
  console.log(`\n${HOLD} tiny stars started at once: all running after ${allRunning.toFixed(0)} ms.`);
  console.log(
    `Resident overhead per star at ${HOLD} running: ${perStarKb.toFixed(0)} kB ` +
      `(launcher + init PSS ${(helperPss / HOLD).toFixed(0)} kB, agent RSS growth ${((rssAfter - rssBefore) / HOLD).toFixed(0)} kB).`,
  );
} finally {
  for (const r of [rt, bare]) {
    for (const s of r.list()) await r.remove(s.id).catch(() => undefined);
    await r.close();
  }
  await rm(work, { recursive: true, force: true });
}
