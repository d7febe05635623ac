/**
 * The Store conformance suite: the same cases against every backend (SQLite, one-member etcd,
 * three-member etcd). Each case works under its own key prefix so cases do not see each other.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  CompactedError,
  DuplicateKeyError,
  EmptyKeyError,
  FutureRevisionError,
  InvalidArgumentError,
  InvalidRangeError,
  LeaseNotFoundError,
  TooManyOpsError,
  ValueTooLargeError,
} from "../../src/model/errors.js";
import type { Store, WatchBatch } from "../../src/store/types.js";
import { MAX_TXN_OPS, MAX_VALUE_BYTES } from "../../src/store/validate.js";
import { collect, eventCount, waitFor } from "../helpers/wait.js";

export interface StoreFixture {
  /** A new client of the same store (for SQLite: another connection to the same file). */
  open(): Promise<Store>;
  cleanup(): Promise<void>;
}

let prefixCounter = 0;
function newPrefix(): string {
  return `conf/${process.pid}-${Date.now().toString(36)}-${prefixCounter++}/`;
}

export function conformance(name: string, makeFixture: () => Promise<StoreFixture>): void {
  describe(`Store conformance: ${name}`, () => {
    let fx: StoreFixture;
    let store: Store;
    let p: string;
    const extra: Store[] = [];

    before(async () => {
      fx = await makeFixture();
      store = await fx.open();
    });
    after(async () => {
      for (const s of extra) await s.close();
      await store?.close();
      await fx?.cleanup();
    });
    const client = async () => {
      const s = await fx.open();
      extra.push(s);
      return s;
    };

    it("put raises the revision by one and tracks create/mod revision and version", async () => {
      p = newPrefix();
      const r0 = await store.revision();
      const a = await store.put(`${p}a`, "1");
      assert.equal(a.revision, r0 + 1);
      const b = await store.put(`${p}a`, "2", { prevKv: true });
      assert.equal(b.revision, r0 + 2);
      assert.equal(b.prevKv?.value, "1");
      const kv = await store.get(`${p}a`);
      assert.deepEqual(kv, { key: `${p}a`, value: "2", createRevision: r0 + 1, modRevision: r0 + 2, version: 2 });
      assert.equal(await store.get(`${p}missing`), undefined);
      assert.equal(await store.revision(), r0 + 2);
    });

    it("delete removes keys, reports previous values, and a delete of nothing writes nothing", async () => {
      p = newPrefix();
      await store.put(`${p}x/1`, "a");
      await store.put(`${p}x/2`, "b");
      const put = await store.put(`${p}y`, "c");
      const none = await store.delete({ key: `${p}nothing` });
      assert.deepEqual(none, { revision: put.revision, deleted: 0 });
      const del = await store.delete({ prefix: `${p}x/` }, { prevKv: true });
      assert.equal(del.deleted, 2);
      assert.equal(del.revision, put.revision + 1);
      assert.deepEqual(del.prevKvs?.map((kv) => kv.value).sort(), ["a", "b"]);
      assert.equal((await store.range({ prefix: p })).count, 1);
      // A re-created key starts over: new createRevision, version 1.
      const again = await store.put(`${p}x/1`, "again");
      const kv = await store.get(`${p}x/1`);
      assert.equal(kv?.createRevision, again.revision);
      assert.equal(kv?.version, 1);
    });

    it("range: prefix, [start, end), limit with more/count, keysOnly, countOnly, bytewise order", async () => {
      p = newPrefix();
      const keys = ["b", "a", "c/1", "c/2", "c0", "é", "z"];
      for (const k of keys) await store.put(`${p}${k}`, `v-${k}`);
      const all = await store.range({ prefix: p });
      // UTF-8 byte order: "é" (0xC3 0xA9) sorts after "z" (0x7A).
      assert.deepEqual(
        all.kvs.map((kv) => kv.key.slice(p.length)),
        ["a", "b", "c/1", "c/2", "c0", "z", "é"],
      );
      assert.equal(all.count, 7);
      assert.equal(all.more, false);
      const c = await store.range({ prefix: `${p}c/` });
      assert.deepEqual(c.kvs.map((kv) => kv.value), ["v-c/1", "v-c/2"]);
      const between = await store.range({ start: `${p}b`, end: `${p}c0` });
      assert.deepEqual(between.kvs.map((kv) => kv.key.slice(p.length)), ["b", "c/1", "c/2"]);
      const limited = await store.range({ prefix: p }, { limit: 2 });
      assert.equal(limited.kvs.length, 2);
      assert.equal(limited.more, true);
      assert.equal(limited.count, 7);
      const keysOnly = await store.range({ prefix: `${p}c/` }, { keysOnly: true });
      assert.deepEqual(keysOnly.kvs.map((kv) => [kv.key.slice(p.length), kv.value]), [["c/1", ""], ["c/2", ""]]);
      const countOnly = await store.range({ prefix: p }, { countOnly: true });
      assert.equal(countOnly.count, 7);
      assert.equal(countOnly.kvs.length, 0);
      const single = await store.range({ key: `${p}a` });
      assert.equal(single.count, 1);
      assert.equal(single.revision, await store.revision());
    });

    it("range with minModRevision: only what changed since, count of all; in a txn and at a past revision too", async () => {
      p = newPrefix();
      for (const k of ["a", "b", "c"]) await store.put(`${p}${k}`, `v-${k}`);
      const seen = await store.revision();
      await store.put(`${p}b`, "B");
      await store.put(`${p}d`, "v-d");
      await store.put(`${newPrefix()}x`, "elsewhere");
      await store.delete({ key: `${p}a` });
      const since = await store.range({ prefix: p }, { minModRevision: seen + 1 });
      assert.deepEqual(since.kvs.map((kv) => [kv.key.slice(p.length), kv.value]), [["b", "B"], ["d", "v-d"]]);
      assert.equal(since.count, 3); // b, c, d: every key in the range
      assert.equal(since.more, false);
      const keys = await store.range({ prefix: p }, { minModRevision: seen + 1, keysOnly: true });
      assert.deepEqual(keys.kvs.map((kv) => [kv.key.slice(p.length), kv.value]), [["b", ""], ["d", ""]]);
      assert.equal((await store.range({ key: `${p}c` }, { minModRevision: seen + 1 })).kvs.length, 0);
      assert.equal((await store.range({ prefix: p }, { minModRevision: (await store.revision()) + 1 })).kvs.length, 0);
      const inTxn = await store.txn({ success: [{ type: "range", range: { prefix: p }, options: { minModRevision: seen + 1, keysOnly: true } }] });
      const r = inTxn.results[0];
      assert.ok(r?.type === "range");
      assert.deepEqual(r.kvs.map((kv) => kv.key.slice(p.length)), ["b", "d"]);
      const past = await store.range({ prefix: p }, { revision: seen + 2, minModRevision: seen + 1 });
      assert.deepEqual(past.kvs.map((kv) => [kv.key.slice(p.length), kv.value]), [["b", "B"], ["d", "v-d"]]);
      await assert.rejects(store.range({ prefix: p }, { minModRevision: 1, limit: 1 }), /cannot be combined with limit/);
      await assert.rejects(store.range({ prefix: p }, { minModRevision: -1 }), /minModRevision must be a non-negative integer/);
    });

    it("range and get at a past revision see the store as it was", async () => {
      p = newPrefix();
      const r1 = (await store.put(`${p}k1`, "one")).revision;
      const r2 = (await store.put(`${p}k2`, "two")).revision;
      await store.put(`${p}k1`, "ONE");
      await store.delete({ key: `${p}k2` });
      await store.put(`${p}k3`, "three");
      const at1 = await store.range({ prefix: p }, { revision: r1 });
      assert.deepEqual(at1.kvs.map((kv) => [kv.key.slice(p.length), kv.value]), [["k1", "one"]]);
      const at2 = await store.range({ prefix: p }, { revision: r2 });
      assert.deepEqual(at2.kvs.map((kv) => [kv.key.slice(p.length), kv.value]), [["k1", "one"], ["k2", "two"]]);
      assert.equal(at2.kvs[1]?.modRevision, r2);
      assert.equal((await store.get(`${p}k2`, { revision: r2 }))?.value, "two");
      assert.equal(await store.get(`${p}k2`), undefined);
      const limited = await store.range({ prefix: p }, { revision: r2, limit: 1 });
      assert.equal(limited.kvs.length, 1);
      assert.equal(limited.more, true);
      const future = (await store.revision()) + 1000;
      await assert.rejects(store.range({ prefix: p }, { revision: future }), FutureRevisionError);
    });

    it("txn: compares on value, version, createRevision, modRevision and lease choose the branch", async () => {
      p = newPrefix();
      const lease = await store.grantLease(30);
      const put = await store.put(`${p}k`, "v", { lease: lease.id });
      const cases: Array<[Parameters<Store["txn"]>[0]["compare"], boolean]> = [
        [[{ key: `${p}k`, target: "value", op: "=", value: "v" }], true],
        [[{ key: `${p}k`, target: "value", op: "!=", value: "v" }], false],
        [[{ key: `${p}k`, target: "value", op: ">", value: "a" }], true],
        [[{ key: `${p}missing`, target: "value", op: "!=", value: "v" }], false],
        [[{ key: `${p}k`, target: "version", op: "=", value: 1 }], true],
        [[{ key: `${p}missing`, target: "version", op: "=", value: 0 }], true],
        [[{ key: `${p}k`, target: "createRevision", op: "=", value: put.revision }], true],
        [[{ key: `${p}k`, target: "modRevision", op: "<", value: put.revision }], false],
        [[{ key: `${p}k`, target: "modRevision", op: ">", value: put.revision - 1 }], true],
        [[{ key: `${p}k`, target: "lease", op: "=", value: lease.id }], true],
        [[{ key: `${p}missing`, target: "lease", op: "=", value: "0" }], true],
        [[{ key: `${p}k`, target: "version", op: "=", value: 1 }, { key: `${p}k`, target: "value", op: "=", value: "no" }], false],
      ];
      for (const [compare, expected] of cases) {
        const res = await store.txn({ compare, success: [{ type: "range", range: { key: `${p}k` } }] });
        assert.equal(res.succeeded, expected, JSON.stringify(compare));
      }
      await store.revokeLease(lease.id);
    });

    it("txn: both branches run their ops atomically at one revision", async () => {
      p = newPrefix();
      const r0 = await store.revision();
      const ok = await store.txn({
        compare: [{ key: `${p}flag`, target: "createRevision", op: "=", value: 0 }],
        success: [
          { type: "put", key: `${p}flag`, value: "set" },
          { type: "put", key: `${p}other`, value: "x" },
          { type: "range", range: { prefix: p } },
        ],
        failure: [{ type: "put", key: `${p}lost`, value: "y" }],
      });
      assert.equal(ok.succeeded, true);
      assert.equal(ok.revision, r0 + 1);
      const seen = ok.results[2];
      assert.equal(seen?.type, "range");
      // A range inside the txn sees the txn's own earlier writes.
      assert.equal(seen?.type === "range" ? seen.count : -1, 2);
      assert.equal((await store.get(`${p}flag`))?.modRevision, r0 + 1);
      assert.equal((await store.get(`${p}other`))?.modRevision, r0 + 1);
      const perOp = await store.txn({
        success: [
          { type: "range", range: { key: `${p}flag` } },
          { type: "put", key: `${p}flag`, value: "again" },
          { type: "range", range: { key: `${p}flag` } },
        ],
      });
      // Each op reports the revision as of just after it; the whole txn, the final one.
      assert.deepEqual(perOp.results.map((r) => r.revision), [r0 + 1, r0 + 2, r0 + 2]);
      assert.equal(perOp.revision, r0 + 2);
      const again = await store.txn({
        compare: [{ key: `${p}flag`, target: "createRevision", op: "=", value: 0 }],
        success: [{ type: "put", key: `${p}never`, value: "z" }],
        failure: [{ type: "delete", range: { key: `${p}other` }, prevKv: true }],
      });
      assert.equal(again.succeeded, false);
      assert.equal(again.revision, r0 + 3);
      const del = again.results[0];
      assert.equal(del?.type === "delete" ? del.deleted : -1, 1);
      assert.equal(await store.get(`${p}never`), undefined);
      // A txn whose branch fails (unknown lease) writes nothing at all.
      const before = await store.revision();
      await assert.rejects(
        store.txn({ success: [{ type: "put", key: `${p}a`, value: "1" }, { type: "put", key: `${p}b`, value: "2", lease: "12345" }] }),
        LeaseNotFoundError,
      );
      assert.equal(await store.get(`${p}a`), undefined);
      assert.equal(await store.revision(), before);
    });

    it("concurrent compare-and-set: of N writers exactly one wins; CAS increments lose nothing", async () => {
      p = newPrefix();
      const clients = [store, ...(await Promise.all(Array.from({ length: 4 }, () => client())))];
      const N = 20;
      const claims = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          clients[i % clients.length]!.txn({
            compare: [{ key: `${p}owner`, target: "createRevision", op: "=", value: 0 }],
            success: [{ type: "put", key: `${p}owner`, value: `writer-${i}` }],
          }),
        ),
      );
      const winners = claims.map((c, i) => (c.succeeded ? i : -1)).filter((i) => i >= 0);
      assert.equal(winners.length, 1);
      assert.equal((await store.get(`${p}owner`))?.value, `writer-${winners[0]}`);

      await store.put(`${p}counter`, "0");
      const perWriter = 10;
      const increment = async (s: Store) => {
        for (let done = 0; done < perWriter; ) {
          const kv = (await s.get(`${p}counter`))!;
          const res = await s.txn({
            compare: [{ key: `${p}counter`, target: "modRevision", op: "=", value: kv.modRevision }],
            success: [{ type: "put", key: `${p}counter`, value: String(Number(kv.value) + 1) }],
          });
          if (res.succeeded) done++;
        }
      };
      await Promise.all(clients.map((s) => increment(s)));
      assert.equal((await store.get(`${p}counter`))?.value, String(clients.length * perWriter));
    });

    it("watch delivers every change of concurrent writers in revision order, no gaps, no duplicates", async () => {
      p = newPrefix();
      const watch = store.watch({ prefix: p });
      await watch.ready;
      const clients = [store, ...(await Promise.all(Array.from({ length: 3 }, () => client())))];
      const perWriter = 40;
      const written = (
        await Promise.all(
          clients.map(async (s, w) => {
            const revs: Array<[string, number]> = [];
            for (let i = 0; i < perWriter; i++) {
              const key = `${p}w${w}/${i % 7}`;
              revs.push([key, (await s.put(key, `${w}-${i}`)).revision]);
            }
            await s.delete({ prefix: `${p}w${w}/` });
            return revs;
          }),
        )
      ).flat();
      const total = written.length + clients.length * 7;
      const batches = await collect(watch, (b) => eventCount(b) >= total);
      watch.close();
      assert.equal(eventCount(batches), total);
      for (let i = 1; i < batches.length; i++) assert.ok(batches[i]!.revision > batches[i - 1]!.revision, "revisions increase");
      for (const b of batches) for (const ev of b.events) assert.equal(ev.kv.modRevision, b.revision);
      const seenPuts = new Map(batches.flatMap((b) => b.events.filter((e) => e.type === "put").map((e) => [`${e.kv.key}@${b.revision}`, e.kv.value])));
      for (const [key, rev] of written) assert.ok(seenPuts.has(`${key}@${rev}`), `put ${key}@${rev} delivered`);
      const deletes = batches.flatMap((b) => b.events.filter((e) => e.type === "delete"));
      assert.equal(deletes.length, clients.length * 7);
      for (const d of deletes) assert.deepEqual([d.kv.value, d.kv.version, d.kv.createRevision], ["", 0, 0]);
    });

    it("watch resumes from a revision: history first, then live changes, no gaps or duplicates", async () => {
      p = newPrefix();
      const revs: number[] = [];
      for (let i = 0; i < 10; i++) revs.push((await store.put(`${p}k${i % 3}`, String(i))).revision);
      const first = store.watch({ prefix: p }, { fromRevision: revs[0]! });
      const part = await collect(first, (b) => b.length >= 4);
      first.close();
      assert.deepEqual(part.map((b) => b.revision), revs.slice(0, 4));
      const resumed = store.watch({ prefix: p }, { fromRevision: part[part.length - 1]!.revision + 1, prevKv: true });
      await resumed.ready;
      for (let i = 10; i < 15; i++) revs.push((await store.put(`${p}k${i % 3}`, String(i))).revision);
      const rest = await collect(resumed, (b) => b.length >= revs.length - 4);
      resumed.close();
      assert.deepEqual(rest.map((b) => b.revision), revs.slice(4));
      const last = rest[rest.length - 1]!.events[0]!;
      assert.equal(last.kv.value, "14");
      assert.equal(last.prevKv?.value, "11");
      // A watch on one key sees only that key.
      const one = store.watch({ key: `${p}k1` }, { fromRevision: revs[0]! });
      const ones = await collect(one, (b) => b.length >= 5);
      one.close();
      assert.deepEqual(ones.map((b) => b.events[0]!.kv.value), ["1", "4", "7", "10", "13"]);
    });

    it("a watch far behind (thousands of unrelated changes) catches up without further writes", async () => {
      p = newPrefix();
      const from = (await store.revision()) + 1;
      for (let t = 0; t < 25; t++) {
        await store.txn({ success: Array.from({ length: 100 }, (_, i) => ({ type: "put" as const, key: `${p}noise/${t}/${i}`, value: "x" })) });
      }
      const target = await store.put(`${p}watched`, "here");
      const watch = store.watch({ key: `${p}watched` }, { fromRevision: from });
      const got = await collect(watch, (b) => b.length >= 1);
      watch.close();
      assert.equal(got[0]!.revision, target.revision);
      assert.equal(got[0]!.events[0]!.kv.value, "here");
    });

    it("lease expiry deletes every attached key and emits delete events; keepAlive holds it", async () => {
      p = newPrefix();
      const short = await store.grantLease(2);
      const held = await store.grantLease(2);
      const heldGrantedAt = Date.now();
      await store.put(`${p}a`, "1", { lease: short.id });
      await store.put(`${p}b`, "2", { lease: short.id });
      await store.put(`${p}held`, "3", { lease: held.id });
      const info = await store.leaseInfo(short.id);
      assert.deepEqual(info?.keys.sort(), [`${p}a`, `${p}b`]);
      assert.equal(info?.grantedTtl, short.ttl);
      assert.equal((await store.get(`${p}a`))?.lease, short.id);
      const watch = store.watch({ prefix: p });
      await watch.ready;
      const keeper = setInterval(() => void store.keepAliveOnce(held.id).catch(() => undefined), 500);
      const started = Date.now();
      try {
        const batches = await collect(
          watch,
          (b) => b.flatMap((x) => x.events).filter((e) => e.type === "delete").length >= 2,
          (short.ttl + 5) * 1000,
        );
        const elapsed = Date.now() - started;
        const deleted = batches.flatMap((b) => b.events.filter((e) => e.type === "delete").map((e) => e.kv.key)).sort();
        assert.deepEqual(deleted, [`${p}a`, `${p}b`]);
        assert.ok(elapsed >= (short.ttl - 1) * 1000, `expired after ${elapsed} ms, not before its TTL`);
        assert.equal(await store.get(`${p}a`), undefined);
        assert.equal(await store.leaseInfo(short.id), undefined);
        await assert.rejects(store.keepAliveOnce(short.id), LeaseNotFoundError);
        const before = await store.revision();
        await assert.rejects(store.put(`${p}c`, "x", { lease: short.id }), LeaseNotFoundError);
        assert.equal(await store.get(`${p}c`), undefined);
        assert.equal(await store.revision(), before);
        // The kept-alive lease outlived its TTL.
        await waitFor("the kept-alive lease to outlive its TTL", () => Date.now() - heldGrantedAt > held.ttl * 1000 + 200 || undefined);
        assert.ok(await store.leaseInfo(held.id), "the kept-alive lease still exists");
        assert.equal((await store.get(`${p}held`))?.value, "3");
      } finally {
        clearInterval(keeper);
        watch.close();
      }
      const revoke = store.watch({ prefix: p });
      await revoke.ready;
      await store.revokeLease(held.id);
      const gone = await collect(revoke, (b) => b.length >= 1);
      revoke.close();
      assert.deepEqual(gone[0]!.events.map((e) => [e.type, e.kv.key]), [["delete", `${p}held`]]);
      await assert.rejects(store.revokeLease(held.id), LeaseNotFoundError);
    });

    it("compaction: reads and watches below the compact revision fail with CompactedError", async () => {
      p = newPrefix();
      const r1 = (await store.put(`${p}k`, "1")).revision;
      await store.put(`${p}k`, "2");
      const r3 = (await store.put(`${p}k`, "3")).revision;
      await store.put(`${p}other`, "x");
      await store.compact(r3);
      await assert.rejects(store.range({ prefix: p }, { revision: r1 }), (err: unknown) => {
        assert.ok(err instanceof CompactedError);
        assert.equal(err.code, "STORE_COMPACTED");
        return true;
      });
      assert.equal((await store.get(`${p}k`, { revision: r3 }))?.value, "3");
      const watch = store.watch({ prefix: p }, { fromRevision: r1 });
      await assert.rejects(collect(watch, () => false, 5000), CompactedError);
      watch.close();
      // From the compact revision on, history is still there.
      const ok = store.watch({ prefix: p }, { fromRevision: r3 });
      const batches: WatchBatch[] = await collect(ok, (b) => b.length >= 2);
      ok.close();
      assert.deepEqual(batches.map((b) => b.events[0]!.kv.value), ["3", "x"]);
      await assert.rejects(store.compact(r1), CompactedError);
    });

    it("bad input gets a typed error and writes nothing", async () => {
      p = newPrefix();
      const before = await store.revision();
      await assert.rejects(store.put("", "v"), EmptyKeyError);
      await assert.rejects(store.get(""), EmptyKeyError);
      await assert.rejects(store.put(`${p}big`, "x".repeat(MAX_VALUE_BYTES + 1)), ValueTooLargeError);
      await assert.rejects(store.put(`${p}big`, "é".repeat(MAX_VALUE_BYTES / 2 + 1)), ValueTooLargeError);
      await assert.rejects(store.put(`${p}k`, "v", { lease: "987654321" }), LeaseNotFoundError);
      await assert.rejects(store.put(`${p}k`, "v", { lease: "not-a-lease" }), InvalidArgumentError);
      await assert.rejects(store.keepAliveOnce("987654321"), LeaseNotFoundError);
      await assert.rejects(store.revokeLease("987654321"), LeaseNotFoundError);
      await assert.rejects(store.grantLease(0), (e: unknown) => (e as { code?: string }).code === "STORE_INVALID_TTL");
      await assert.rejects(store.range({ start: `${p}b`, end: `${p}a` }), InvalidRangeError);
      await assert.rejects(store.delete({ start: `${p}b`, end: `${p}b` }), InvalidRangeError);
      await assert.rejects(store.range({ prefix: p }, { limit: -1 }), InvalidArgumentError);
      await assert.rejects(
        store.txn({ success: [{ type: "put", key: `${p}d`, value: "1" }, { type: "put", key: `${p}d`, value: "2" }] }),
        DuplicateKeyError,
      );
      await assert.rejects(
        store.txn({ success: [{ type: "delete", range: { prefix: p } }, { type: "put", key: `${p}d`, value: "2" }] }),
        DuplicateKeyError,
      );
      await assert.rejects(
        store.txn({ success: Array.from({ length: MAX_TXN_OPS + 1 }, (_, i) => ({ type: "put" as const, key: `${p}m${i}`, value: "v" })) }),
        TooManyOpsError,
      );
      await assert.rejects(store.put(`${p}k`, 42 as unknown as string), InvalidArgumentError);
      await assert.rejects(store.get(`${p}k`, { revision: 1.5 }), InvalidArgumentError);
      await assert.rejects(store.compact(0), InvalidArgumentError);
      await assert.rejects(store.put(`${p}k`, "v", { lease: String(2n ** 60n) }), LeaseNotFoundError);
      assert.throws(() => store.watch({ start: `${p}z`, end: `${p}a` }), InvalidRangeError);
      assert.equal(await store.revision(), before, "nothing was written");
      assert.equal((await store.range({ prefix: p })).count, 0);
      // The limit itself is accepted.
      const ok = await store.put(`${p}max`, "x".repeat(MAX_VALUE_BYTES));
      assert.equal(ok.revision, before + 1);
      assert.equal((await store.get(`${p}max`))?.value.length, MAX_VALUE_BYTES);
    });

    it("watch from now sees only later changes and ends when closed", async () => {
      p = newPrefix();
      await store.put(`${p}old`, "1");
      const watch = store.watch({ prefix: p });
      await watch.ready;
      const put = await store.put(`${p}new`, "2");
      const got = await collect(watch, (b) => b.length >= 1);
      assert.equal(got[0]!.revision, put.revision);
      assert.equal(got[0]!.events[0]!.kv.key, `${p}new`);
      const done = (async () => {
        let n = 0;
        for await (const _ of watch) n++;
        return n;
      })();
      watch.close();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("the watch loop did not end within 5 s of close()")), 5000);
      });
      try {
        assert.equal(await Promise.race([done, deadline]), 0);
      } finally {
        clearTimeout(timer);
      }
    });
  });
}
