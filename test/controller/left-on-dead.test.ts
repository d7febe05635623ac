/**
 * A star left on a dead node (stopped, or never to be restarted) is said to be so once: not
 * again after a pass in which no node was alive (such a pass looks at no star), and the
 * controller keeps only the stars still left on a dead node, not every one it ever said.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { Controller } from "../../src/controller/controller.js";
import { EventLog } from "../../src/controller/events.js";
import { KEYS, type NodeRecord, type StarRecord, nodeKey, starKey } from "../../src/model/records.js";
import { DEFAULT_NODE_LIMITS } from "../../src/model/spec.js";
import { openStore } from "../../src/store/open.js";
import type { Store } from "../../src/store/types.js";

const node = (name: string): NodeRecord => ({ name, cpuCores: 4, memoryBytes: 8 * 2 ** 30, runtimes: ["process"], limitsEnforced: false, startedAt: 0, limits: DEFAULT_NODE_LIMITS });
const star = (name: string, desired: "running" | "stopped", on?: string): StarRecord => ({ name, uid: `${name}-uid`, spec: { name, command: ["true"] }, desired, ...(on ? { node: on } : {}), createdAt: 0, generation: 1 });

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

/** Makes a star and waits until a pass has placed it: a pass has run since. */
async function pass(store: Store, name: string): Promise<void> {
  await store.put(starKey(name), JSON.stringify(star(name, "running")));
  await until(`a pass to place ${name}`, async () => {
    const kv = await store.get(starKey(name));
    return kv !== undefined && (JSON.parse(kv.value) as StarRecord).node !== undefined;
  });
}

test("a stopped star on a dead node is said to be left there once, even if every node was down for a while", async () => {
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  const controller = new Controller({ store, nodeTtlSeconds: 0.1 });
  try {
    for (const n of ["a", "b"]) {
      await store.put(nodeKey(n), JSON.stringify(node(n)));
      await store.put(`${KEYS.alive}${n}`, "{}");
    }
    await store.put(starKey("x"), JSON.stringify(star("x", "stopped", "a")));
    controller.start();
    const said = async () => (await new EventLog(store, "t").list({ star: "x" })).filter((e) => e.kind === "star.node-dead").length;
    await store.delete({ key: `${KEYS.alive}a` }); // a dies: x is left there (stopped), said once
    await until("x said to be left on dead node a", async () => (await said()) === 1);
    await store.delete({ key: `${KEYS.alive}b` }); // b's lease lapses too: a pass with no node alive
    await pass(store, "p1");
    await store.put(`${KEYS.alive}b`, "{}"); // b is back; a is still dead, nothing changed for x
    await pass(store, "p2");
    assert.equal(await said(), 1, "x said again to be left on node a, though nothing changed");
  } finally {
    await controller.stop();
    await store.close();
  }
});
