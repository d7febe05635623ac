/**
 * Properties of the scheduler over random clusters and requests (fast-check): it never
 * overcommits a node, every constraint holds where a star lands, spread keeps a group's
 * per-node counts within one over equal nodes, preemption evicts only lower priorities, and
 * one snapshot gives one answer.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { schedule } from "../../src/scheduler/scheduler.js";
import type { Ask, PlacedStar, Placement, SchedNode, Snapshot } from "../../src/scheduler/types.js";
import { GiB, demand, mockAsk, mockNode, mockPlaced } from "./fixtures.js";

const ZONES = ["a", "b", "c"];
const arbNode = (i: number) =>
  fc.record({ cores: fc.integer({ min: 1, max: 16 }), mem: fc.integer({ min: 1, max: 32 }), zone: fc.constantFrom(...ZONES), closed: fc.constantFrom(undefined, undefined, undefined, "cordoned" as const) }).map(
    (r): SchedNode => mockNode(`n${i}`, r.cores, r.mem, { attributes: { zone: r.zone }, ...(r.closed ? { closed: r.closed } : {}) }),
  );
const arbNodes = fc.integer({ min: 0, max: 12 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => arbNode(i))));
const arbAsk = (i: number) =>
  fc
    .record({
      cores: fc.constantFrom(0, 0.25, 0.5, 1, 2, 4),
      mem: fc.constantFrom(0.25, 0.5, 1, 2, 4, 8),
      priority: fc.integer({ min: 0, max: 100 }),
      strategy: fc.constantFrom("binpack" as const, "spread" as const),
      group: fc.constantFrom(undefined, "g1", "g2"),
      zone: fc.constantFrom(undefined, ...ZONES),
      op: fc.constantFrom("=" as const, "!=" as const),
      distinct: fc.boolean(),
    })
    .map(
      (r): Ask =>
        mockAsk(`s${i}`, demand(r.cores, r.mem), {
          priority: r.priority,
          strategy: r.strategy,
          ...(r.group ? { group: r.group } : {}),
          distinctHosts: r.distinct,
          constraints: r.zone ? [{ attribute: "zone", operator: r.op, value: r.zone }] : [],
        }),
    );
const arbAsks = fc.integer({ min: 0, max: 40 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => arbAsk(i))));

/** What each node holds after the placements (evicted stars removed). */
function holdings(s: Snapshot, asks: readonly Ask[], out: readonly Placement[]): Map<string, PlacedStar[]> {
  const by = new Map<string, PlacedStar[]>(s.nodes.map((n) => [n.name, s.placed.filter((p) => p.node === n.name)]));
  // Placements happen in priority order: replay them in that order so an eviction removes what was there.
  const order = asks.map((_, i) => i).sort((a, b) => asks[b]!.priority - asks[a]!.priority || a - b);
  for (const i of order) {
    const p = out[i]!;
    if (p.node === undefined) continue;
    for (const e of p.preempts ?? []) for (const [k, list] of by) by.set(k, list.filter((x) => x.name !== e));
    const a = asks[i]!;
    by.get(p.node)!.push(mockPlaced(a.name, p.node, a.demand, { priority: a.priority, ...(a.group ? { group: a.group } : {}) }));
  }
  return by;
}

