/**
 * The controller judges a node dead by its lease *and* gossip (liveness.ts): gossip alone never
 * moves a star, a lease that lapses while gossip says the node lives moves nothing until the
 * lease alone would do (LEASE_ONLY_AFTER TTLs), and gossip's word that the node is dead moves
 * its stars as soon as the lease has lapsed too.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { Controller } from "../../src/controller/controller.js";
import { LEASE_ONLY_AFTER } from "../../src/controller/liveness.js";
import { KEYS, type NodeRecord, type StarRecord, nodeKey, starKey } from "../../src/model/records.js";
import { DEFAULT_NODE_LIMITS } from "../../src/model/spec.js";
import { openStore } from "../../src/store/open.js";
import type { Store } from "../../src/store/types.js";
import type { MemberState } from "../../src/cluster/gossip/swim.js";

const TTL_S = 0.3;
const node = (name: string): NodeRecord => ({ name, cpuCores: 4, memoryBytes: 8 * 2 ** 30, runtimes: ["process"], limitsEnforced: false, startedAt: 0, limits: DEFAULT_NODE_LIMITS });
const star = (name: string, on: string): StarRecord => ({ name, uid: `${name}-uid`, spec: { name, command: ["true"], restart: "always" }, desired: "running", node: on, createdAt: 0, generation: 1 });

async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

async function setup(): Promise<{ store: Store; controller: Controller; gossip: Map<string, MemberState>; nodeOf: (s: string) => Promise<string | undefined>; close: () => Promise<void> }> {
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  const gossip = new Map<string, MemberState>([
    ["a", "alive"],
    ["b", "alive"],
  ]);
  const controller = new Controller({ store, nodeTtlSeconds: TTL_S, gossip: { state: (n) => (gossip.has(n) ? { state: gossip.get(n)!, since: Date.now() } : undefined) } });
  for (const n of ["a", "b"]) {
    await store.put(nodeKey(n), JSON.stringify(node(n)));
    await store.put(`${KEYS.alive}${n}`, "{}");
  }
  await store.put(starKey("r"), JSON.stringify(star("r", "a")));
  controller.start();
  await delay(2 * TTL_S * 1000 + 100); // past the grace after a start, in which no node is judged
  const nodeOf = async (s: string) => {
    const kv = await store.get(starKey(s));
    return kv ? (JSON.parse(kv.value) as StarRecord).node : undefined;
  };
  return {
    store,
    controller,
    gossip,
    nodeOf,
    close: async () => {
      await controller.stop();
      await store.close();
    },
  };
}

describe("a node's death is its lease and gossip agreeing", () => {
  it("gossip saying dead moves nothing while the lease holds; the node stays up", async () => {
    const t = await setup();
    try {
      t.gossip.set("a", "dead");
      t.controller.nudge();
      await t.store.put(starKey("poke"), JSON.stringify({ ...star("poke", "b") })); // a pass runs
      await delay(3 * TTL_S * 1000);
      assert.equal(await t.nodeOf("r"), "a", "a star moved on gossip's word alone");
      assert.equal((await t.controller.summary()).nodes.find((n) => n.name === "a")?.state, "up");
      assert.deepEqual((await t.controller.summary()).nodes.find((n) => n.name === "a")?.gossip?.state, "dead", "nodes shows what gossip says");

    } finally {
      await t.close();
    }
  });

  it("a lease that lapses while gossip says the node lives moves nothing until the lease alone would do", async () => {
    const t = await setup();
    try {
      const lapsed = performance.now();
      await t.store.delete({ key: `${KEYS.alive}a` });
      await delay(TTL_S * 1000 * 1.5);
      assert.equal(await t.nodeOf("r"), "a", "moved while gossip said its node was alive");
      const a = (await t.controller.summary()).nodes.find((n) => n.name === "a");
      assert.equal(a?.state, "up");
      assert.equal(a?.leaseExpired, true, "nodes says its heartbeats stopped");
      await until("r moved to b once the lease alone says dead", async () => ((await t.nodeOf("r")) === "b" ? true : undefined));
      const after = performance.now() - lapsed;
      assert.ok(after >= LEASE_ONLY_AFTER * TTL_S * 1000 - 50, `moved ${after} ms after the lease lapsed, before ${LEASE_ONLY_AFTER} TTLs`);
    } finally {
      await t.close();
    }
  });

  it("nothing new is placed on a node whose lease lapsed and gossip says is dead, even in the grace after a start; gossip's word alone keeps nothing away", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    const gossip = new Map<string, MemberState>([["a", "dead"], ["b", "alive"], ["c", "left"]]);
    const controller = new Controller({ store, nodeTtlSeconds: 30, gossip: { state: (n) => ({ state: gossip.get(n)!, since: Date.now() }) } });
    try {
      for (const n of ["a", "b", "c"]) await store.put(nodeKey(n), JSON.stringify(node(n)));
      await store.put(`${KEYS.alive}b`, "{}");
      await store.put(`${KEYS.alive}c`, "{}"); // c's lease holds: back from a restart, gossip not told yet
      controller.start(); // within the grace (60 s): every node counts alive
      const nodeOf = async (s: string) => {
        const kv = await store.get(starKey(s));
        return kv ? (JSON.parse(kv.value) as StarRecord).node : undefined;
      };
      for (const n of ["n1", "n2", "n3", "n4"]) await store.put(starKey(n), JSON.stringify({ ...star(n, "a"), node: undefined }));
      const placed = await Promise.all(["n1", "n2", "n3", "n4"].map((n) => until(`${n} placed`, () => nodeOf(n))));
      assert.ok(!placed.includes("a"), `placed on a: ${placed.join(", ")}`);
      assert.ok(placed.includes("c"), `c (lease held, gossip not told yet) was kept away: ${placed.join(", ")}`);
    } finally {
      await controller.stop();
      await store.close();
    }
  });

  it("gossip saying dead after the lease lapsed moves the node's stars at once", async () => {
    const t = await setup();
    try {
      await t.store.delete({ key: `${KEYS.alive}a` });
      await delay(TTL_S * 1000 * 0.5);
      assert.equal(await t.nodeOf("r"), "a");
      const told = performance.now();
      t.gossip.set("a", "dead");
      t.controller.nudge();
      await until("r moved to b", async () => ((await t.nodeOf("r")) === "b" ? true : undefined));
      assert.ok(performance.now() - told < TTL_S * 1000, `moved ${performance.now() - told} ms after gossip said dead`);
      assert.equal((await t.controller.summary()).nodes.find((n) => n.name === "a")?.state, "down");
    } finally {
      await t.close();
    }
  });

  it("a node gossip has no word of is dead once its lease lapses (gossip blocked or not run)", async () => {
    const t = await setup();
    try {
      t.gossip.delete("a");
      const lapsed = performance.now();
      await t.store.delete({ key: `${KEYS.alive}a` });
      await until("r moved to b", async () => ((await t.nodeOf("r")) === "b" ? true : undefined));
      assert.ok(performance.now() - lapsed < 2 * TTL_S * 1000, `moved ${performance.now() - lapsed} ms after the lease lapsed`);
    } finally {
      await t.close();
    }
  });
});
