/**
 * Isolate runtime benchmark (issue 3): start latency of an isolate star (start call → its first
 * stdout line in the log file, as start-bench.ts measures process stars) once the host runs,
 * beside a bare worker_threads Worker started in this process (no isolation, output to a pipe);
 * memory per isolate with 100 held; and 100 isolates started at once.
 *
 *   node --expose-gc dist/bench/runtime/isolate-bench.js [--n 50] [--hold 100] [--json]
 *
 * --json: one line of figures instead of the tables (node-versions.ts compares Node versions).
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { IsolateRuntime } from "../../src/runtime/isolate/isolate-runtime.js";
import { firstLine, machine, markdownTable, percentile } from "../lib/report.js";

const { values } = parseArgs({ options: { n: { type: "string", default: "50" }, hold: { type: "string", default: "100" }, json: { type: "boolean", default: false } } });
const N = Number(values.n);
const HOLD = Number(values.hold);

const work = await mkdtemp("/var/tmp/constellation-isobench-");
chmodSync(work, 0o755);
const script = join(work, "idle.mjs");
writeFileSync(script, 'console.log("ready");\nsetInterval(() => {}, 1 << 30);\n');
chmodSync(script, 0o644);


const fmt = (lat: number[]) => {
  const s = [...lat].sort((a, b) => a - b);
  return [`${percentile(s, 50).toFixed(2)} ms`, `${percentile(s, 99).toFixed(2)} ms`];
};

function hostPss(pid: number): number {
  const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
  return m ? Number(m[1]) : 0;
}

const rt = await IsolateRuntime.create({ dataDir: join(work, "data") });
try {
  // Bare worker threads, for reference: no isolation, no files.
  const bare: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const w = new Worker(script, { stdout: true, resourceLimits: { maxOldGenerationSizeMb: 48, maxYoungGenerationSizeMb: 16 } });
    await new Promise<void>((resolve) => w.stdout.once("data", () => resolve()));
    bare.push(performance.now() - t0);
    await w.terminate();
  }
  // The host starts with the first star; measure after it runs.
  await rt.start("warmup", { name: "warmup", script, ram_mb: 64 });
  await rt.remove("warmup");
  const iso: number[] = [];
  for (let i = 0; i < N; i++) {
    const id = `s-${i}`;
    const dir = join(work, "data", "stars", id);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const t0 = performance.now();
    const seen = firstLine(dir);
    await rt.start(id, { name: id, script, ram_mb: 64 });
    iso.push((await seen) - t0);
    await rt.remove(id);
  }
  // Hold HOLD isolates: time until all run and print, and the host's PSS growth per isolate.
  const hostPid = rt.status("s-0")?.pid ?? (await rt.start("probe", { name: "probe", script, ram_mb: 64 })).pid!;
  const before = hostPss(hostPid);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: HOLD }, async (_, i) => {
      const id = `h-${i}`;
      const dir = join(work, "data", "stars", id);
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      const seen = firstLine(dir);
      await rt.start(id, { name: id, script, ram_mb: 64 });
      await seen;
    }),
  );
  const allUp = performance.now() - t0;
  const after = hostPss(hostPid);
  // The floor, for comparison: HOLD bare Workers created at once in this process (no isolation,
  // no host, no files), until each has printed.
  const t1 = performance.now();
  const bareHeld = await Promise.all(
    Array.from({ length: HOLD }, async () => {
      const w = new Worker(script, { stdout: true, resourceLimits: { maxOldGenerationSizeMb: 48, maxYoungGenerationSizeMb: 16 } });
      await new Promise<void>((resolve) => w.stdout.once("data", () => resolve()));
      return w;
    }),
  );
  const bareUp = performance.now() - t1;
  await Promise.all(bareHeld.map((w) => w.terminate()));
  if (values.json) {
    const p50 = (lat: number[]) => percentile([...lat].sort((a, b) => a - b), 50);
    const p99 = (lat: number[]) => percentile([...lat].sort((a, b) => a - b), 99);
    console.log(JSON.stringify({ node: process.version, bareP50: p50(bare), isoP50: p50(iso), isoP99: p99(iso), allUp, bareUp, pssPerIsolateMb: (after - before) / HOLD / 1024 }));
  } else {
    console.log(`Machine: ${machine()}\n`);
    console.log(markdownTable(["what", "n", "p50", "p99"], [["bare Worker (same process, no isolation)", N, ...fmt(bare)], ["isolate star (host running)", N, ...fmt(iso)]]));
    console.log(`\n${HOLD} isolate stars started at once: all printed their first line after ${allUp.toFixed(0)} ms.`);
    console.log(`${HOLD} bare Workers created at once in the benchmark's process (the floor): ${bareUp.toFixed(0)} ms.`);
    console.log(`Host PSS growth per isolate with ${HOLD} held: ${((after - before) / HOLD / 1024).toFixed(1)} MB.`);
  }
} finally {
  for (const s of rt.list()) await rt.remove(s.id).catch(() => undefined);
  await rt.close();
  await rm(work, { recursive: true, force: true });
}
