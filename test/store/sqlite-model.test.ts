/**
 * Model-based property test: random sequences of puts, deletes, prefix deletes and CAS txns run
 * against the SQLite store and against a plain in-memory model of etcd's semantics; after every
 * step the current state, every past revision's state (range at revision) and a watch replay
 * from the first revision must agree with the model.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import fc from "fast-check";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import type { KeyValue, WatchBatch } from "../../src/store/types.js";
import { collect } from "../helpers/wait.js";

type Op =
  | { t: "put"; k: string; v: string }
  | { t: "del"; k: string }
  | { t: "delPrefix"; p: string }
  | { t: "cas"; k: string; expectVersion: number; v: string };

const key = fc.constantFrom("a", "ab", "abc", "b", "b/1", "b/2", "c");
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ t: fc.constant("put" as const), k: key, v: fc.string({ maxLength: 5 }) }),
  fc.record({ t: fc.constant("del" as const), k: key }),
  fc.record({ t: fc.constant("delPrefix" as const), p: fc.constantFrom("a", "b/", "c") }),
  fc.record({ t: fc.constant("cas" as const), k: key, expectVersion: fc.integer({ min: 0, max: 3 }), v: fc.string({ maxLength: 5 }) }),
);

/** etcd's semantics, written as plainly as possible. */
class Model {
  rev = 1;
  kvs = new Map<string, KeyValue>();
  snapshots = new Map<number, Map<string, KeyValue>>([[1, new Map()]]);
  apply(o: Op): void {
    const next = this.rev + 1;
    let wrote = false;
    const put = (k: string, v: string) => {
      const prev = this.kvs.get(k);
      this.kvs.set(k, { key: k, value: v, createRevision: prev?.createRevision ?? next, modRevision: next, version: (prev?.version ?? 0) + 1 });
      wrote = true;
    };
    const del = (match: (k: string) => boolean) => {
      for (const k of [...this.kvs.keys()]) {
        if (match(k)) {
          this.kvs.delete(k);
          wrote = true;
        }
      }
    };
    if (o.t === "put") put(o.k, o.v);
    else if (o.t === "del") del((k) => k === o.k);
    else if (o.t === "delPrefix") del((k) => k.startsWith(o.p));
    else if ((this.kvs.get(o.k)?.version ?? 0) === o.expectVersion) put(o.k, o.v);
    if (wrote) {
      this.rev = next;
      this.snapshots.set(next, new Map(this.kvs));
    }
  }
}

const sorted = (kvs: Iterable<KeyValue>) => [...kvs].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "constellation-model-"));
});
after(() => rm(dir, { recursive: true, force: true }));

let run = 0;
it("the SQLite store agrees with a model of etcd's semantics on random operation sequences", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), async (ops) => {
      const store = new SqliteStore({ path: join(dir, `m${run++}.db`), retainRevisions: 0 });
      const model = new Model();
      try {
        for (const o of ops) {
          if (o.t === "put") await store.put(o.k, o.v);
          else if (o.t === "del") await store.delete({ key: o.k });
          else if (o.t === "delPrefix") await store.delete({ prefix: o.p });
          else {
            await store.txn({
              compare: [{ key: o.k, target: "version", op: "=", value: o.expectVersion }],
              success: [{ type: "put", key: o.k, value: o.v }],
            });
          }
          model.apply(o);
          assert.equal(await store.revision(), model.rev);
          assert.deepEqual((await store.range({ prefix: "" })).kvs, sorted(model.kvs.values()));
        }
        for (const [rev, snap] of model.snapshots) {
          assert.deepEqual((await store.range({ prefix: "" }, { revision: rev })).kvs, sorted(snap.values()), `at revision ${rev}`);
        }
        // Replaying the watch from the start rebuilds the final state.
        if (model.rev > 1) {
          const watch = store.watch({ prefix: "" }, { fromRevision: 2 });
          const batches: WatchBatch[] = await collect(watch, (b) => (b.at(-1)?.revision ?? 0) >= model.rev, 5000);
          watch.close();
          const replay = new Map<string, KeyValue>();
          for (const b of batches) {
            for (const e of b.events) {
              if (e.type === "put") replay.set(e.kv.key, e.kv);
              else replay.delete(e.kv.key);
            }
          }
          assert.deepEqual(sorted(replay.values()), sorted(model.kvs.values()));
          assert.deepEqual(batches.map((b) => b.revision), [...model.snapshots.keys()].filter((r) => r > 1));
        }
      } finally {
        await store.close();
      }
    }),
    { numRuns: 60 },
  );
});
