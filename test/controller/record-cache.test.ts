/**
 * The controller's RecordCache: after any sequence of puts, deletes and re-creations (by this
 * client or another on the same store), a read returns exactly what a full range returns, in
 * key order; and a read after a small change fetches only what changed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { RecordCache } from "../../src/controller/record-cache.js";
import { openStore } from "../../src/store/open.js";
import type { RangeOptions, Store } from "../../src/store/types.js";

const op = fc.oneof(
  fc.record({ type: fc.constant("put" as const), key: fc.integer({ min: 0, max: 30 }), value: fc.integer() }),
  fc.record({ type: fc.constant("delete" as const), key: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ type: fc.constant("read" as const) }),
);

describe("RecordCache", () => {
  it("always reads what a full range reads, in key order (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 80 }), async (ops) => {
        const store = await openStore({ backend: "sqlite", path: ":memory:" });
        try {
          await store.put("other/x", "1"); // outside the prefix: never seen
          const cache = new RecordCache<{ v: number }>(store, "p/");
          const check = async () => {
            const { kvs } = await store.range({ prefix: "p/" });
            assert.deepEqual(
              (await cache.all()).map((c) => [c.key, c.modRevision, c.value]),
              kvs.map((kv) => [kv.key, kv.modRevision, JSON.parse(kv.value)]),
            );
          };
          for (const o of ops) {
            const key = `p/${String(o.type === "read" ? 0 : o.key).padStart(2, "0")}`;
            if (o.type === "put") await store.put(key, JSON.stringify({ v: o.value }));
            else if (o.type === "delete") await store.delete({ key });
            else await check();
          }
          await check();
        } finally {
          await store.close();
        }
      }),
      { numRuns: 60 },
    );
  });

  it("a read after one change fetches that value alone, and lists every key only after a deletion", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    try {
      for (let i = 0; i < 100; i++) await store.put(`p/${String(i).padStart(3, "0")}`, JSON.stringify({ v: i }));
      const cache = new RecordCache<{ v: number }>(store, "p/");
      assert.equal((await cache.all()).length, 100);
      const calls: Array<{ kind: string; keys: number }> = [];
      const counting: Store = Object.create(store) as Store;
      counting.range = async (range, options?: RangeOptions) => {
        const res = await store.range(range, options);
        calls.push({ kind: options?.minModRevision ? "since" : "range", keys: res.kvs.length });
        return res;
      };
      counting.get = async (key, options) => {
        calls.push({ kind: "get", keys: 1 });
        return store.get(key, options);
      };
      const watched = new RecordCache<{ v: number }>(counting, "p/");
      await watched.all();
      calls.length = 0;
      await store.put("p/050", JSON.stringify({ v: -1 }));
      const after = await watched.all();
      assert.equal(after.find((c) => c.key === "p/050")?.value.v, -1);
      assert.deepEqual(calls, [{ kind: "since", keys: 1 }, { kind: "get", keys: 1 }]);
      calls.length = 0;
      assert.equal((await watched.all()).length, 100);
      assert.deepEqual(calls, [{ kind: "since", keys: 0 }]);
      calls.length = 0;
      await store.delete({ key: "p/007" });
      assert.equal((await watched.all()).some((c) => c.key === "p/007"), false);
      assert.deepEqual(calls, [{ kind: "since", keys: 0 }, { kind: "range", keys: 99 }]);
    } finally {
      await store.close();
    }
  });
  it("reads that overlap never undo a newer one: a key deleted and made again while a slow read lists keys stays", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    try {
      for (const k of ["a", "b", "c"]) await store.put(`p/${k}`, JSON.stringify({ v: 1 }));
      const slow: Store = Object.create(store) as Store;
      slow.range = async (range, options?: RangeOptions) => {
        const res = await store.range(range, options); // the store as it is now...
        if (options?.keysOnly && !options.minModRevision) await new Promise((r) => setTimeout(r, 50)); // ...told late
        return res;
      };
      const cache = new RecordCache<{ v: number }>(slow, "p/");
      await cache.all();
      await store.delete({ key: "p/b" });
      const first = cache.all(); // sees the deletion: lists every key, slowly (without b)
      await new Promise((r) => setImmediate(r));
      await store.put("p/b", JSON.stringify({ v: 2 })); // b made again meanwhile
      const second = cache.all();
      await Promise.all([first, second]);
      const { kvs } = await store.range({ prefix: "p/" });
      assert.deepEqual((await cache.all()).map((c) => [c.key, c.value.v]), kvs.map((kv) => [kv.key, (JSON.parse(kv.value) as { v: number }).v]));
    } finally {
      await store.close();
    }
  });
});
