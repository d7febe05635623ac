/**
 * Smoke test of the etcd backend against a real etcd: a one-member and a three-member cluster,
 * put/get/txn/watch/lease round trips, and a watch that survives the loss of its member.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { CompactedError, FutureRevisionError, LeaseNotFoundError, StoreClosedError } from "../../src/model/errors.js";
import { openEtcdStore } from "../../src/store/etcd/etcd-store.js";
import type { EtcdStore } from "../../src/store/etcd/etcd-store.js";
import { startEtcd } from "../helpers/etcd-harness.js";
import { collect, waitFor } from "../helpers/wait.js";
import type { EtcdCluster } from "../helpers/etcd-harness.js";

async function roundTrips(store: EtcdStore, p: string): Promise<void> {
  const r0 = await store.revision();
  const a = await store.put(`${p}a`, "1");
  assert.equal(a.revision, r0 + 1);
  const a2 = await store.put(`${p}a`, "2", { prevKv: true });
  assert.equal(a2.prevKv?.value, "1");
  assert.deepEqual(await store.get(`${p}a`), { key: `${p}a`, value: "2", createRevision: r0 + 1, modRevision: r0 + 2, version: 2 });
  assert.equal((await store.get(`${p}a`, { revision: a.revision }))?.value, "1");
  assert.equal(await store.get(`${p}missing`), undefined);
  await assert.rejects(store.range({ prefix: p }, { revision: r0 + 1000 }), FutureRevisionError);

  // range: prefix, limit/more/count, keysOnly, countOnly
  await store.put(`${p}b`, "B");
  await store.put(`${p}é`, "E");
  const all = await store.range({ prefix: p });
  assert.deepEqual(all.kvs.map((kv) => kv.key), [`${p}a`, `${p}b`, `${p}é`]);
  const limited = await store.range({ prefix: p }, { limit: 1, keysOnly: true });
  assert.deepEqual([limited.kvs.length, limited.more, limited.count, limited.kvs[0]?.value], [1, true, 3, ""]);
  assert.equal((await store.range({ prefix: p }, { countOnly: true })).count, 3);

  // txn: compare and both branches
  const txn = await store.txn({
    compare: [{ key: `${p}a`, target: "value", op: "=", value: "2" }],
    success: [
      { type: "put", key: `${p}c`, value: "C" },
      { type: "delete", range: { key: `${p}b` }, prevKv: true },
      { type: "range", range: { prefix: p } },
    ],
    failure: [{ type: "put", key: `${p}lost`, value: "x" }],
  });
  assert.equal(txn.succeeded, true);
  const [put, del, range] = txn.results;
  assert.deepEqual(put, { type: "put", revision: txn.revision });
  assert.equal(del?.type === "delete" ? del.prevKvs?.[0]?.value : undefined, "B");
  assert.equal(range?.type === "range" ? range.count : -1, 3);
  const txn2 = await store.txn({
    compare: [{ key: `${p}a`, target: "modRevision", op: "<", value: a.revision }],
    success: [{ type: "put", key: `${p}lost`, value: "x" }],
    failure: [{ type: "range", range: { key: `${p}c` } }],
  });
  assert.equal(txn2.succeeded, false);
  assert.equal(txn2.revision, txn.revision, "a txn that writes nothing does not raise the revision");

  // leases: grant, attach, info, keepalive, revoke (deletes the key), not found afterwards
  const lease = await store.grantLease(1);
  assert.ok(lease.ttl >= 1, `granted TTL ${lease.ttl}`);
  await store.put(`${p}leased`, "L", { lease: lease.id });
  assert.equal((await store.get(`${p}leased`))?.lease, lease.id);
  const info = await store.leaseInfo(lease.id);
  assert.deepEqual([info?.id, info?.grantedTtl, info?.keys], [lease.id, lease.ttl, [`${p}leased`]]);
  assert.equal(await store.keepAliveOnce(lease.id), lease.ttl);
  await store.revokeLease(lease.id);
  assert.equal(await store.get(`${p}leased`), undefined);
  assert.equal(await store.leaseInfo(lease.id), undefined);
  await assert.rejects(store.keepAliveOnce(lease.id), LeaseNotFoundError);
  await assert.rejects(store.put(`${p}x`, "x", { lease: lease.id }), LeaseNotFoundError);

  // watch: history from a revision, then live changes, delete events, one batch per revision
  const watch = store.watch({ prefix: p }, { fromRevision: a.revision, prevKv: true });
  await watch.ready;
  const d = await store.delete({ prefix: `${p}a` });
  const history = await collect(watch, (b) => b.some((x) => x.revision === d.revision), 15_000);
  watch.close();
  for (let i = 1; i < history.length; i++) assert.ok(history[i]!.revision > history[i - 1]!.revision);
  assert.equal(history[0]!.revision, a.revision);
  const txnBatch = history.find((b) => b.revision === txn.revision);
  assert.deepEqual(txnBatch?.events.map((e) => [e.type, e.kv.key]), [["put", `${p}c`], ["delete", `${p}b`]]);
  const delEvent = history[history.length - 1]!.events[0]!;
  assert.deepEqual(
    [delEvent.type, delEvent.kv.value, delEvent.kv.version, delEvent.kv.createRevision, delEvent.kv.modRevision, delEvent.prevKv?.value],
    ["delete", "", 0, 0, d.revision, "2"],
  );
}

test("etcd, one member: put/get/range/txn/lease/watch round trips, compaction, close", async () => {
  const etcd = await startEtcd({ members: 1 });
  let store: EtcdStore | undefined;
  try {
    store = await openEtcdStore({ endpoints: etcd.endpoints });
    assert.equal(store.backend, "etcd");
    await roundTrips(store, "smoke1/");

    // compaction: reads and watches below it fail with CompactedError carrying the compact revision
    const r1 = (await store.put("smoke1/k", "1")).revision;
    const r2 = (await store.put("smoke1/k", "2")).revision;
    await store.compact(r2);
    await assert.rejects(store.get("smoke1/k", { revision: r1 }), (err: unknown) => {
      assert.ok(err instanceof CompactedError);
      assert.deepEqual([err.revision, err.compactRevision], [r1, r2]);
      return true;
    });
    const old = store.watch({ prefix: "smoke1/" }, { fromRevision: r1 });
    await assert.rejects(collect(old, () => false, 5_000), (err: unknown) => {
      assert.ok(err instanceof CompactedError);
      assert.deepEqual([err.revision, err.compactRevision], [r1, r2]);
      return true;
    });
    old.close();

    // a watch ends normally when closed, also while its consumer waits
    const w = store.watch({ prefix: "smoke1/" });
    await w.ready;
    const loop = (async () => {
      let n = 0;
      for await (const _ of w) n++;
      return n;
    })();
    setTimeout(() => w.close(), 50);
    assert.equal(await loop, 0);

    await store.close();
    await assert.rejects(store.get("smoke1/k"), StoreClosedError);
  } finally {
    await store?.close();
    await etcd.stop();
  }
});

test("etcd, three members: round trips, and a watch resumes without gaps when its member dies", async () => {
  const etcd: EtcdCluster = await startEtcd({ members: 3 });
  const stores: EtcdStore[] = [];
  try {
    const store = await openEtcdStore({ endpoints: etcd.endpoints });
    stores.push(store);
    await roundTrips(store, "smoke3/");

    const p = "smoke3/resume/";
    const watch = store.watch({ prefix: p });
    await watch.ready;
    const victim = etcd.endpoints.indexOf(watch.endpoint ?? "");
    assert.ok(victim >= 0, `the watch is connected to one of the members (${String(watch.endpoint)})`);
    // Writes go through the surviving members only, so they do not depend on the store's failover.
    const writer = await openEtcdStore({ endpoints: etcd.endpoints.filter((_, i) => i !== victim) });
    stores.push(writer);

    const written: number[] = [];
    for (let i = 0; i < 10; i++) written.push((await writer.put(`${p}k${i % 3}`, `before-${i}`)).revision);
    const seenBefore = await collect(watch, (b) => b.length >= 3, 15_000);
    // A burst the watch has most likely not delivered yet when its member dies.
    const burst = Array.from({ length: 20 }, (_, i) => writer.put(`${p}burst${i}`, `b-${i}`));
    written.push(...(await Promise.all(burst)).map((r) => r.revision));
    await etcd.killMember(victim);
    // If the victim led the cluster, writes fail (outcome unknown) until the others elect a new
    // leader, as with any etcd client: wait for one.
    await waitFor("a new leader", async () => (await etcd.leaderIndex()) !== undefined, { timeoutMs: 15_000, intervalMs: 50 });
    for (let i = 0; i < 10; i++) written.push((await writer.put(`${p}k${i % 3}`, `after-${i}`)).revision);
    const txn = await writer.txn({
      success: [
        { type: "put", key: `${p}t1`, value: "1" },
        { type: "put", key: `${p}t2`, value: "2" },
      ],
    });
    written.push(txn.revision);

    const rest = await collect(watch, (b) => seenBefore.length + b.length >= written.length, 30_000);
    const batches = [...seenBefore, ...rest];
    assert.deepEqual(
      batches.map((b) => b.revision),
      [...new Set(written)].sort((x, y) => x - y),
      "every revision exactly once, in order",
    );
    assert.deepEqual(batches[batches.length - 1]!.events.map((e) => e.kv.key), [`${p}t1`, `${p}t2`]);
    assert.notEqual(watch.endpoint, etcd.endpoints[victim], "the watch moved to another member");
    assert.ok(watch.connects >= 2);

    // The store itself fails over too: reads and writes go to the survivors.
    const after = await store.put(`${p}via-store`, "ok");
    assert.equal((await store.get(`${p}via-store`))?.modRevision, after.revision);
    const last = await collect(watch, (b) => b.length >= 1, 15_000);
    assert.equal(last[0]!.revision, after.revision);
    watch.close();
  } finally {
    for (const s of stores) await s.close();
    await etcd.stop();
  }
});
