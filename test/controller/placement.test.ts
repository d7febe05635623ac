/**
 * The controller places stars with the scheduler (src/scheduler): a star no open node can take
 * stays pending and says why (its record, an event), and is placed by itself as soon as a node
 * can take it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Controller } from "../../src/controller/controller.js";
import { EventLog } from "../../src/controller/events.js";
import { KEYS, type NodeRecord, type StarRecord, nodeKey, starKey } from "../../src/model/records.js";
import { DEFAULT_NODE_LIMITS } from "../../src/model/spec.js";
import { openStore } from "../../src/store/open.js";
import type { Store } from "../../src/store/types.js";
import { waitFor } from "../helpers/wait.js";

const GiB = 2 ** 30;
const node = (name: string, memoryGiB: number): NodeRecord => ({ name, cpuCores: 2, memoryBytes: memoryGiB * GiB, runtimes: ["process"], limitsEnforced: false, startedAt: 0, limits: DEFAULT_NODE_LIMITS });
const recordOf = async (store: Store, name: string) => JSON.parse((await store.get(starKey(name)))!.value) as StarRecord;

/** A controller on an in-memory store with these nodes alive, running `f`; everything closed after. */
async function withController(nodes: NodeRecord[], f: (store: Store, controller: Controller) => Promise<void>): Promise<void> {
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  const controller = new Controller({ store, nodeTtlSeconds: 60 });
  try {
    for (const n of nodes) {
      await store.put(nodeKey(n.name), JSON.stringify(n));
      await store.put(`${KEYS.alive}${n.name}`, "{}");
    }
    controller.start();
    await f(store, controller);
  } finally {
    await controller.stop();
    await store.close();
  }
}

