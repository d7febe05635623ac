/**
 * Placement through the controller's own loop (issue 13): the scheduler bench measures the pure
 * core; this one measures what the controller does with it — 1,000 node records (mixed sizes,
 * as the core's bench) and N star records written straight to an embedded store (SQLite, a file
 * under /var/lib), then a Controller started on it: how long until every star has its node
 * (each placement a compare-and-set write and an event), and the process's memory once the
 * state is placed (V8 heap after a full GC, and RSS — the store's pages included, it runs in
 * this process). No agents: nodes are records with live leases.
 *
 *   node --expose-gc dist/bench/scheduler/controller-place-bench.js [--stars 100000] [--nodes 1000]
 */
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Controller } from "../../src/controller/controller.js";
import { KEYS, type NodeRecord, type StarRecord, nodeKey, starKey } from "../../src/model/records.js";
import { DEFAULT_NODE_LIMITS } from "../../src/model/spec.js";
import { openStore } from "../../src/store/open.js";
import { machine, markdownTable } from "../lib/report.js";

const { values } = parseArgs({ options: { stars: { type: "string", default: "100000" }, nodes: { type: "string", default: "1000" } } });
const STARS = Number(values.stars);
const NODES = Number(values.nodes);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");
const GiB = 2 ** 30;
const SIZES = [
  [4, 8],
  [16, 64],
  [64, 256],
] as const;

await mkdir("/var/lib/constellation-bench", { recursive: true, mode: 0o755 });
const work = await mkdtemp("/var/lib/constellation-bench/controller-place-");
const store = await openStore({ backend: "sqlite", path: join(work, "store.db") });
try {
  for (let i = 0; i < NODES; i++) {
    const [cores, mem] = SIZES[i % 3]!;
    const n: NodeRecord = { name: `node-${i}`, cpuCores: cores, memoryBytes: mem * GiB, runtimes: ["process"], limitsEnforced: true, startedAt: Date.now(), limits: DEFAULT_NODE_LIMITS, labels: { zone: `z${i % 3}` } };
    await store.txn({ success: [{ type: "put", key: nodeKey(n.name), value: JSON.stringify(n) }, { type: "put", key: `${KEYS.alive}${n.name}`, value: "{}" }] });
  }
  const MEM = [128, 256, 512];
  for (let i = 0; i < STARS; i += 128) {
    const ops = [];
    for (let k = i; k < Math.min(STARS, i + 128); k++) {
      const name = `s-${k}`;
      const r: StarRecord = { name, uid: randomUUID(), spec: { name, command: ["sleep", "600"], ram_mb: MEM[k % 3]!, cpu_cores: k % 2 ? 0.25 : 0.1 }, desired: "running", createdAt: Date.now(), generation: 1 };
      ops.push({ type: "put" as const, key: starKey(name), value: JSON.stringify(r) });
    }
    await store.txn({ success: ops });
  }
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  // Placed: counted from the store's own changes (a star's record put with a node).
  let placed = 0;
  const seen = new Set<string>();
  const watch = store.watch({ prefix: KEYS.stars }, { fromRevision: (await store.revision()) + 1 });
  const counting = (async () => {
    for await (const batch of watch) {
      for (const e of batch.events) {
        if (e.type !== "put" || seen.has(e.kv.key)) continue;
        if ((JSON.parse(e.kv.value) as StarRecord).node !== undefined) {
          seen.add(e.kv.key);
          placed++;
        }
      }
      if (placed >= STARS) return;
    }
  })();
  const controller = new Controller({ store, nodeTtlSeconds: 3600 });
  const t0 = performance.now();
  controller.start();
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 250);
  await counting;
  const ms = performance.now() - t0;
  clearInterval(sampler);
  watch.close();
  gc();
  const heap = process.memoryUsage().heapUsed;
  const rss = process.memoryUsage().rss;
  await controller.stop();
  console.log(`\n${machine()}\n`);
  console.log(
    markdownTable(
      ["stars onto nodes", "all placed after", "placements/s", "heap after GC (placed state)", "heap before the controller", "RSS now / peak"],
      [[`${STARS.toLocaleString("en")} onto ${NODES.toLocaleString("en")}`, `${(ms / 1000).toFixed(1)} s`, Math.round((STARS / ms) * 1000).toLocaleString("en"), `${(heap / 2 ** 20).toFixed(0)} MB`, `${(heapBefore / 2 ** 20).toFixed(0)} MB`, `${(rss / 2 ** 20).toFixed(0)} / ${(peakRss / 2 ** 20).toFixed(0)} MB`]],
    ),
  );
} finally {
  await store.close();
  await rm(work, { recursive: true, force: true });
}
