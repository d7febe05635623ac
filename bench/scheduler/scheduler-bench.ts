/**
 * The scheduler's throughput (issue 13): 100,000 star placements onto 1,000 simulated nodes of
 * mixed sizes (a third each of 4 cores/8 GiB, 16/64 and 64/256), once with binpack (stars of
 * no deployment) and once with spread (1,000 deployments of 100 stars), each as one pass over
 * one snapshot, as the controller's loop would make it. Reports the time, placements per second,
 * and the heap that holds the placed state (after a full GC). Target: < 5 s for 100,000
 * (>= 20,000/s) and < 300 MB.
 *
 *   node --expose-gc dist/bench/scheduler/scheduler-bench.js [--stars 100000] [--nodes 1000] [--runs 3]
 */
import { cpus, totalmem } from "node:os";
import { Scheduler } from "../../src/scheduler/scheduler.js";
import type { Ask, SchedNode } from "../../src/scheduler/types.js";

const arg = (name: string, d: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const STARS = arg("stars", 100_000);
const NODES = arg("nodes", 1_000);
const RUNS = arg("runs", 3);
const GiB = 2 ** 30;
const MiB = 2 ** 20;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc (the heap is measured after a full collection)");

const SIZES = [
  [4, 8],
  [16, 64],
  [64, 256],
] as const;
const nodes: SchedNode[] = Array.from({ length: NODES }, (_, i) => {
  const [cores, mem] = SIZES[i % 3]!;
  return { name: `node-${i}`, capacity: { cpuMillis: cores * 1000, memoryBytes: mem * GiB }, attributes: { "node.name": `node-${i}`, zone: `z${i % 3}` } };
});
const CPU = [100, 250];
const MEM = [128, 256, 512];
const asks = (strategy: "binpack" | "spread"): Ask[] =>
  Array.from({ length: STARS }, (_, i) => ({
    name: `star-${i}`,
    namespace: "default",
    demand: { cpuMillis: CPU[i % 2]!, memoryBytes: MEM[i % 3]! * MiB, diskBytes: 0, pids: 64 },
    priority: 50,
    strategy,
    ...(strategy === "spread" ? { group: `deploy-${Math.floor(i / 100)}` } : {}),
    constraints: [],
    affinities: [],
    distinctHosts: false,
    ports: [],
  }));

const kept: unknown[] = [];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: string[] = [];
for (const strategy of ["binpack", "spread"] as const) {
  const times: number[] = [];
  const heaps: number[] = [];
  let placedCount = 0;
  let used = 0;
  for (let r = 0; r < RUNS; r++) {
    kept.length = 0;
    const list = asks(strategy);
    kept.push(list); // the requests are the caller's, not the state's: held through both measurements
    gc();
    const before = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    const s = new Scheduler({ nodes, placed: [] });
    let placed = 0;
    const on = new Set<string>();
    for (const a of list) {
      const p = s.place(a);
      if (p.node !== undefined) {
        placed++;
        on.add(p.node);
      }
    }
    used = on.size;
    times.push(performance.now() - t0);
    kept.push(s); // held while the heap is measured
    if (r === 0) {
      // The first run's heap (later runs' figures are muddled by what the runs before them leave).
      gc();
      heaps.push(process.memoryUsage().heapUsed - before);
    }
    placedCount = placed;
  }
  const ms = median(times);
  rows.push(`| ${strategy} | ${STARS.toLocaleString("en")} onto ${NODES.toLocaleString("en")} | ${placedCount.toLocaleString("en")} | ${(ms / 1000).toFixed(2)} s | ${Math.round((STARS / ms) * 1000).toLocaleString("en")}/s | ${used.toLocaleString("en")} | ${(median(heaps) / MiB).toFixed(0)} MB |`);
}
console.log(`${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / GiB)} GiB, Node ${process.version}; median of ${RUNS} runs\n`);
console.log("| strategy | stars onto nodes | placed | time | placements/s | nodes used | heap of the placed state |");
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) console.log(r);
