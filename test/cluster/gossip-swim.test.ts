/**
 * The gossip's state machine (src/cluster/gossip/swim.ts) in a simulated network
 * (bench/gossip/network.ts): members join and all come to know each other; a killed member is
 * found dead by all, and no live one is; a member taken for suspect refutes it; a starved member
 * does not accuse healthy ones (Lifeguard's local health); a member that comes back is alive
 * again; one that leaves is "left"; two members with one name are said. Simulated time only.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { everyoneKnowsEveryone, simCluster } from "../../bench/gossip/network.js";
import { suspicionBounds, suspicionTimeout, retransmitLimit, pushPullInterval, DEFAULT_GOSSIP } from "../../src/cluster/gossip/config.js";
import { GossipProtocolError, parsePacket } from "../../src/cluster/gossip/messages.js";

/** A network of `n` members m0…m(n-1), each joined through m0. */
const cluster = simCluster;

describe("gossip: SWIM with Lifeguard, simulated", () => {
  it("the arithmetic: suspicion shrinks with confirmations, news is told log(N) times, push-pull slows past 32", () => {
    const b = suspicionBounds(DEFAULT_GOSSIP, 1000);
    assert.equal(b.min, 1500); // 1 × log10(1000) × 500 ms
    assert.equal(b.max, 9000);
    assert.equal(suspicionTimeout(b, 0, 3), 9000);
    assert.ok(suspicionTimeout(b, 1, 3) < 9000 && suspicionTimeout(b, 1, 3) > 1500);
    assert.equal(suspicionTimeout(b, 3, 3), 1500);
    assert.equal(suspicionTimeout(b, 10, 3), 1500, "never below the least");
    assert.equal(retransmitLimit(DEFAULT_GOSSIP, 1000), 16);
    assert.equal(pushPullInterval(DEFAULT_GOSSIP, 10), 30_000);
    assert.equal(pushPullInterval(DEFAULT_GOSSIP, 1000), 180_000);
  });

  it("a packet is checked before anything acts on it", () => {
    assert.deepEqual(parsePacket({ t: "ping", q: 1, f: "a", n: "b" }), { t: "ping", q: 1, f: "a", n: "b" });
    const bad: unknown[] = [
      null,
      [],
      "ping",
      { t: "ping", q: -1, f: "a", n: "b" },
      { t: "ping", q: 1.5, f: "a", n: "b" },
      { t: "ping", q: 1, f: "", n: "b" },
      { t: "ping", q: 1, f: "a".repeat(300), n: "b" },
      { t: "nope", f: "a" },
      { t: "ack", q: 1, f: "a", g: [{ k: "x", n: "a", i: 1 }] },
      { t: "ack", q: 1, f: "a", g: Array.from({ length: 300 }, () => ({ k: "s", n: "a", i: 1, f: "b" })) },
      { t: "push", f: "a", a: "x:1", j: "yes", k: 0, s: [] },
      { t: "push", f: "a", a: "x:1", j: true, s: [] },
      { t: "pull", f: "a", k: 0, s: [{ n: "a", ad: "x", i: 0, st: 7, m: {} }] },
      { t: "pull", f: "a", k: 0, s: Array.from({ length: 2000 }, () => ({ n: "a", ad: "x", i: 0, st: 0, m: {} })) },
      { t: "gos", f: "a", g: [{ k: "a", n: "b", i: 0, ad: "x", m: [] }] },
    ];
    for (const p of bad) assert.throws(() => parsePacket(p), GossipProtocolError, JSON.stringify(p)?.slice(0, 80));
  });

  it("50 members joined through one come to know each other, all alive", () => {
    const net = cluster(50);
    const took = net.runUntilTrue(() => everyoneKnowsEveryone(net), 30_000);
    assert.ok(took !== undefined, "converged within 30 s of simulated time");
    assert.ok(net.live().every((m) => m.swim.size === 50));
  });

  it("a killed member is found dead by every other within 5 s; no live member is", () => {
    const net = cluster(100, { seed: 7 });
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 60_000) !== undefined);
    net.run(5000);
    const t0 = net.now;
    net.kill("m42");
    const took = net.runUntilTrue(() => net.live().every((m) => net.stateOf(m.name, "m42") === "dead"), 20_000);
    assert.ok(took !== undefined && took <= 5000, `all saw m42 dead after ${took} ms`);
    net.run(10_000);
    const wrongly = net.changes.filter((c) => c.at >= t0 && c.state === "dead" && c.member !== "m42");
    assert.deepEqual(wrongly, [], "no live member taken for dead");
  });

  it("at 1 % packet loss no live member is declared dead in 2 minutes; at 5 % suspicions are refuted", () => {
    for (const loss of [0.01, 0.05]) {
      const net = cluster(64, { seed: 3, loss });
      assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 60_000) !== undefined, `converged at ${loss * 100} % loss`);
      const t0 = net.now;
      net.run(120_000);
      const dead = net.changes.filter((c) => c.at >= t0 && c.state === "dead");
      assert.deepEqual(dead, [], `at ${loss * 100} % loss, declared dead: ${dead.map((d) => `${d.member} by ${d.observer}`).join(", ")}`);
      assert.ok(everyoneKnowsEveryone(net));
    }
  });

  it("a member taken for suspect hears of it and refutes it with a higher incarnation", () => {
    const net = cluster(20, { seed: 5 });
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 30_000) !== undefined);
    const m5 = net.members.get("m5")!;
    const before = m5.swim.incarnation;
    // m3 takes m5 for suspect (as a lost probe would make it): told to all, heard by m5, refuted.
    net.members.get("m3")!.swim.receive("m3", { t: "gos", f: "m3", g: [{ k: "s", n: "m5", i: before, f: "m3" }] });
    assert.equal(net.stateOf("m3", "m5"), "suspect");
    const refuted = net.runUntilTrue(() => m5.swim.incarnation > before && net.live().every((m) => m.name === "m5" || net.stateOf(m.name, "m5") === "alive"), 15_000);
    assert.ok(refuted !== undefined, "m5 refuted with a higher incarnation, alive to all");
    assert.ok(!net.changes.some((c) => c.member === "m5" && c.state === "dead"), "never taken for dead");
  });

  it("a starved member (the packets it sends and hears wait 0.4 s) hardly accuses healthy ones: its local health takes the blame (Lifeguard)", () => {
    /** m7's suspicions of others, and every member's suspicions of anyone but m7, in 60 s starved. */
    const starved = (maxLocalHealth: number) => {
      const net = cluster(30, { seed: 11, config: { maxLocalHealth } });
      assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 30_000) !== undefined);
      const slow = net.members.get("m7")!;
      slow.slowMs = 400; // acks reach it after its probe timeout (its timers still fire on time)
      const t0 = net.now;
      net.run(60_000);
      const later = net.changes.filter((c) => c.at >= t0 && c.member !== "m7");
      return {
        byM7: later.filter((c) => c.observer === "m7" && c.state === "suspect").length,
        all: later.filter((c) => c.state === "suspect").length,
        dead: later.filter((c) => c.state === "dead"),
        health: slow.swim.localHealth,
      };
    };
    const lifeguard = starved(DEFAULT_GOSSIP.maxLocalHealth);
    const plain = starved(0); // plain SWIM: no local health
    assert.deepEqual(lifeguard.dead, [], "no healthy member declared dead");
    assert.ok(lifeguard.health > 0, "m7's local health took the blame");
    assert.ok(lifeguard.byM7 * 10 <= plain.byM7, `m7 suspected others ${lifeguard.byM7} times with Lifeguard, ${plain.byM7} without`);
    assert.ok(lifeguard.all * 10 <= plain.all, `suspicions of healthy members: ${lifeguard.all} with Lifeguard, ${plain.all} without`);
  });

  it("a member starved of CPU (it runs 0.1 ms of every 0.6 s: its timers fire late, its packets wait behind them) accuses no one: it takes its late timers for its own stall", () => {
    const net = cluster(30, { seed: 17 });
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 30_000) !== undefined);
    const slow = net.members.get("m7")!;
    // It runs 0.1 ms of every 0.6 s (a cgroup quota shared with a busy loop): its timers fire late,
    // and the answers to its pings wait behind them.
    slow.throttle = { periodMs: 600, runMs: 0.1 };
    const t0 = net.now;
    net.run(60_000);
    const later = net.changes.filter((c) => c.at >= t0 && c.member !== "m7");
    assert.deepEqual(later.filter((c) => c.state === "suspect" || c.state === "dead").map((c) => `${c.member} ${c.state} by ${c.observer}`), [], "healthy members suspected");
  });

  it("members whose clocks are far off (a year ahead, a year behind) gossip as well as any: no timestamps cross the wire", () => {
    const net = cluster(10, { seed: 19 });
    const YEAR = 365 * 86_400_000;
    net.add("ahead", ["m0"], {}, YEAR);
    net.add("behind", ["m0"], {}, -YEAR);
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 30_000) !== undefined, "they joined");
    const t0 = net.now;
    net.run(30_000);
    assert.deepEqual(net.changes.filter((c) => c.at >= t0 && c.state !== "alive").map((c) => `${c.member} ${c.state} by ${c.observer}`), [], "someone was suspected");
    net.kill("m4");
    assert.ok(net.runUntilTrue(() => ["ahead", "behind"].every((o) => net.stateOf(o, "m4") === "dead"), 20_000) !== undefined, "they see a failure like everyone");
  });

  it("a killed member that comes back (a new process, incarnation 0) is alive to all again", () => {
    const net = cluster(20, { seed: 13 });
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 30_000) !== undefined);
    net.kill("m9");
    assert.ok(net.runUntilTrue(() => net.live().every((m) => net.stateOf(m.name, "m9") === "dead"), 20_000) !== undefined);
    net.restart("m9", ["m0"]);
    const took = net.runUntilTrue(() => everyoneKnowsEveryone(net), 20_000);
    assert.ok(took !== undefined, "m9 alive to all again");
    assert.ok(net.members.get("m9")!.swim.incarnation > 0, "it refuted its death");
  });

  it("a member that leaves is 'left' to all, not dead", () => {
    const net = cluster(20, { seed: 17 });
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 30_000) !== undefined);
    net.members.get("m4")!.swim.leave();
    const took = net.runUntilTrue(() => net.live().every((m) => m.name === "m4" || net.stateOf(m.name, "m4") === "left"), 10_000);
    assert.ok(took !== undefined, "m4 left to all");
    net.kill("m4");
    net.run(20_000);
    assert.ok(net.live().every((m) => net.stateOf(m.name, "m4") === "left"), "and stays left (not dead) once gone");
  });
});
