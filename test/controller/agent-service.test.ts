/**
 * What a node hears of assignments (AgentService.watchAssignments): its own stars, and changes
 * to stars it has (moved away, removed); never the names of other nodes' stars.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AgentService } from "../../src/controller/agent-service.js";
import { type StarRecord, starKey } from "../../src/model/records.js";
import type { AssignmentBatch } from "../../src/model/agent-link.js";
import { openStore } from "../../src/store/open.js";
import type { Store } from "../../src/store/types.js";

const record = (name: string, node: string): StarRecord => ({ name, uid: `${name}-uid`, spec: { name, command: ["true"] }, desired: "running", node, createdAt: 0, generation: 1 });

/**
 * What node n1 hears while `changes` are made, watching from after `before` was made and saying
 * it holds `held`: every change it hears, up to and with one about star `last` (made by `changes`).
 */
async function heardByN1(options: { before?: (s: Store) => Promise<void>; held?: string[]; changes: (s: Store) => Promise<void>; last: string }): Promise<AssignmentBatch["changes"]> {
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  const ac = new AbortController();
  try {
    await options.before?.(store);
    const from = (await store.revision()) + 1;
    const heard: AssignmentBatch["changes"] = [];
    const watching = (async () => {
      for await (const b of new AgentService(store, "n1").watchAssignments(from, ac.signal, options.held)) heard.push(...b.changes);
    })();
    await options.changes(store);
    const deadline = Date.now() + 5000;
    while (!heard.some((c) => c.name === options.last) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await watching;
    return heard;
  } finally {
    ac.abort();
    await store.close();
  }
}

describe("AgentService.watchAssignments", () => {
  it("a node hears of its own stars and of those it has, not of other nodes' stars", async () => {
    const heard = await heardByN1({
      before: (store) => store.put(starKey("old"), JSON.stringify(record("old", "n1"))).then(() => undefined),
      held: ["old"],
      changes: async (store) => {
        await store.put(starKey("secret"), JSON.stringify(record("secret", "n2"))); // another node's
        await store.put(starKey("mine"), JSON.stringify(record("mine", "n1")));
        await store.put(starKey("mine"), JSON.stringify(record("mine", "n2"))); // moved away
        await store.put(starKey("old"), JSON.stringify(record("old", "n3"))); // moved away
        await store.delete({ key: starKey("secret") });
        await store.put(starKey("last"), JSON.stringify(record("last", "n1")));
      },
      last: "last",
    });
    assert.deepEqual(
      heard.map((c) => `${c.name}:${c.record ? "assigned" : c.deleted ? "removed" : "away"}`),
      ["mine:assigned", "mine:away", "old:away", "last:assigned"],
    );
  });
  it("a node that names nothing it holds hears of its own assignments only", async () => {
    const heard = await heardByN1({
      changes: async (store) => {
        await store.put(starKey("payroll"), JSON.stringify(record("payroll", "n2")));
        await store.put(starKey("payroll"), JSON.stringify(record("payroll", "n3")));
        await store.delete({ key: starKey("payroll") });
        await store.put(starKey("mine"), JSON.stringify(record("mine", "n1")));
      },
      last: "mine",
    });
    assert.deepEqual(heard.map((c) => c.name), ["mine"]);
  });
  it("a node that names other nodes' stars as its own learns nothing of them (not even that they exist)", async () => {
    const heard = await heardByN1({
      before: (store) => store.put(starKey("payroll"), JSON.stringify(record("payroll", "n2"))).then(() => undefined),
      held: ["payroll", "ghost"],
      changes: async (store) => {
        await store.put(starKey("payroll"), JSON.stringify(record("payroll", "n3"))); // moved, never n1's
        await store.put(starKey("ghost"), JSON.stringify(record("ghost", "n2"))); // made after the guess
        await store.delete({ key: starKey("payroll") });
        await store.delete({ key: starKey("ghost") });
        await store.put(starKey("mine"), JSON.stringify(record("mine", "n1")));
      },
      last: "mine",
    });
    assert.deepEqual(heard.map((c) => c.name), ["mine"]);
  });
});
