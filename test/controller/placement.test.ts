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
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    const controller = new Controller({ store, nodeTtlSeconds: 60 });
    try {
      for (const [name, zone] of [["a", "a"], ["b", "b"], ["c", "b"]] as const) {
        await store.put(nodeKey(name), JSON.stringify({ ...node(name, 8), labels: { zone } }));
        await store.put(`${KEYS.alive}${name}`, "{}");
      }
      controller.start();
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
    } finally {
      await controller.stop();
      await store.close();
    }
  });
});
