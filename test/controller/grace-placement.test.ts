/**
 * The grace after a controller starts (an HA leader taking over, or a restart) is for not
 * moving stars while nodes reconnect: new stars still go only to nodes whose lease holds, not
 * to nodes long dead (a new leader's grace starts while the nodes' leases were kept all along).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Controller } from "../../src/controller/controller.js";
import { KEYS, type NodeRecord, type StarRecord, nodeKey, starKey } from "../../src/model/records.js";
import { DEFAULT_NODE_LIMITS } from "../../src/model/spec.js";
import { openStore } from "../../src/store/open.js";
import { waitFor } from "../helpers/wait.js";

const node = (name: string): NodeRecord => ({ name, cpuCores: 4, memoryBytes: 8 * 2 ** 30, runtimes: ["process"], limitsEnforced: false, startedAt: 0, limits: DEFAULT_NODE_LIMITS });
const pending = (name: string): StarRecord => ({ name, uid: `${name}-uid`, spec: { name, command: ["true"], restart: "always" }, desired: "running", createdAt: 0, generation: 1 });

describe("placing within the grace after a controller's start", () => {
  it("new stars go to the nodes whose lease holds, not to nodes dead before the start; with none leased, they are still placed", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    // A long TTL: the whole test runs inside the grace (2 TTLs).
    const controller = new Controller({ store, nodeTtlSeconds: 60 });
    try {
      for (const n of ["a", "b", "c"]) await store.put(nodeKey(n), JSON.stringify(node(n)));
      await store.put(`${KEYS.alive}b`, "{}"); // only b's lease holds: a and c died before the start
      controller.start();
      for (let i = 0; i < 4; i++) await store.put(starKey(`s${i}`), JSON.stringify(pending(`s${i}`)));
      const nodeOf = async (s: string) => {
        const kv = await store.get(starKey(s));
        return kv ? (JSON.parse(kv.value) as StarRecord).node : undefined;
      };
      const placed = await waitFor("the stars placed", async () => {
        const on = await Promise.all([0, 1, 2, 3].map((i) => nodeOf(`s${i}`)));
        return on.every(Boolean) ? on : undefined;
      });
      assert.deepEqual(placed, ["b", "b", "b", "b"]);
      // No lease holds anywhere: a new star still gets a node (it runs when one is back).
      await store.delete({ key: `${KEYS.alive}b` });
      await store.put(starKey("t"), JSON.stringify(pending("t")));
      assert.ok(await waitFor("t placed", () => nodeOf("t")));
    } finally {
      await controller.stop();
      await store.close();
    }
  });
});
