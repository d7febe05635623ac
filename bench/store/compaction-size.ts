/**
 * How big does the SQLite store's file get? 1,000,000 updates spread over 1,000 keys
 * (100-byte values), with automatic compaction at its default retention, and, for contrast,
 * with compaction off. Reports the database + WAL size on disk and the write rate.
 *
 *   node dist/bench/store/compaction-size.js [--updates 1000000] [--keys 1000] [--no-baseline]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { existsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import { machine, markdownTable, perSec } from "../lib/report.js";

const { values } = parseArgs({
  options: {
    updates: { type: "string", default: "1000000" },
    keys: { type: "string", default: "1000" },
    "no-baseline": { type: "boolean", default: false },
  },
});
const UPDATES = Number(values.updates);
const KEYS = Number(values.keys);
const VALUE = "v".repeat(100);

const sizeOf = (path: string) => (existsSync(path) ? statSync(path).size : 0);
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

async function run(label: string, retainRevisions: number | undefined): Promise<Array<string | number>> {
  const dir = await mkdtemp(join(tmpdir(), "constellation-size-"));
  const path = join(dir, "state.db");
  try {
    const store = new SqliteStore({ path, ...(retainRevisions === undefined ? {} : { retainRevisions }) });
    let peak = 0;
    const start = performance.now();
    for (let i = 0; i < UPDATES; i++) {
      await store.put(`key/${i % KEYS}`, VALUE);
      if (i % 50_000 === 0) peak = Math.max(peak, sizeOf(path) + sizeOf(`${path}-wal`));
    }
    const seconds = (performance.now() - start) / 1000;
    const live = sizeOf(path) + sizeOf(`${path}-wal`);
    await store.close(); // a clean close checkpoints the WAL into the main file
    const closed = sizeOf(path) + sizeOf(`${path}-wal`);
    return [label, UPDATES.toLocaleString("en-US"), KEYS, mib(Math.max(peak, live)), mib(live), mib(closed), perSec(UPDATES / seconds)];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const rows = [await run("compaction on (default: keep 10,000 revisions)", undefined)];
if (!values["no-baseline"]) rows.push(await run("compaction off", 0));
console.log(`Machine: ${machine()}\n`);
console.log(
  markdownTable(["SQLite store", "updates", "keys", "peak db+WAL", "db+WAL at end", "db after close", "write rate"], rows),
);
