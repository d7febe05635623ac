/** The scheduler's pure core (src/scheduler): feasibility, ranking, reasons, preemption, quotas. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Scheduler, schedule } from "../../src/scheduler/scheduler.js";
import type { Placement } from "../../src/scheduler/types.js";
import { GiB, demand, mockAsk, mockNode, mockPlaced } from "./fixtures.js";

const nodeOf = (p: Placement) => p.node;
const reasonOf = (p: Placement) => (p.node === undefined ? p.reason : `placed on ${p.node}`);

describe("scheduler: feasibility", () => {
  it("takes only nodes with room, and says why a star fits nowhere, in terms a user acts on", () => {
    const nodes = [
      mockNode("a", 4, 2, { attributes: { zone: "a" } }),
      mockNode("b", 4, 2, { attributes: { zone: "b" } }),
      mockNode("c", 4, 2, { attributes: { zone: "b" } }),
      mockNode("d", 4, 16, { attributes: { zone: "b" }, closed: "cordoned" }),
      mockNode("e", 4, 16, { attributes: { zone: "c" } }),
    ];
    const [p] = schedule({ nodes, placed: [] }, [mockAsk("big", demand(1, 4), { constraints: [{ attribute: "zone", operator: "in", value: ["a", "b"] }] })]);
    assert.equal(reasonOf(p!), "3 nodes lack memory, 1 node excluded by constraint zone in (a,b), 1 node cordoned");
    assert.deepEqual(p!.node === undefined && p!.filtered, { "lack memory": 3, cordoned: 1, "constraint zone in (a,b)": 1 });
    assert.equal(reasonOf(schedule({ nodes: [], placed: [] }, [mockAsk("x")])[0]!), "there are no nodes: add one (constellation join)");
  });

  it("every operator: =, !=, in, not_in, regexp, version", () => {
    const nodes = [mockNode("n1", 4, 8, { attributes: { zone: "a", "node.version": "0.1.0", disk: "ssd" } }), mockNode("n2", 4, 8, { attributes: { zone: "b", "node.version": "1.4.2" } })];
    const on = (c: Parameters<typeof mockAsk>[2]) => nodeOf(schedule({ nodes, placed: [] }, [mockAsk("s", undefined, c)])[0]!);
    assert.equal(on({ constraints: [{ attribute: "zone", operator: "=", value: "b" }] }), "n2");
    assert.equal(on({ constraints: [{ attribute: "zone", operator: "!=", value: "b" }] }), "n1");
    assert.equal(on({ constraints: [{ attribute: "zone", operator: "not_in", value: "a,c" }] }), "n2");
    assert.equal(on({ constraints: [{ attribute: "disk", operator: "regexp", value: "^ss" }] }), "n1");
    assert.equal(on({ constraints: [{ attribute: "node.version", operator: "version", value: ">=1.2 <2" }] }), "n2");
    assert.equal(on({ constraints: [{ attribute: "disk", operator: "=", value: "hdd" }] }), undefined);
  });

  it("refuses a bad constraint with what was wrong", () => {
    const nodes = [mockNode("n1")];
    const bad: Array<[unknown, RegExp]> = [
      [{ attribute: "zone", operator: "~", value: "a" }, /unknown operator "~" for zone: use one of =, !=, in, not_in, regexp, version/],
      [{ attribute: "zone", operator: "regexp", value: "(" }, /the regexp for zone does not compile/],
      [{ attribute: "v", operator: "version", value: "banana" }, /"banana" for v is not a version range/],
      [{ attribute: "zone", operator: "in", value: [] }, /zone in needs at least one value/],
      [{ attribute: "", operator: "=", value: "a" }, /each needs an attribute/],
      [{ attribute: "zone", operator: "=", value: ["a"] }, /zone = takes one value/],
    ];
    for (const [c, re] of bad) assert.throws(() => schedule({ nodes, placed: [] }, [mockAsk("s", undefined, { constraints: [c as never] })]), re);
  });

  it("distinct_hosts, fixed ports and runtimes", () => {
    const nodes = [mockNode("a"), mockNode("b", 4, 8, { runtimes: ["process"] })];
    const placed = [mockPlaced("web-1", "a", demand(0.1, 0.1), { group: "web", ports: [8080] })];
    const [p1] = schedule({ nodes, placed }, [mockAsk("web-2", demand(0.1, 0.1), { group: "web", distinctHosts: true })]);
    assert.equal(nodeOf(p1!), "b");
    const [p2] = schedule({ nodes: [nodes[0]!], placed }, [mockAsk("other", demand(0.1, 0.1), { ports: [8080] })]);
    assert.equal(reasonOf(p2!), "1 node with port 8080 taken");
    const [p3] = schedule({ nodes, placed }, [mockAsk("iso", demand(0.1, 0.1), { runtime: "isolate", group: "web", distinctHosts: true })]);
    assert.equal(reasonOf(p3!), "1 node already runs one of web (distinct_hosts), 1 node without the isolate runtime");
  });
});

describe("scheduler: ranking", () => {
  it("binpack fills the fullest node that fits; spread takes the node with fewest of the group", () => {
    const nodes = [mockNode("a"), mockNode("b"), mockNode("c")];
    const placed = [mockPlaced("x", "b", demand(2, 4))];
    assert.equal(nodeOf(schedule({ nodes, placed }, [mockAsk("s", demand(1, 2))])[0]!), "b");
    const asks = Array.from({ length: 6 }, (_, i) => mockAsk(`w${i}`, demand(0.1, 0.1), { group: "w", strategy: "spread" }));
    const on = schedule({ nodes, placed }, asks).map(nodeOf);
    assert.deepEqual(["a", "b", "c"].map((n) => on.filter((x) => x === n).length), [2, 2, 2]);
  });

  it("spread over a label: zones get equal shares", () => {
    const nodes = [mockNode("a1", 4, 8, { attributes: { zone: "a" } }), mockNode("a2", 4, 8, { attributes: { zone: "a" } }), mockNode("b1", 4, 8, { attributes: { zone: "b" } })];
    const asks = Array.from({ length: 4 }, (_, i) => mockAsk(`z${i}`, demand(0.1, 0.1), { group: "z", strategy: "spread", spreadBy: "zone" }));
    const on = schedule({ nodes, placed: [] }, asks).map(nodeOf);
    assert.equal(on.filter((n) => n === "b1").length, 2, on.join());
    assert.equal(on.filter((n) => n?.startsWith("a")).length, 2, on.join());
  });

  it("affinities pull, anti-affinities push", () => {
    const nodes = [mockNode("a", 4, 8, { attributes: { disk: "ssd" } }), mockNode("b", 4, 8, { attributes: { disk: "hdd" } })];
    const placed = [mockPlaced("x", "b", demand(3, 6))]; // binpack alone would take b
    assert.equal(nodeOf(schedule({ nodes, placed }, [mockAsk("s", demand(0.5, 1), { affinities: [{ attribute: "disk", operator: "=", value: "ssd", weight: 50 }] })])[0]!), "a");
    assert.equal(nodeOf(schedule({ nodes, placed: [] }, [mockAsk("s", demand(0.5, 1), { affinities: [{ attribute: "disk", operator: "=", value: "ssd", weight: -50 }] })])[0]!), "b");
  });
});

describe("scheduler: priorities, preemption and quotas", () => {
  it("a star that fits nowhere evicts the fewest stars of lower priority, never of equal or higher", () => {
    const nodes = [mockNode("a", 4, 4), mockNode("b", 4, 4)];
    const placed = [
      mockPlaced("low-1", "a", demand(1, 2), { priority: 10 }),
      mockPlaced("low-2", "a", demand(1, 2), { priority: 10 }),
      mockPlaced("mid", "b", demand(1, 2), { priority: 40 }),
      mockPlaced("high", "b", demand(1, 2), { priority: 90 }),
    ];
    const [p] = schedule({ nodes, placed }, [mockAsk("urgent", demand(1, 2), { priority: 80 })]);
    assert.deepEqual(p, { star: "urgent", node: "a", preempts: ["low-1"] });
    const [q] = schedule({ nodes, placed }, [mockAsk("same", demand(1, 2), { priority: 10 })]);
    assert.equal(reasonOf(q!), "2 nodes lack memory");
  });

  it("higher priority stars are placed first in one pass", () => {
    const nodes = [mockNode("a", 4, 2)];
    const out = schedule({ nodes, placed: [] }, [mockAsk("low", demand(1, 2), { priority: 10 }), mockAsk("high", demand(1, 2), { priority: 90 })]);
    assert.deepEqual(out.map(reasonOf), ["1 node lacks memory", "placed on a"]);
  });

  it("a namespace over its quota places nothing, and says by how much", () => {
    const nodes = [mockNode("a", 8, 16)];
    const placed = [mockPlaced("t1", "a", demand(1, 3), { namespace: "team" })];
    const [p] = schedule({ nodes, placed, quotas: { team: { memoryBytes: 4 * GiB } } }, [mockAsk("t2", demand(1, 2), { namespace: "team" })]);
    assert.equal(reasonOf(p!), "namespace team is at its quota of memory: 3072 MiB of 4096 MiB used, this star asks 2048 MiB");
    const [q] = schedule({ nodes, placed, quotas: { team: { stars: 1 } } }, [mockAsk("t2", demand(0.1, 0.1), { namespace: "team" })]);
    assert.match(reasonOf(q!), /quota of stars: 1 of 1 used/);
    assert.equal(nodeOf(schedule({ nodes, placed, quotas: { team: { stars: 1 } } }, [mockAsk("o", demand(0.1, 0.1))])[0]!), "a", "other namespaces are not held to it");
  });

  it("preemption evicts no more than it needs: a small star taken on the way to a big one is kept", () => {
    const nodes = [mockNode("a", 4, 1000 / 1024)];
    const placed = [mockPlaced("small", "a", { cpuMillis: 0, memoryBytes: 100 * 2 ** 20, diskBytes: 0, pids: 0 }, { priority: 10 }), mockPlaced("big", "a", { cpuMillis: 0, memoryBytes: 900 * 2 ** 20, diskBytes: 0, pids: 0 }, { priority: 20 })];
    const [p] = schedule({ nodes, placed }, [mockAsk("urgent", { cpuMillis: 0, memoryBytes: 800 * 2 ** 20, diskBytes: 0, pids: 0 }, { priority: 90 })]);
    assert.deepEqual(p, { star: "urgent", node: "a", preempts: ["big"] });
  });

  it("a star that may not be preempted (run at most once) is never evicted, whatever its priority", () => {
    const nodes = [mockNode("a", 4, 2), mockNode("b", 4, 2)];
    const placed = [mockPlaced("once", "a", demand(1, 2), { priority: 0, preemptible: false }), mockPlaced("low", "b", demand(1, 2), { priority: 30 })];
    assert.deepEqual(schedule({ nodes, placed }, [mockAsk("urgent", demand(1, 2), { priority: 90 })])[0], { star: "urgent", node: "b", preempts: ["low"] });
    const [p] = schedule({ nodes: nodes.slice(0, 1), placed: placed.slice(0, 1) }, [mockAsk("urgent", demand(1, 2), { priority: 90 })]);
    assert.equal(reasonOf(p!), "1 node lacks memory");
    // An ask that may not preempt (a star leaving a draining node) pushes nothing aside.
    assert.equal(reasonOf(schedule({ nodes, placed }, [mockAsk("mover", demand(1, 2), { priority: 90, mayPreempt: false })])[0]!), "2 nodes lack memory");
  });
});

describe("scheduler: bad numbers and repeats", () => {
  it("a demand that is not a number of 0 or more, or a priority outside 0..100, is refused", () => {
    const nodes = [mockNode("a")];
    assert.throws(() => schedule({ nodes, placed: [] }, [mockAsk("x", { cpuMillis: 0, memoryBytes: -1, diskBytes: 0, pids: 0 })]), /memoryBytes.*must be a number of 0 or more/);
    assert.throws(() => schedule({ nodes, placed: [] }, [mockAsk("x", { cpuMillis: Number.NaN, memoryBytes: 1, diskBytes: 0, pids: 0 })]), /cpuMillis/);
    assert.throws(() => schedule({ nodes, placed: [] }, [mockAsk("x", undefined, { priority: 150 })]), /priority.*0 to 100/);
  });

  it("a star placed again leaves where it was first: it holds nothing twice", () => {
    const s = new Scheduler({ nodes: [mockNode("a", 4, 1), mockNode("b", 4, 1)], placed: [] });
    const first = s.place(mockAsk("x", demand(0, 0.6)));
    const again = s.place(mockAsk("x", demand(0, 0.6), { constraints: [{ attribute: "node.name", operator: "!=", value: first.node! }] }));
    assert.notEqual(again.node, first.node);
    assert.equal(s.place(mockAsk("y", demand(0, 0.6))).node, first.node, "its first node has room again");
  });

  it("version constraints keep a node's pre-release: 0.1.0-dev is before 0.1.0", () => {
    const nodes = [mockNode("dev", 4, 8, { attributes: { "node.version": "0.1.0-dev" } })];
    const on = (range: string) => schedule({ nodes, placed: [] }, [mockAsk("s", undefined, { constraints: [{ attribute: "node.version", operator: "version", value: range }] })])[0]!.node;
    assert.equal(on(">=0.1.0"), undefined);
    assert.equal(on("<0.1.0"), "dev");
    assert.equal(on(">=0.1.0-0"), "dev");
  });
});
