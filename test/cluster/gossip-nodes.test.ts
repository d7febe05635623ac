/**
 * Gossip on real nodes (issue 12): a controller and two nodes that joined it, each with a gossip
 * member on UDP sealed with the cluster's keyring — made by init, kept in the store, given to
 * each node over RNP and kept in its data dir (root's only). The nodes find each other through
 * the controller's member; `nodes` shows what gossip says beside the lease; a rotation of the
 * key (install, use, remove) reaches every member and nobody is taken for dead meanwhile; a node
 * whose gossip stops while it still beats moves nothing; a node that crashes is seen dead by all.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Keyring, gossipKeyId } from "../../src/cluster/gossip/keyring.js";
import { GossipNode } from "../../src/cluster/gossip/udp.js";
import { type AgentNode, startAgentNode } from "../../src/server/agent-node.js";
import { type SingleNode, startSingleNode } from "../../src/server/single-node.js";
import { type Constellation, connect } from "../../src/sdk/client.js";
import { testDir } from "../helpers/dirs.js";
import { waitFor } from "../helpers/wait.js";

const devMode = process.getuid?.() !== 0;
const TTL_S = 2;

describe("gossip between a controller and its nodes", () => {
  let dir: string;
  let ctl: SingleNode;
  const nodes: Record<string, AgentNode> = {};
  let c: Constellation;
  const log: string[] = [];
  const gossipOf = async (name: string) => (await c.status()).nodes.find((n) => n.name === name)?.gossip?.state;

  before(async () => {
    dir = await testDir("constellation-gossip-");
    ctl = await startSingleNode({ dataDir: join(dir, "node-1"), port: 0, devMode, nodeName: "node-1", cluster: { name: "g", port: 0, apiPort: 0, gossipPort: 0, host: "127.0.0.1", addresses: ["127.0.0.1"], log: (l) => log.push(l), nodeTtlSeconds: TTL_S } });
    c = connect({ endpoint: ctl.url, token: ctl.token });
    for (const name of ["node-2", "node-3"]) {
      const { token } = await c.createJoinToken();
      nodes[name] = await startAgentNode({ dataDir: join(dir, name), nodeName: name, gossipPort: 0, devMode, join: { address: `127.0.0.1:${ctl.cluster!.port}`, token }, addresses: ["127.0.0.1"], log: (l) => log.push(l) });
    }
  });
  after(async () => {
    if (process.env.DEBUG_LOG) console.log(log.join("\n"));
    for (const s of await c.list().catch(() => [])) await c.star(s.name).remove({ force: true }).catch(() => undefined);
    const starsOf = (n: string) => (existsSync(join(dir, n, "runtime", "stars")) ? readdirSync(join(dir, n, "runtime", "stars")) : []);
    await waitFor("the nodes to end their stars", () => (["node-1", "node-2", "node-3"].every((n) => starsOf(n).length === 0) ? true : undefined)).catch(() => undefined);
    try {
      for (const n of Object.values(nodes)) await n.close();
    } finally {
      c.close();
      await ctl.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("every member finds every other through the controller's; nodes shows gossip's word; each node keeps the keyring root's only", async () => {
    await waitFor("the controller's gossip to see both nodes alive", async () => ((await gossipOf("node-2")) === "alive" && (await gossipOf("node-3")) === "alive" ? true : undefined));
    // node-2 and node-3 joined only through the controller's member, and know each other.
    for (const [me, other] of [["node-2", "node-3"], ["node-3", "node-2"]] as const) {
      await waitFor(`${me} to know ${other} alive`, () => (nodes[me]!.gossip()?.state(other)?.state === "alive" ? true : undefined));
      assert.equal(nodes[me]!.gossip()!.state("node-1")?.state, "alive");
    }
    const meta = nodes["node-2"]!.gossip()!.members().find((m) => m.name === "node-3")!.meta;
    assert.ok(typeof meta.cpu === "number" && typeof meta.memory === "number" && Array.isArray(meta.addresses), JSON.stringify(meta));
    const cache = join(dir, "node-2", "cluster", "gossip.json");
    assert.equal(statSync(cache).mode & 0o777, 0o600);
    const kept = JSON.parse(readFileSync(cache, "utf8")) as { keyring: { primary: string } };
    const { keys } = await c.gossipKeys();
    assert.deepEqual(keys.map((k) => k.id), [gossipKeyId(kept.keyring.primary)], "the node keeps the cluster's one key");
  });

  it("a key rotation (install, use, remove) reaches every member; nobody is suspected meanwhile; the old key opens nothing after", async () => {
    const members = () => [ctl, ...Object.values(nodes)].length;
    assert.equal(members(), 3);
    const before = await c.gossipKeys();
    const old = before.keys[0]!.id;
    // A member that holds an older keyring (its meta says which): `use` waits for it.
    const kept = JSON.parse(readFileSync(join(dir, "node-2", "cluster", "gossip.json"), "utf8")) as { keyring: { primary: string } };
    const laggard = await GossipNode.start({ name: "laggard", host: "127.0.0.1", port: 0, keyring: new Keyring(kept.keyring.primary), meta: { keys: 0 }, seeds: [nodes["node-2"]!.gossip()!.address], log: () => undefined });
    await waitFor("the controller to see the laggard", async () => ((await c.gossipKeys()).nodes?.some((n) => n.node === "laggard") ? true : undefined));
    const installed = await c.installGossipKey();
    assert.ok(installed.key && installed.id !== old, "a new key is made and shown once");
    const latest = async (version: number) => (Object.values(nodes).every((n) => n.gossip()!.version === version) ? true : undefined);
    await waitFor("every node to have the new keyring", () => latest(installed.version), { timeoutMs: 15_000 });
    // Each node's gossip meta says it holds the new keyring (told to the controller by gossip).
    const listed = await waitFor("the controller to see every node's new keyring", async () => {
      const l = await c.gossipKeys();
      return l.nodes?.filter((n) => n.node !== "laggard").every((n) => n.version === installed.version) ? l : undefined;
    });
    assert.deepEqual(listed.nodes?.find((n) => n.node === "laggard"), { node: "laggard", version: 0 });
    await assert.rejects(c.useGossipKey(installed.id), /not every node holds keyring version \d+ yet: laggard \(version 0\)/);
    await laggard.leave(500);
    const used = await waitFor("use to be allowed once the laggard left", () => c.useGossipKey(installed.id).catch(() => undefined));
    await waitFor("every node to use the new key", () => latest(used.version), { timeoutMs: 15_000 });
    assert.ok(!log.some((l) => / node-\d is dead/.test(l)), `a node was taken for dead during the rotation:\n${log.filter((l) => /gossip/.test(l)).join("\n")}`);
    const removed = await c.removeGossipKey(old);
    assert.deepEqual(removed.keys, [{ id: installed.id, primary: true }]);
    await waitFor("every node to drop the old key", () => latest(removed.version), { timeoutMs: 15_000 });
    for (const name of ["node-2", "node-3"]) assert.equal(await gossipOf(name), "alive", `${name} after the rotation`);
    assert.ok(!log.some((l) => / node-\d is (suspect|dead)/.test(l)), `a node was suspected during the rotation:\n${log.filter((l) => /gossip/.test(l)).join("\n")}`);
    // A member still sealing with the old key is dropped by everyone.
    const cache = JSON.parse(readFileSync(join(dir, "node-2", "cluster", "gossip.json"), "utf8")) as { keyring: { primary: string; keys: string[] } };
    assert.equal(gossipKeyId(cache.keyring.primary), installed.id, "the node keeps the new keyring");
    const target = nodes["node-2"]!.gossip()!;
    const stale = await GossipNode.start({ name: "intruder", host: "127.0.0.1", port: 0, keyring: new Keyring(Buffer.alloc(32, 7).toString("base64")), seeds: [target.address], log: () => undefined });
    try {
      await waitFor("the old-key packets to be dropped", () => (target.node.drops.unsealed > 0 ? true : undefined));
      assert.equal(target.state("intruder"), undefined, "a member without the key joined");
    } finally {
      stale.close();
    }
    // Bad keys and misuse are refused with a reason.
    await assert.rejects(c.installGossipKey("not a key"), /32 bytes in base64/);
    await assert.rejects(c.removeGossipKey(installed.id), /the one in use/);
    await assert.rejects(c.useGossipKey("00000000"), /no gossip key with id 00000000/);
  });

  it("a node whose gossip stops while it beats is suspected, and nothing of it moves; a crashed node is seen dead by all and goes down", async () => {
    await c.cordon("node-1");
    await c.cordon("node-3");
    await c.create({ name: "stay", command: ["sleep", "600"], ram_mb: 32, restart: "always" });
    await c.uncordon("node-1");
    await c.uncordon("node-3");
    const placed = await waitFor("stay running on node-2", async () => {
      const s = await c.star("stay").info();
      return s.status?.state === "running" ? s : undefined;
    });
    assert.equal(placed.node, "node-2");
    // Gossip's false positive: node-2's member is gone, its heartbeats go on.
    nodes["node-2"]!.gossip()!.close();
    await waitFor("the controller's gossip to say node-2 dead", async () => ((await gossipOf("node-2")) === "dead" ? true : undefined), { timeoutMs: 20_000 });
    const heldFor = Date.now() + 2 * TTL_S * 1000;
    await waitFor("two TTLs to pass", () => (Date.now() > heldFor ? true : undefined), { timeoutMs: 3 * TTL_S * 1000 });
    const s = await c.star("stay").info();
    assert.equal(s.node, "node-2", "a star moved on gossip's word alone");
    assert.equal((await c.status()).nodes.find((n) => n.name === "node-2")?.state, "up", "node-2 is up: its lease holds");
    // A crash (no leave): node-3's member and agent end at once.
    const crashed = Date.now();
    nodes["node-3"]!.gossip()!.close();
    await nodes["node-3"]!.close();
    delete nodes["node-3"];
    await waitFor("node-3 down", async () => ((await c.status()).nodes.find((n) => n.name === "node-3")?.state === "down" ? true : undefined), { timeoutMs: 20_000 });
    assert.equal(await gossipOf("node-3"), "dead");
    assert.ok(Date.now() - crashed < (TTL_S + 8) * 1000, `node-3 down ${Date.now() - crashed} ms after it crashed`);
  });
});

describe("a rotation a node has not heard of, and a revoked node's key", () => {
  let dir: string;
  let ctl: SingleNode;
  let node: AgentNode | undefined;
  let c: Constellation;
  const log: string[] = [];

  before(async () => {
    dir = await testDir("constellation-gossip-rot-");
    // A long lease: heartbeats (which name the keyring's version) come only every 10 s.
    ctl = await startSingleNode({ dataDir: join(dir, "c"), port: 0, devMode, nodeName: "c", cluster: { name: "r", port: 0, apiPort: 0, gossipPort: 0, host: "127.0.0.1", addresses: ["127.0.0.1"], log: (l) => log.push(l), nodeTtlSeconds: 30 } });
    c = connect({ endpoint: ctl.url, token: ctl.token });
    const { token } = await c.createJoinToken();
    node = await startAgentNode({ dataDir: join(dir, "n"), nodeName: "n", gossipPort: 0, devMode, join: { address: `127.0.0.1:${ctl.cluster!.port}`, token }, addresses: ["127.0.0.1"], log: (l) => log.push(l) });
    await waitFor("n alive by gossip", async () => ((await c.status()).nodes.find((x) => x.name === "n")?.gossip?.state === "alive" ? true : undefined));
  });
  after(async () => {
    if (process.env.DEBUG_LOG) console.log(log.join("\n"));
    try {
      await node?.close();
    } finally {
      c.close();
      await ctl.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a node that gets a packet sealed with a key it lacks asks for the keyring at once, not at its next heartbeat", async () => {
    const { id } = await c.installGossipKey();
    const at = Date.now();
    const used = await c.useGossipKey(id, { force: true });
    await waitFor("n to take the new keyring", () => (node!.gossip()!.version === used.version ? true : undefined), { timeoutMs: 8000 });
    assert.ok(Date.now() - at < 3000, `n took ${Date.now() - at} ms (its heartbeats come every 10 s)`);
  });

  it("revoking a node replaces the gossip key: its copy opens nothing, and gossip takes it for dead", async () => {
    const before = await c.gossipKeys();
    const r = await c.revokeNode("n");
    assert.equal(r.gossipKeyReplaced, true);
    const after = await c.gossipKeys();
    assert.equal(after.keys.length, 1);
    assert.ok(!before.keys.some((k) => k.id === after.keys[0]!.id), "a new key");
    await waitFor("the revoked node dead to gossip", async () => (["dead", "left"].includes((await c.status()).nodes.find((x) => x.name === "n")?.gossip?.state ?? "") ? true : undefined), { timeoutMs: 20_000 });
  });
});
