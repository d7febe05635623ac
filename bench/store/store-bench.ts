/**
 * Store benchmark: one client, one operation at a time (no pipelining), SQLite and a real
 * one-member etcd side by side in one run, both with their data on the same disk.
 *
 *   node dist/bench/store/store-bench.js [--n 50000] [--etcd-n 3000] [--watch-n 5000]
 *
 * Measures put, get, txn (compare-and-set) and watch delivery (from the put call until a
 * watcher in the same process holds the event), printing a markdown table for
 * docs/benchmarks.md and the targets of issue 2 with pass/fail.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import { openEtcdStore } from "../../src/store/etcd/etcd-store.js";
import type { Store } from "../../src/store/types.js";
import { startEtcd } from "../../test/helpers/etcd-harness.js";
import { type LatencySummary, machine, markdownTable, perSec, percentile, timeSequential, us } from "../lib/report.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "50000" },
    "etcd-n": { type: "string", default: "3000" },
    "watch-n": { type: "string", default: "5000" },
    keys: { type: "string", default: "1000" },
  },
});
const N = Number(values.n);
const ETCD_N = Number(values["etcd-n"]);
const WATCH_N = Number(values["watch-n"]);
const KEYS = Number(values.keys);
const VALUE = "v".repeat(100);

interface Result {
  put: LatencySummary;
  get: LatencySummary;
  txn: LatencySummary;
  watch: LatencySummary;
}

async function measure(store: Store, n: number, watchN: number): Promise<Result> {
  const p = `bench/${Date.now()}/`;
  // Warm up: create every key once (and let the JIT settle).
  for (let i = 0; i < KEYS; i++) await store.put(`${p}${i}`, VALUE);
  const put = await timeSequential(n, (i) => store.put(`${p}${i % KEYS}`, VALUE));
  const get = await timeSequential(n, (i) => store.get(`${p}${i % KEYS}`));
  const txn = await timeSequential(n, async (i) => {
    const key = `${p}${i % KEYS}`;
    // A CAS that holds: compare on the version we just read is what controllers do.
    const res = await store.txn({
      compare: [{ key, target: "version", op: ">", value: 0 }],
      success: [{ type: "put", key, value: VALUE }],
    });
    if (!res.succeeded) throw new Error("txn compare unexpectedly failed");
  });
  const watch = await watchDelivery(store, `${p}w/`, watchN);
  return { put, get, txn, watch };
}

/** From the put call to the watcher holding the event, one write at a time. */
async function watchDelivery(store: Store, prefix: string, n: number): Promise<LatencySummary> {
  const w = store.watch({ prefix });
  await w.ready;
  const it = w[Symbol.asyncIterator]();
  const lat: number[] = [];
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const next = it.next();
    await store.put(`${prefix}${i % 10}`, VALUE);
    const got = await next;
    if (got.done) throw new Error("watch ended");
    lat.push((performance.now() - t) * 1000);
  }
  const elapsed = performance.now() - start;
  w.close();
  lat.sort((a, b) => a - b);
  return { n, p50: percentile(lat, 50), p99: percentile(lat, 99), opsPerSec: (n / elapsed) * 1000 };
}

const dir = await mkdtemp(join(tmpdir(), "constellation-bench-"));
const etcd = await startEtcd({ members: 1 });
try {
  const sqlite = new SqliteStore({ path: join(dir, "state.db") });
  const s = await measure(sqlite, N, WATCH_N);
  await sqlite.close();
  const etcdStore = await openEtcdStore({ endpoints: etcd.endpoints });
  const e = await measure(etcdStore, ETCD_N, Math.min(WATCH_N, ETCD_N));
  await etcdStore.close();

  const rows: Array<Array<string | number>> = [];
  for (const [name, r, n] of [
    ["SQLite (embedded, WAL)", s, N],
    ["etcd 3.4 (1 member, gRPC)", e, ETCD_N],
  ] as const) {
    for (const op of ["put", "get", "txn", "watch"] as const) {
      rows.push([name, op === "watch" ? "watch delivery" : op, op === "watch" ? r.watch.n : n, us(r[op].p50), us(r[op].p99), perSec(r[op].opsPerSec)]);
    }
  }
  console.log(`Machine: ${machine()}`);
  console.log(`One client, sequential; ${KEYS} keys, 100-byte values.\n`);
  console.log(markdownTable(["backend", "operation", "n", "p50", "p99", "throughput"], rows));
  const ratio = s.put.opsPerSec / e.put.opsPerSec;
  console.log(`\nSQLite/etcd single-client put throughput: ${ratio.toFixed(1)}×`);
  const targets: Array<[string, boolean]> = [
    [`SQLite put p50 < 100 µs (${us(s.put.p50)})`, s.put.p50 < 100],
    [`SQLite ≥ 20,000 puts/s from one client (${perSec(s.put.opsPerSec)})`, s.put.opsPerSec >= 20_000],
    [`SQLite watch delivery p99 < 2 ms (${us(s.watch.p99)})`, s.watch.p99 < 2000],
    [`SQLite ≥ 5× etcd single-client writes (${ratio.toFixed(1)}×)`, ratio >= 5],
  ];
  console.log("\nTargets:");
  for (const [what, ok] of targets) console.log(`  ${ok ? "PASS" : "FAIL"}  ${what}`);
} finally {
  await etcd.stop();
  await rm(dir, { recursive: true, force: true });
}
