/**
 * The gossip under attack and faults (found by a review): a healed partition finds itself again;
 * a key holder's packet with meta that cannot be sent on, or with an enormous incarnation, is
 * dropped and kills no one; meta is bounded so a refutation always fits a packet; a captured
 * join replayed to other members makes them answer its real sender, no one else; a member whose
 * meta would not fit a packet is refused at start.
 */
/**
 * Review of issue 12's gossip: failures found by attacking it. Simulated time for the protocol,
 * loopback UDP (polled with a deadline) for the wire.
 */
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { after, describe, it } from "node:test";
import { Packr } from "msgpackr";
import { everyoneKnowsEveryone, simCluster } from "../../bench/gossip/network.js";
import { Keyring, newGossipKey } from "../../src/cluster/gossip/keyring.js";
import { GossipProtocolError } from "../../src/cluster/gossip/messages.js";
import { GossipNode } from "../../src/cluster/gossip/udp.js";
import { waitFor } from "../helpers/wait.js";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });
const config = { probeIntervalMs: 100, probeTimeoutMs: 40, gossipIntervalMs: 20, pushPullIntervalMs: 2000 };

const cluster = (n: number, seed: number) => simCluster(n, { seed });

describe("gossip under faults and attack: protocol (simulated)", () => {
  it("a partition of 15 s between two halves heals: both sides alive to each other again", () => {
    const net = cluster(20, 1);
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 30_000) !== undefined);
    const cut = (on: boolean) => {
      for (let i = 0; i < 10; i++) for (let j = 10; j < 20; j++) net.setCut(`m${i}`, `m${j}`, on);
    };
    cut(true);
    net.run(15_000);
    assert.equal(net.stateOf("m0", "m15"), "dead", "each side took the other for dead");
    cut(false);
    const took = net.runUntilTrue(() => everyoneKnowsEveryone(net), 600_000, 1000);
    const stuck = net.live().flatMap((a) => net.live().filter((b) => a !== b && net.stateOf(a.name, b.name) !== "alive")).length;
    assert.ok(took !== undefined, `still split 10 min after the heal: ${stuck} pairs not alive`);
  });

  it("in five members, one cut off from the others for 20 s is back in the cluster after the link returns", () => {
    const net = cluster(5, 1);
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 30_000) !== undefined);
    for (let i = 0; i < 5; i++) if (i !== 2) net.setCut("m2", `m${i}`, true);
    net.run(20_000);
    for (let i = 0; i < 5; i++) if (i !== 2) net.setCut("m2", `m${i}`, false);
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 600_000, 1000) !== undefined, `m0 sees m2 ${net.stateOf("m0", "m2")}, m2 sees m0 ${net.stateOf("m2", "m0")}, 10 min after the heal`);
  });

  it("meta is bounded (512 bytes as JSON): a member with the most still refutes a suspicion; more is refused", () => {
    const net = cluster(50, 1);
    const m5 = net.members.get("m5")!;
    assert.throws(() => m5.swim.setMeta({ labels: "L".repeat(600) }), GossipProtocolError);
    m5.swim.setMeta({ labels: "L".repeat(490) });
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net) && net.live().every((m) => m === m5 || m.swim.member("m5")!.incarnation === m5.swim.incarnation), 600_000, 500) !== undefined);
    const t0 = net.now;
    net.members.get("m3")!.swim.receive("m3", { t: "gos", f: "m3", g: [{ k: "s", n: "m5", i: m5.swim.incarnation, f: "m3" }] });
    net.run(30_000);
    const dead = new Set(net.changes.filter((c) => c.at >= t0 && c.member === "m5" && c.state === "dead").map((c) => c.observer));
    assert.equal(dead.size, 0, `m5 (alive, refuting) declared dead by ${dead.size} of 49`);
  });

  it("news of a known member at an incarnation far past the known one (a key holder's) is ignored", () => {
    const net = cluster(10, 2);
    assert.ok(net.runUntilTrue(() => everyoneKnowsEveryone(net), 30_000) !== undefined);
    const i = net.members.get("m4")!.swim.incarnation;
    net.members.get("m1")!.swim.receive("m9", { t: "gos", f: "m9", g: [{ k: "d", n: "m4", i: i + 1_000_000, f: "m9" }] });
    assert.equal(net.stateOf("m1", "m4"), "alive");
  });
});