describe("placement by the scheduler", () => {
  it("a star no open node takes stays pending with why, and is placed once one can", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    const controller = new Controller({ store, nodeTtlSeconds: 60 });
    try {
      await store.put(nodeKey("a"), JSON.stringify(node("a", 4)));
      await store.put(`${KEYS.alive}a`, "{}");
      controller.start();
      await controller.cordon("a");
      await controller.create({ name: "s1", command: ["sleep", "60"], ram_mb: 256 });
      const pending = await waitFor("s1 pending with a reason", async () => (await recordOf(store, "s1")).pending);
      assert.equal(pending.reason, "1 node cordoned");
      assert.equal((await recordOf(store, "s1")).node, undefined);
      const events = await new EventLog(store, "test").list({ star: "s1" });
      assert.ok(events.some((e) => e.kind === "star.unplaced" && e.message === "not placed: 1 node cordoned"), JSON.stringify(events));
      // Capacity appears: a node joins. Placed by itself, its reason gone.
      await store.put(nodeKey("b"), JSON.stringify(node("b", 4)));
      await store.put(`${KEYS.alive}b`, "{}");
      const placed = await waitFor("s1 placed", async () => (await recordOf(store, "s1")).node);
      assert.equal(placed, "b");
      assert.equal((await recordOf(store, "s1")).pending, undefined);
    } finally {
      await controller.stop();
      await store.close();
    }
  });

  it("placement in the spec: constraints on node labels, binpack, and why a constraint places it nowhere", async () => {
    await withController([["a", "a"], ["b", "b"], ["c", "b"]].map(([name, zone]) => ({ ...node(name!, 8), labels: { zone: zone! } })), async (store, controller) => {
      const nodeOf = (s: string) => waitFor(`${s} placed`, async () => (await recordOf(store, s)).node);
      // Required: zone a, only node a.
      await controller.create({ name: "za", command: ["true"], ram_mb: 256, placement: { constraints: [{ attribute: "zone", operator: "=", value: "a" }] } });
      assert.equal(await nodeOf("za"), "a");
      // Binpack: onto the node that already holds most (b holds one already).
      await controller.create({ name: "first", command: ["true"], ram_gb: 2, placement: { constraints: [{ attribute: "node.name", operator: "=", value: "b" }] } });
      assert.equal(await nodeOf("first"), "b");
      await controller.create({ name: "packed", command: ["true"], ram_gb: 1, placement: { strategy: "binpack", constraints: [{ attribute: "zone", operator: "=", value: "b" }] } });
      assert.equal(await nodeOf("packed"), "b");
      // Spread (the default) with the same constraint: the other node of zone b.
      await controller.create({ name: "spread", command: ["true"], ram_gb: 1, placement: { constraints: [{ attribute: "zone", operator: "=", value: "b" }] } });
      assert.equal(await nodeOf("spread"), "c");
      // Nowhere: pending, saying which constraint.
      await controller.create({ name: "zc", command: ["true"], ram_mb: 256, placement: { constraints: [{ attribute: "zone", operator: "=", value: "c" }] } });
      const pending = await waitFor("zc pending", async () => (await recordOf(store, "zc")).pending);
      assert.equal(pending.reason, "3 nodes excluded by constraint zone=c");
      // A bad constraint is refused at create, naming it.
      await assert.rejects(controller.create({ name: "bad", command: ["true"], placement: { constraints: [{ attribute: "zone", operator: "regexp", value: "(" }] } }), /the regexp for zone does not compile/);
    });
  });

  it("memory: a new star is admitted if any node has room, and a node's own default memory is what its stars hold", async () => {
    await withController([{ ...node("a", 1), limits: { ...DEFAULT_NODE_LIMITS, defaultRamMb: 400 } }, node("b", 8)], async (store, controller) => {
      // 900 MB each: a holds one; the rest go to b, none refused while b has room.
      for (let i = 0; i < 4; i++) await controller.create({ name: `m${i}`, command: ["true"], ram_mb: 900 });
      const on = await Promise.all([0, 1, 2, 3].map((i) => waitFor(`m${i} placed`, async () => (await recordOf(store, `m${i}`)).node)));
      assert.equal(on.filter((n) => n === "a").length, 1, on.join());
      // Stars that name no memory, pinned to a (1 GiB, its default 400 MB): asked with the largest
      // default of the nodes (512 MB): two fit on a, the third waits.
      await controller.remove("m0", { force: true }).catch(() => undefined);
      for (const m of ["m1", "m2", "m3"]) await controller.remove(m, { force: true }).catch(() => undefined);
      for (let i = 0; i < 3; i++) await controller.create({ name: `d${i}`, command: ["true"], placement: { constraints: [{ attribute: "node.name", operator: "=", value: "a" }] } });
      await waitFor("two placed on a, one pending", async () => {
        const rs = await Promise.all([0, 1, 2].map((i) => recordOf(store, `d${i}`)));
        return rs.filter((r) => r.node === "a").length === 2 && rs.filter((r) => r.pending).length === 1 ? true : undefined;
      });
    });
  });

  it("a star that could not leave a draining node is no longer pending once the drain is lifted", async () => {
    await withController([node("a", 4), node("b", 1)], async (store, controller) => {
      await controller.create({ name: "s1", command: ["true"], ram_gb: 3 });
      assert.equal(await waitFor("s1 placed", async () => (await recordOf(store, "s1")).node), "a");
      await controller.cordon("a", { drain: true });
      const pending = await waitFor("s1 pending", async () => (await recordOf(store, "s1")).pending);
      assert.match(pending.reason, /^stays on draining node a: nowhere else takes it \(1 node draining, 1 node lacks memory\)$/);
      assert.equal((await recordOf(store, "s1")).node, "a");
      await controller.uncordon("a");
      await waitFor("s1 no longer pending", async () => ((await recordOf(store, "s1")).pending === undefined ? true : undefined));
      assert.equal((await recordOf(store, "s1")).node, "a");
    });
  });

  it("priorities: a star with no room pushes aside stars of lower priority, which wait and are placed again where there is room", async () => {
    await withController([node("a", 4)], async (store, controller) => {
      await controller.create({ name: "batch", command: ["true"], ram_gb: 3, priority: 10 });
      await controller.create({ name: "once", command: ["true"], ram_mb: 512, priority: 0, exclusive: true });
      assert.equal(await waitFor("batch placed", async () => (await recordOf(store, "batch")).node), "a");
      // Equal priority pushes nothing aside: refused at create, as before.
      await assert.rejects(controller.create({ name: "same", command: ["true"], ram_gb: 3, priority: 10 }), /promised to the stars/);
      // A star run at most once is never pushed aside: 3.7 GB cannot be made room for.
      await assert.rejects(controller.create({ name: "huge", command: ["true"], ram_mb: 3700, priority: 90 }), /promised to the stars/);
      // Higher: admitted, and batch makes room for it.
      await controller.create({ name: "urgent", command: ["true"], ram_gb: 3, priority: 90 });
      assert.equal(await waitFor("urgent placed", async () => (await recordOf(store, "urgent")).node), "a");
      // It says it was pushed aside, and (once a pass found no room for it) why it waits.
      const reason = await waitFor("batch says why it waits", async () => {
        const r = (await recordOf(store, "batch")).pending?.reason;
        return r?.includes("not placed since") ? r : undefined;
      });
      assert.equal(reason, "preempted on node a by star urgent (priority 90 over 10); not placed since: 1 node lacks memory");
      assert.equal((await recordOf(store, "batch")).node, undefined);
      const events = await new EventLog(store, "test").list({ star: "batch" });
      assert.ok(events.some((e) => e.kind === "star.preempted" && e.node === "a"), JSON.stringify(events));
      assert.equal((await recordOf(store, "once")).node, "a", "the exclusive star stays");
      // Room appears: batch is placed again by itself.
      await store.put(nodeKey("b"), JSON.stringify(node("b", 4)));
      await store.put(`${KEYS.alive}b`, "{}");
      assert.equal(await waitFor("batch placed again", async () => (await recordOf(store, "batch")).node), "b");
      assert.equal((await recordOf(store, "batch")).pending, undefined);
      // A priority outside 0..100 is refused with why.
      await assert.rejects(controller.create({ name: "bad", command: ["true"], priority: 101 }), /priority is 0\.\.100/);
    });
  });
});