describe("scheduler properties", () => {
  it("never overcommits a node, places nothing on a closed one, and every constraint holds", () => {
    fc.assert(
      fc.property(arbNodes, arbAsks, (nodes, asks) => {
        const snapshot = { nodes, placed: [] };
        const out = schedule(snapshot, asks);
        const held = holdings(snapshot, asks, out);
        for (const n of nodes) {
          const list = held.get(n.name)!;
          assert.ok(list.reduce((t, s) => t + s.demand.cpuMillis, 0) <= n.capacity.cpuMillis, `cpu of ${n.name} overcommitted`);
          assert.ok(list.reduce((t, s) => t + s.demand.memoryBytes, 0) <= n.capacity.memoryBytes, `memory of ${n.name} overcommitted`);
        }
        asks.forEach((a, i) => {
          const p = out[i]!;
          if (p.node === undefined) {
            assert.ok(p.reason.length > 0);
            return;
          }
          const n = nodes.find((x) => x.name === p.node)!;
          assert.equal(n.closed, undefined, `${a.name} placed on a ${n.closed} node`);
          for (const c of a.constraints) assert.equal(c.operator === "=" ? n.attributes.zone === c.value : n.attributes.zone !== c.value, true, `${a.name} on ${n.name} breaks zone ${c.operator} ${String(c.value)}`);
        });
      }),
      { numRuns: 300 },
    );
  });

  it("distinct_hosts: no two of a group that asked for it on one node", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 12 }), (nodeCount, starCount) => {
        const nodes = Array.from({ length: nodeCount }, (_, i) => mockNode(`n${i}`));
        const asks = Array.from({ length: starCount }, (_, i) => mockAsk(`d${i}`, demand(0.1, 0.1), { group: "d", distinctHosts: true }));
        const out = schedule({ nodes, placed: [] }, asks);
        const used = out.filter((p) => p.node !== undefined).map((p) => p.node);
        assert.equal(new Set(used).size, used.length, "two of the group on one node");
        assert.equal(used.length, Math.min(nodeCount, starCount), "as many placed as there are nodes");
      }),
    );
  });

  it("spread keeps a group's per-node counts within one over equal nodes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 5 }), (nodeCount, starCount, already) => {
        const nodes = Array.from({ length: nodeCount }, (_, i) => mockNode(`n${i}`, 64, 256));
        // Some of the group already placed, all on the first node.
        const placed = Array.from({ length: already }, (_, i) => mockPlaced(`old${i}`, "n0", demand(0.01, 0.01), { group: "g" }));
        const asks = Array.from({ length: starCount }, (_, i) => mockAsk(`g${i}`, demand(0.01, 0.01), { group: "g", strategy: "spread" }));
        const out = schedule({ nodes, placed }, asks);
        const counts = nodes.map((n) => out.filter((p) => p.node === n.name).length + placed.filter((p) => p.node === n.name).length);
        const rest = counts.slice(1);
        // n0 started with `already`: the others stay within one of each other, and none passes n0 by more than one.
        if (rest.length > 0) assert.ok(Math.max(...rest) - Math.min(...rest) <= 1, counts.join(","));
        if (starCount + already >= already * nodeCount) assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, counts.join(","));
      }),
      { numRuns: 200 },
    );
  });

  it("preemption evicts only stars of lower priority than the one it makes room for", () => {
    const arbPlaced = fc.array(fc.record({ node: fc.integer({ min: 0, max: 3 }), mem: fc.constantFrom(1, 2, 4), priority: fc.integer({ min: 0, max: 100 }) }), { maxLength: 12 });
    fc.assert(
      fc.property(arbPlaced, fc.array(fc.record({ mem: fc.constantFrom(1, 2, 4, 8), priority: fc.integer({ min: 0, max: 100 }) }), { maxLength: 6 }), (ps, as) => {
        const nodes = Array.from({ length: 4 }, (_, i) => mockNode(`n${i}`, 64, 8));
        // Only what fits is placed to begin with.
        const room = nodes.map(() => 8);
        const placed: PlacedStar[] = [];
        ps.forEach((p, i) => {
          if (room[p.node]! >= p.mem) {
            room[p.node]! -= p.mem;
            placed.push(mockPlaced(`p${i}`, `n${p.node}`, demand(0, p.mem), { priority: p.priority }));
          }
        });
        const asks = as.map((a, i) => mockAsk(`a${i}`, demand(0, a.mem), { priority: a.priority }));
        const out = schedule({ nodes, placed }, asks);
        const priorityOf = new Map<string, number>([...placed.map((p) => [p.name, p.priority] as const), ...asks.map((a) => [a.name, a.priority] as const)]);
        asks.forEach((a, i) => {
          for (const e of out[i]!.node !== undefined ? (out[i] as { preempts?: string[] }).preempts ?? [] : []) assert.ok(priorityOf.get(e)! < a.priority, `${a.name} (${a.priority}) evicted ${e} (${priorityOf.get(e)})`);
        });
        const held = holdings({ nodes, placed }, asks, out);
        for (const [n, list] of held) assert.ok(list.reduce((t, s) => t + s.demand.memoryBytes, 0) <= 8 * GiB, `${n} overcommitted after preemption`);
      }),
      { numRuns: 300 },
    );
  });

  it("is deterministic: one snapshot and one list of stars give one answer", () => {
    fc.assert(
      fc.property(arbNodes, arbAsks, (nodes, asks) => {
        assert.deepEqual(schedule({ nodes, placed: [] }, asks), schedule({ nodes: structuredClone(nodes), placed: [] }, structuredClone(asks)));
      }),
      { numRuns: 100 },
    );
  });
});