describe("gossip under faults and attack: wire", () => {
  const nodes: GossipNode[] = [];
  after(() => {
    for (const n of nodes) n.close();
  });
  const key = newGossipKey();
  const ring = new Keyring(key);
  const start = async (name: string, seeds: string[] = [], extra: Partial<Parameters<typeof GossipNode.start>[0]> = {}) => {
    const n = await GossipNode.start({ name, host: "127.0.0.1", port: 0, keyring: new Keyring(key), seeds, config, ...extra });
    nodes.push(n);
    return n;
  };
  /** A sealed [epoch, counter, packet] whose meta `m` is replaced by raw MessagePack bytes. */
  const withRawMeta = (epoch: string, name: string, rawMeta: Buffer) => {
    const head = packr.pack([epoch, 0, { t: "gos", f: "mallory", g: [{ k: "a", n: name, i: 0, ad: "127.0.0.1:9", m: "__M__" }] }]);
    const marker = packr.pack("__M__");
    const at = head.indexOf(marker);
    return ring.seal(Buffer.concat([head.subarray(0, at), rawMeta, head.subarray(at + marker.length)]));
  };

  it("a key holder's packet whose meta cannot be re-encoded (a BigInt, 2,500-deep nesting) is dropped, not thrown out of the socket handler", async () => {
    const a = await start("a");
    const receive = (msg: Buffer) => (a as unknown as { receive(m: Buffer, from: string): void }).receive(msg, "127.0.0.1:9");
    const bigint = Buffer.from([0x81, 0xa1, 0x78, 0xd4, 66, 1]); // { x: <ext 66: a BigInt> }
    const deep = Buffer.concat([Buffer.from([0x81, 0xa1, 0x78]), Buffer.alloc(2500, 0x91), Buffer.from([1])]); // { x: [[[…1]]] }
    assert.doesNotThrow(() => receive(withRawMeta("e1", "evil1", bigint)), "BigInt meta (thrown from the socket's message handler = process crash)");
    assert.doesNotThrow(() => receive(withRawMeta("e2", "evil2", deep)), "deeply nested meta");
  });

  it("dead news at incarnation 2^53-1 from a key holder is dropped as not a packet; the victim stays alive", async () => {
    const a = await start("a2");
    const b = await start("b2", [a.address]);
    await waitFor("a2 and b2 alive to each other", () => a.swim.member("b2")?.state === "alive" && b.swim.member("a2")?.state === "alive");
    const raw = createSocket("udp4");
    await new Promise<void>((r) => raw.bind(0, "127.0.0.1", r));
    try {
      const lie = (epoch: string, i: number) =>
        new Promise<void>((r) => raw.send(ring.seal(packr.pack([epoch, 0, { t: "gos", f: "mallory", g: [{ k: "d", n: "b2", i, f: "mallory" }] }])), a.port, "127.0.0.1", () => r()));
      const malformed = a.drops.malformed;
      await lie("x2", Number.MAX_SAFE_INTEGER);
      await waitFor("the lie dropped", () => (a.drops.malformed > malformed ? true : undefined));
      assert.equal(a.swim.member("b2")?.state, "alive");
    } finally {
      raw.close();
    }
  });

  it("a join captured on its way and replayed to other members is answered to its real sender, not to the replayer", async () => {
    const a = await start("a3");
    const b = await start("b3", [a.address]);
    await waitFor("a3, b3 joined", () => a.swim.member("b3")?.state === "alive" || undefined);
    // An eavesdropper's socket, given as a seed: x3's genuine join push (sealed by x3) lands there.
    const spy = createSocket("udp4");
    await new Promise<void>((r) => spy.bind(0, "127.0.0.1", r));
    const captured: Buffer[] = [];
    const answers = new Map<number, number>();
    spy.on("message", (m, rinfo) => {
      if (rinfo.port === a.port || rinfo.port === b.port) answers.set(rinfo.port, (answers.get(rinfo.port) ?? 0) + 1);
      else if (captured.length === 0) captured.push(m);
    });
    const dropped = () => Object.values(a.drops).reduce((x, y) => x + y, 0) + Object.values(b.drops).reduce((x, y) => x + y, 0);
    try {
      const x3 = await start("x3", [`127.0.0.1:${spy.address().port}`]);
      await waitFor("a push captured", () => captured.length > 0 || undefined);
      const before = dropped();
      const replay = (port: number) => new Promise<void>((r) => spy.send(captured[0]!, port, "127.0.0.1", () => r()));
      await replay(a.port);
      await replay(b.port);
      // Each answers x3 itself (the address sealed in the push), which so learns of both.
      await waitFor("x3 answered by a3 and b3", () => (x3.swim.member("a3")?.state === "alive" && x3.swim.member("b3")?.state === "alive") || undefined, { timeoutMs: 5000 });
      assert.equal(dropped() - before, 0);
      assert.equal(answers.size, 0, `the replayer got answers (a3: ${answers.get(a.port) ?? 0} packets, b3: ${answers.get(b.port) ?? 0})`);
    } finally {
      spy.close();
    }
  });

  it("a member whose packets cannot be sent (too big for UDP) is refused or says so", async () => {
    const a = await start("a4");
    const logs: string[] = [];
    let refused = false;
    try {
      await start("big4", [a.address], { meta: { blob: "x".repeat(70_000) }, log: (l) => logs.push(l) });
    } catch {
      refused = true;
    }
    if (!refused) await waitFor("a log line about the oversized packet", () => logs.some((l) => /EMSGSIZE|too (big|large)|size/i.test(l)) || undefined, { timeoutMs: 3000 });
  });
});
