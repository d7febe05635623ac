/**
 * Review of issue-11: `leftOnDead` is now rebuilt every pass. A pass in which no node is alive
 * skips every star early (nothing is moved), so the map empties, and the same star on the same
 * dead node is announced dead again once any node is back. Before (98620bc) it was said once.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { Controller } from "../../src/controller/controller.js";
import { EventLog } from "../../src/controller/events.js";
import { KEYS, type NodeRecord, type StarRecord, nodeKey, starKey } from "../../src/model/records.js";
import { DEFAULT_NODE_LIMITS } from "../../src/model/spec.js";
import { openStore } from "../../src/store/open.js";

const node = (name: string): NodeRecord => ({ name, cpuCores: 4, memoryBytes: 8 * 2 ** 30, runtimes: ["process"], limitsEnforced: false, startedAt: 0, limits: DEFAULT_NODE_LIMITS });

test("a stopped star on a dead node is announced once, even if every node is down for a while", async () => {
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  const controller = new Controller({ store, nodeTtlSeconds: 0.1 });
  try {
    for (const n of ["a", "b"]) {
      await store.put(nodeKey(n), JSON.stringify(node(n)));
      await store.put(`${KEYS.alive}${n}`, "{}");
    }
    const x: StarRecord = { name: "x", uid: "x-uid", spec: { name: "x", command: ["true"] }, desired: "stopped", node: "a", createdAt: 0, generation: 1 };
    await store.put(starKey("x"), JSON.stringify(x));
    controller.start();
    await delay(400); // past the start's grace (2 × TTL)
    const dead = async () => (await new EventLog(store, "t").list({ star: "x" })).filter((e) => e.kind === "star.node-dead").length;
    await store.delete({ key: `${KEYS.alive}a` }); // a dies: x is left there (stopped), said once
    await delay(300);
    assert.equal(await dead(), 1);
    await store.delete({ key: `${KEYS.alive}b` }); // b's lease lapses too: no node alive for a pass
    await delay(300);
    await store.put(`${KEYS.alive}b`, "{}"); // b is back; a is still dead, nothing changed for x
    await delay(300);
    assert.equal(await dead(), 1, "x announced dead on node a again, though a never came back");
  } finally {
    await controller.stop();
    await store.close();
  }
});
