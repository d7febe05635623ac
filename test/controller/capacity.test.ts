/** A star no node could ever hold is refused at create, said of the largest node. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Controller } from "../../src/controller/controller.js";
import { CapacityExceededError } from "../../src/model/errors.js";
import { type NodeRecord, nodeKey } from "../../src/model/records.js";
import { DEFAULT_NODE_LIMITS } from "../../src/model/spec.js";
import { openStore } from "../../src/store/open.js";

const node = (name: string, cpuCores: number, memoryGiB: number): NodeRecord => ({ name, cpuCores, memoryBytes: memoryGiB * 2 ** 30, runtimes: ["process"], limitsEnforced: false, startedAt: 0, limits: DEFAULT_NODE_LIMITS });

describe("a star too large for every node", () => {
  it("is refused at create, naming the largest node and what it has", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    const controller = new Controller({ store });
    try {
      for (const n of [node("small", 2, 4), node("big", 8, 32), node("mid", 4, 16)]) await store.put(nodeKey(n.name), JSON.stringify(n));
      await assert.rejects(controller.create({ name: "huge", command: ["true"], resources: { ram_gb: 64 } }), (e: unknown) => {
        assert.ok(e instanceof CapacityExceededError);
        assert.equal(e.message, "ram_gb asks for 65536 MB, but the largest node (big) has 32768 MB: ask for less");
        return true;
      });
      await assert.rejects(controller.create({ name: "wide", command: ["true"], cpu_cores: 16 }), /cpu_cores asks for 16 cores, but the largest node \(big\) has 8 cores/);
      assert.equal((await controller.create({ name: "fits", command: ["true"], ram_gb: 20 }, { start: false })).name, "fits");
    } finally {
      await store.close();
    }
  });
});
