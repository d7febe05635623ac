/**
 * On etcd, a watch event whose previous value was compacted away comes without it (etcd reads it
 * at the event's revision − 1). A node, which chooses where its watch starts, must still learn
 * nothing of another node's star by naming it (it is told to read its assignments again), and
 * must still learn that its own star was moved away.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { AgentService } from "../../src/controller/agent-service.js";
import { type StarRecord, starKey } from "../../src/model/records.js";
import { type AssignmentBatch, AssignmentsCompactedError } from "../../src/model/agent-link.js";
import { openEtcdStore } from "../../src/store/etcd/etcd-store.js";
import { startEtcd } from "../helpers/etcd-harness.js";

const record = (name: string, node: string): StarRecord => ({ name, uid: `${name}-uid`, spec: { name, command: ["true"] }, desired: "running", node, createdAt: 0, generation: 1 });

test("etcd: a node naming another node's star at the compact revision learns nothing of it", async () => {
  const etcd = await startEtcd({ members: 1 });
  const store = await openEtcdStore({ endpoints: etcd.endpoints });
  const ac = new AbortController();
  try {
    await store.put(starKey("payroll"), JSON.stringify(record("payroll", "n2"))); // never n1's
    const { revision: moved } = await store.put(starKey("payroll"), JSON.stringify(record("payroll", "n3")));
    await store.compact(moved); // e.g. etcd's --auto-compaction-retention
    await store.put(starKey("mine"), JSON.stringify(record("mine", "n1")));
    const heard: AssignmentBatch["changes"] = [];
    let relist = false; // told to read its assignments again: learns nothing either
    const watching = (async () => {
      // the untrusted node picks `from` = the compact revision, and a guessed name
      try {
        for await (const b of new AgentService(store, "n1").watchAssignments(moved, ac.signal, ["payroll"])) heard.push(...b.changes);
      } catch (err) {
        if (!(err instanceof AssignmentsCompactedError)) throw err;
        relist = true;
      }
    })();
    const deadline = Date.now() + 5000;
    while (!relist && !heard.some((c) => c.name === "mine") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await watching;
    assert.ok(!heard.some((c) => c.name === "payroll"), `the node learnt of a star that was never its own: ${JSON.stringify(heard)}`);
  } finally {
    ac.abort();
    await store.close();
    await etcd.stop();
  }
});

test("etcd: a node resuming at the compact revision still hears that its star moved away", async () => {
  const etcd = await startEtcd({ members: 1 });
  const store = await openEtcdStore({ endpoints: etcd.endpoints });
  const ac = new AbortController();
  try {
    const { revision: had } = await store.put(starKey("x"), JSON.stringify(record("x", "n1")));
    const { revision: moved } = await store.put(starKey("x"), JSON.stringify(record("x", "n2"))); // while n1 was away
    await store.compact(moved);
    await store.put(starKey("mine"), JSON.stringify(record("mine", "n1")));
    const heard: string[] = [];
    let compacted = false;
    const watching = (async () => {
      try {
        for await (const b of new AgentService(store, "n1").watchAssignments(had + 1, ac.signal, ["x"])) heard.push(...b.changes.map((c) => `${c.name}:${c.record ? "assigned" : "away"}`));
      } catch (err) {
        if (!(err instanceof AssignmentsCompactedError)) throw err;
        compacted = true;
      }
    })();
    const deadline = Date.now() + 5000;
    while (!compacted && !heard.includes("mine:assigned") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await watching;
    // either told it moved, or told to read everything again (which also shows it is gone)
    assert.ok(compacted || heard[0] === "x:away", `heard ${JSON.stringify(heard)}`);
  } finally {
    ac.abort();
    await store.close();
    await etcd.stop();
  }
});
