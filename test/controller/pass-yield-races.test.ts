/**
 * Races opened by a pass that lets the event loop turn (WRITES_PER_TURN): the pass decides with
 * the nodes, leases and cordons it read when it began, and other requests are answered meanwhile.
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

const STARS = 128; // one txn (the store takes at most 128 operations in one)
const node = (name: string): NodeRecord => ({ name, cpuCores: 64, memoryBytes: 1024 * 2 ** 30, runtimes: ["process"], limitsEnforced: false, startedAt: 0, limits: DEFAULT_NODE_LIMITS });
const star = (name: string, extra: Partial<StarRecord> = {}, spec: Record<string, unknown> = {}): StarRecord => ({
  name,
  uid: `${name}-uid`,
  spec: { name, command: ["true"], ...spec },
  desired: "running",
  createdAt: 0,
  generation: 1,
  ...extra,
});

async function until(what: string, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

async function putStars(store: Store, records: StarRecord[]): Promise<void> {
  await store.txn({ success: records.map((r) => ({ type: "put" as const, key: starKey(r.name), value: JSON.stringify(r) })) });
}

/** Calls `fn` in a turn of its own (as an API request or a heartbeat would be) once the first star of a pass is assigned. */
function onFirstAssigned(controller: Controller, fn: () => Promise<void>): Promise<void> {
  let done: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  let fired = false;
  const record = controller.events.record.bind(controller.events);
  controller.events.record = (kind, ...rest) => {
    if (kind === "star.assigned" && !fired) {
      fired = true;
      setImmediate(() => void fn().then(() => done()));
    }
    return record(kind, ...rest);
  };
  return finished;
}

test("a node cordoned while a pass places stars gets no star after the cordon", async () => {
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  const controller = new Controller({ store });
  try {
    for (const n of ["a", "b"]) {
      await store.put(nodeKey(n), JSON.stringify(node(n)));
      await store.put(`${KEYS.alive}${n}`, "{}");
    }
    controller.start();
    const cordoned = onFirstAssigned(controller, () => controller.cordon("b"));
    await putStars(store, Array.from({ length: STARS }, (_, i) => star(`s-${String(i).padStart(4, "0")}`)));
    await cordoned;
    await until("every star placed", async () => (await store.range({ prefix: KEYS.stars })).kvs.every((kv) => (JSON.parse(kv.value) as StarRecord).node !== undefined));
    const events = await new EventLog(store, "t").list();
    const cordonSeq = events.find((e) => e.kind === "node.cordoned")!.seq;
    const after = events.filter((e) => e.kind === "star.assigned" && e.node === "b" && e.seq > cordonSeq);
    assert.equal(after.length, 0, `${after.length} stars were assigned to node b after \`cordon b\` had returned (e.g. ${after[0]?.star})`);
  } finally {
    await controller.stop();
    await store.close();
  }
});

test("an exclusive star is not moved off a node whose heartbeat was answered again before the move", async () => {
  // The controller's monotonic clock, moved forward by the test (no waiting out TTLs).
  const realNow = performance.now.bind(performance);
  let offset = 0;
  performance.now = () => realNow() + offset;
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  const controller = new Controller({ store, nodeTtlSeconds: 1 });
  try {
    for (const n of ["a", "b"]) {
      await store.put(nodeKey(n), JSON.stringify(node(n)));
      await store.put(`${KEYS.alive}${n}`, "{}");
    }
    // "x-ex" sorts after the stars below: the pass reaches it after it has yielded.
    await putStars(store, [star("x-ex", { node: "a" }, { exclusive: true, restart: "always", stop_grace_ms: 0 })]);
    controller.start();
    offset += 5_000; // past the grace after the start: nodes are judged
    await store.delete({ key: `${KEYS.alive}a` }); // a's lease expires
    const deadSince = (controller as unknown as { deadSince: Map<string, number> }).deadSince;
    await until("node a taken for dead", () => deadSince.has("a"));
    offset += 5_000; // a has been dead for longer than its TTL and x-ex's stop grace: x-ex may move
    let back = 0;
    let onAtReturn: string | undefined;
    const returned = onFirstAssigned(controller, async () => {
      // a's heartbeat is answered again (a new lease): its agent unfences, reads its assignments,
      // finds x-ex still assigned to it (if no pass moved it yet) and starts it again.
      const { revision } = await store.put(`${KEYS.alive}a`, "{}");
      back = revision;
      onAtReturn = (JSON.parse((await store.get(starKey("x-ex")))!.value) as StarRecord).node;
    });
    await putStars(store, Array.from({ length: STARS }, (_, i) => star(`p-${String(i).padStart(4, "0")}`)));
    await returned;
    await until("every star placed", async () => (await store.range({ prefix: KEYS.stars })).kvs.every((kv) => (JSON.parse(kv.value) as StarRecord).node !== undefined));
    await until("passes settled", async () => {
      const before = await store.revision();
      await delay(200);
      return (await store.revision()) === before;
    });
    if (onAtReturn !== "a") return; // moved before a came back: a's agent never starts it again
    const moved = (await new EventLog(store, "t").list({ star: "x-ex" })).filter((e) => e.kind === "star.moved" && e.seq > back);
    assert.equal(
      moved.length,
      0,
      `x-ex moved to ${moved[0]?.node} (${moved[0]?.message}) at revision ${moved[0]?.seq}, after node a was alive again (revision ${back}) and had been given x-ex back: two copies of an exclusive star`,
    );
  } finally {
    performance.now = realNow;
    await controller.stop();
    await store.close();
  }
});
