/**
 * A pass that places many stars lets the event loop turn as it goes: the store answers at once
 * (SQLite is synchronous), so a pass of thousands of writes once held the controller's process
 * for seconds, and no node's heartbeat was answered meanwhile (every node was taken for dead).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { Controller } from "../../src/controller/controller.js";
import { KEYS, type NodeRecord, type StarRecord, nodeKey, starKey } from "../../src/model/records.js";
import { DEFAULT_NODE_LIMITS } from "../../src/model/spec.js";
import { openStore } from "../../src/store/open.js";

const STARS = 400;

test("placing hundreds of stars in one pass does not hold the event loop until the pass ends", async () => {
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  const controller = new Controller({ store });
  // The event loop's turns, counted by an immediate that schedules itself.
  let turns = 0;
  let counting = true;
  const count = () => {
    turns++;
    if (counting) setImmediate(count);
  };
  try {
    const node: NodeRecord = { name: "a", cpuCores: 64, memoryBytes: 1024 * 2 ** 30, runtimes: ["process"], limitsEnforced: false, startedAt: 0, limits: DEFAULT_NODE_LIMITS };
    await store.put(nodeKey("a"), JSON.stringify(node));
    await store.put(`${KEYS.alive}a`, "{}");
    // Unplaced stars, all there before the controller starts: its first pass places them all.
    for (let i = 0; i < STARS; i++) {
      const r: StarRecord = { name: `s-${i}`, uid: `u-${i}`, spec: { name: `s-${i}`, command: ["true"] }, desired: "running", createdAt: 0, generation: 1 };
      await store.put(starKey(r.name), JSON.stringify(r));
    }
    // The turn in which each star was placed.
    const placedAt: number[] = [];
    const record = controller.events.record.bind(controller.events);
    controller.events.record = (kind, ...rest) => {
      if (kind === "star.assigned") placedAt.push(turns);
      return record(kind, ...rest);
    };
    setImmediate(count);
    controller.start();
    const deadline = Date.now() + 20_000;
    while (placedAt.length < STARS) {
      if (Date.now() > deadline) throw new Error(`timed out: ${placedAt.length} of ${STARS} stars placed`);
      await delay(20);
    }
    const distinct = new Set(placedAt).size;
    assert.ok(distinct >= STARS / 64, `the ${STARS} stars were placed in ${distinct} turn(s) of the event loop: the pass held it`);
  } finally {
    counting = false;
    await controller.stop();
    await store.close();
  }
});
