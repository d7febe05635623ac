/**
 * The gossip on the wire (src/cluster/gossip/udp.ts, keyring.ts, replay.ts): packets sealed
 * with the cluster key (AES-256-GCM), opened only with a key of the ring (rotation: install, use,
 * remove), replays dropped; three members over real UDP sockets on loopback join and see each
 * other, and one that stops is found dead; forged, garbage and replayed packets are dropped with
 * a log line and change nothing.
 */
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { after, describe, it } from "node:test";
import { Packr } from "msgpackr";
import { GossipKeyError, Keyring, SEAL_OVERHEAD, newGossipKey } from "../../src/cluster/gossip/keyring.js";
import { ReplayGuard } from "../../src/cluster/gossip/replay.js";
import { GossipNode, joinAddress, splitAddress } from "../../src/cluster/gossip/udp.js";
import { waitFor } from "../helpers/wait.js";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

describe("gossip on the wire", () => {
  it("a sealed packet opens with its key only; altered, truncated or foreign packets do not", () => {
    const key = newGossipKey();
    const ring = new Keyring(key);
    const sealed = ring.seal(Buffer.from("hello"));
    assert.equal(sealed.length, 5 + SEAL_OVERHEAD);
    assert.equal(ring.open(sealed)?.toString(), "hello");
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i]! ^= 0x01;
      assert.equal(ring.open(bad), undefined, `byte ${i} altered`);
    }
    assert.equal(ring.open(sealed.subarray(0, sealed.length - 1)), undefined);
    assert.equal(ring.open(Buffer.alloc(0)), undefined);
    assert.equal(new Keyring(newGossipKey()).open(sealed), undefined, "another cluster's key");
    assert.throws(() => new Keyring("short"), GossipKeyError);
    assert.throws(() => new Keyring(Buffer.alloc(31).toString("base64")), GossipKeyError);
  });

  it("a key is rotated without a moment where members cannot talk: install everywhere, use, remove the old", () => {
    const oldKey = newGossipKey();
    const newKey = newGossipKey();
    const a = new Keyring(oldKey);
    const b = new Keyring(oldKey);
    a.install(newKey);
    b.install(newKey);
    a.use(newKey); // a seals with the new key; b still seals with the old: both open both
    assert.equal(b.open(a.seal(Buffer.from("x")))?.toString(), "x");
    assert.equal(a.open(b.seal(Buffer.from("y")))?.toString(), "y");
    b.use(newKey);
    a.remove(oldKey);
    b.remove(oldKey);
    assert.equal(a.open(new Keyring(oldKey).seal(Buffer.from("z"))), undefined, "the old key opens nothing now");
    assert.throws(() => a.remove(newKey), /in use cannot be removed/);
  });

  it("replays are dropped: a counter seen, or too old for its window; each epoch judged alone", () => {
    const g = new ReplayGuard();
    assert.equal(g.accept("a", "e1", 0), true);
    assert.equal(g.accept("a", "e1", 0), false);
    assert.equal(g.accept("a", "e1", 5), true);
    assert.equal(g.accept("a", "e1", 3), true, "late but not seen");
    assert.equal(g.accept("a", "e1", 3), false);
    assert.equal(g.accept("a", "e1", 5000), true);
    assert.equal(g.accept("a", "e1", 5), false, "older than the window");
    assert.equal(g.accept("a", "e2", 0), true, "a new process of the same member");
    assert.equal(g.accept("b", "e1", 0), true, "another member");
    // A long run of counters, some out of order: each accepted once.
    const h = new ReplayGuard();
    const order = Array.from({ length: 3000 }, (_, i) => i);
    for (let i = 0; i + 1 < order.length; i += 7) [order[i], order[i + 1]] = [order[i + 1]!, order[i]!];
    for (const c of order) assert.equal(h.accept("m", "e", c), true, `counter ${c}`);
    for (const c of order.slice(-500)) assert.equal(h.accept("m", "e", c), false, `counter ${c} again`);
  });

  it("addresses: host:port, IPv6 in brackets; anything else is not one", () => {
    assert.deepEqual(splitAddress("10.0.0.1:7947"), { host: "10.0.0.1", port: 7947 });
    assert.deepEqual(splitAddress("[fd00::1]:7947"), { host: "fd00::1", port: 7947 });
    assert.equal(joinAddress("fd00::1", 7947), "[fd00::1]:7947");
    for (const bad of ["10.0.0.1", "10.0.0.1:0", "10.0.0.1:70000", "fd00::1:7947", ":7947", "a:b"]) assert.equal(splitAddress(bad), undefined, bad);
  });

  describe("three members over UDP on loopback", () => {
    const nodes: GossipNode[] = [];
    const logs: string[] = [];
    after(() => {
      for (const n of nodes) n.close();
    });
    const config = { probeIntervalMs: 100, probeTimeoutMs: 40, gossipIntervalMs: 20, pushPullIntervalMs: 2000 };

    it("join through one, see each other alive; one that stops is found dead by the others", async () => {
      const key = newGossipKey();
      const start = (name: string, seeds: string[]) =>
        GossipNode.start({ name, host: "127.0.0.1", port: 0, keyring: new Keyring(key), seeds, config, meta: { version: "1" }, log: (l) => logs.push(`${name}: ${l}`) });
      const a = await start("a", []);
      nodes.push(a);
      nodes.push(await start("b", [a.address]));
      nodes.push(await start("c", [a.address]));
      await waitFor("all three alive to all", () => nodes.every((n) => n.swim.list().filter((m) => m.state === "alive").length === 3));
      assert.deepEqual(a.swim.member("b")?.meta, { version: "1" });
      nodes[2]!.close();
      await waitFor("c dead to a and b", () => ["dead"].includes(a.swim.member("c")?.state ?? "") && nodes[1]!.swim.member("c")?.state === "dead", { timeoutMs: 10_000 });
      assert.equal(a.swim.member("b")?.state, "alive");
    });

    it("forged, garbage and replayed packets are dropped with a log line, and change nothing", async () => {
      const [a] = nodes;
      assert.ok(a);
      const before = a.swim.list().map((m) => `${m.name}:${m.state}:${m.incarnation}`);
      const raw = createSocket("udp4");
      await new Promise<void>((resolve) => raw.bind(0, "127.0.0.1", resolve));
      const send = (b: Buffer) => new Promise<void>((resolve) => raw.send(b, a.port, "127.0.0.1", () => resolve()));
      try {
        // Garbage, and a packet sealed with another key that says "b is dead".
        await send(Buffer.from("GET / HTTP/1.1\r\n\r\n"));
        const lie = ["ffff", 0, { t: "gos", f: "mallory", g: [{ k: "d", n: "b", i: 99, f: "mallory" }] }];
        await send(new Keyring(newGossipKey()).seal(packr.pack(lie)));
        await waitFor("two dropped as unsealed", () => (a.drops.unsealed >= 2 ? true : undefined));
        // Sealed with the cluster key but not a packet.
        const ring = (a as unknown as { options: { keyring: Keyring } }).options.keyring;
        await send(ring.seal(packr.pack(["e", 0, { t: "nope" }])));
        await send(ring.seal(Buffer.from([0xc1])));
        await waitFor("two dropped as malformed", () => (a.drops.malformed >= 2 ? true : undefined));
        // A real packet (a ping), sent twice: answered once, the copy dropped as a replay.
        const ping = ring.seal(packr.pack(["e-test", 7, { t: "ping", q: 1, f: "tester", n: "a" }]));
        await send(ping);
        await send(ping);
        await waitFor("one dropped as replayed", () => (a.drops.replayed >= 1 ? true : undefined));
      } finally {
        raw.close();
      }
      assert.deepEqual(a.swim.list().map((m) => `${m.name}:${m.state}:${m.incarnation}`), before, "nothing changed");
      await waitFor("a log line of the drops", () => (logs.some((l) => /^a: gossip: dropped packets/.test(l)) ? true : undefined));
    });
  });
});
