/**
 * A cluster of two nodes on this machine (issue 11): a controller made by startSingleNode with
 * `cluster` (its CA and certificate made once, in its data dir), and a node that joins it with a
 * token and from then on talks to it only over RNP (no store). Stars are placed on both; one on
 * the joined node runs there, and its logs, state and stop work through the controller's API. A
 * join with a bad, revoked or expired token, or a name in use, is refused and leaves nothing.
 * The joined node restarted keeps its identity and its star, which runs on untouched.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type AgentNode, startAgentNode } from "../../src/server/agent-node.js";
import { type SingleNode, startSingleNode } from "../../src/server/single-node.js";
import { type Constellation, connect } from "../../src/sdk/client.js";
import { nodeGroups, removeNodeGroups } from "../helpers/cgroups.js";
import { testDir } from "../helpers/dirs.js";
import { waitFor } from "../helpers/wait.js";

const devMode = process.getuid?.() !== 0;
/** The nodes' lease TTL here (10 s by default). */
const TTL_S = 2;

describe("a controller and a node that joined it", () => {
  let dir: string;
  let ctl: SingleNode;
  let node2: AgentNode | undefined;
  let c: Constellation;
  const log: string[] = [];
  const address = () => `127.0.0.1:${ctl.cluster!.port}`;

  before(async () => {
    dir = await testDir("constellation-cluster-");
    ctl = await startSingleNode({ dataDir: join(dir, "node-1"), port: 0, devMode, nodeName: "node-1", cluster: { name: "prod", port: 0, apiPort: 0, gossipPort: 0, host: "127.0.0.1", addresses: ["127.0.0.1"], log: (l) => log.push(l), nodeTtlSeconds: TTL_S } });
    c = connect({ endpoint: ctl.url, token: ctl.token });
  });
  after(async () => {
    if (process.env.DEBUG_LOG) console.log(log.join("\n"));
    for (const s of await c.list().catch(() => [])) await c.star(s.name).remove({ force: true }).catch(() => undefined);
    // Each node ends its stars before it is closed (a star outlives its node's control plane).
    const starsOf = (n: string) => (existsSync(join(dir, n, "runtime", "stars")) ? readdirSync(join(dir, n, "runtime", "stars")) : []);
    await waitFor("the nodes to end their stars", () => (starsOf("node-1").length + starsOf("node-2").length === 0 ? true : undefined)).catch(() => undefined);
    try {
      await node2?.close();
      // A revoked node could not hear of the removals: what still runs in its groups is ended here.
      if (!devMode) {
        for (const pids of nodeGroups(join(dir, "node-2")).values()) {
          for (const pid of pids) {
            try {
              process.kill(pid, "SIGKILL");
            } catch {
              // ended meanwhile (on a slow machine, between the listing and the kill)
            }
          }
        }
        await waitFor("node-2's groups removed", () => (removeNodeGroups(join(dir, "node-2")) ? true : undefined)).catch(() => undefined);
      }
    } finally {
      // Whatever failed above, the controller is closed: an open one keeps this test's process alive.
      await ctl?.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the controller's identity is made once, its keys root's only", () => {
    const files = join(dir, "node-1", "cluster");
    for (const f of ["cluster.json", "ca.crt", "ca.key", "node.crt", "node.key"]) assert.ok(existsSync(join(files, f)), f);
    for (const f of ["ca.key", "node.key"]) assert.equal(statSync(join(files, f)).mode & 0o777, 0o600, f);
    assert.deepEqual(JSON.parse(readFileSync(join(files, "cluster.json"), "utf8")), { name: "prod", node: "node-1", role: "controller" });
  });

  it("refuses a join with a bad, revoked or expired token, and a name in use; nothing is left of the attempt", async () => {
    const tryJoin = async (name: string, token: string) => {
      const data = join(dir, `try-${name}-${Math.random().toString(16).slice(2, 8)}`);
      const err = await startAgentNode({ gossipPort: 0, dataDir: data, nodeName: name, join: { address: address(), token }, addresses: ["127.0.0.1"] }).then(
        async (n) => {
          await n.close();
          return undefined;
        },
        (e: Error) => e,
      );
      assert.ok(err, `the join of ${name} was refused`);
      assert.equal(existsSync(join(data, "cluster")), false, "no identity was written");
      return err.message;
    };
    assert.match(await tryJoin("bad", "cjt1.nonsense"), /not one: copy it whole/);
    const good = await ctl.cluster!.joinToken();
    const forged = good.token.replace(/\.[A-Za-z0-9_-]{43}$/, `.${"A".repeat(43)}`);
    assert.match(await tryJoin("forged", forged), /not known to this cluster/);
    const revoked = await ctl.cluster!.joinToken();
    assert.ok(await ctl.cluster!.revokeJoinToken(revoked.id));
    assert.match(await tryJoin("revoked", revoked.token), /was revoked/);
    const short = await ctl.cluster!.joinToken(1);
    await waitFor("the token to expire", () => Date.now() > short.expiresAt || undefined);
    assert.match(await tryJoin("late", short.token), /expired/);
    assert.match(await tryJoin("node-1", good.token), /a node named node-1 is already in the cluster/);
  });

  it("a joined node gets stars, runs them, and its logs and stop work through the controller", async () => {
    const { token } = await ctl.cluster!.joinToken();
    node2 = await startAgentNode({ gossipPort: 0, dataDir: join(dir, "node-2"), nodeName: "node-2", join: { address: address(), token }, addresses: ["127.0.0.1"], log: (l) => log.push(l) });
    assert.deepEqual(JSON.parse(readFileSync(join(dir, "node-2", "cluster", "cluster.json"), "utf8")), { name: "prod", node: "node-2", role: "agent", controller: address() });
    assert.equal(existsSync(join(dir, "node-2", "store.db")), false, "a joined node keeps no store");
    await waitFor("both nodes in the cluster", async () => ((await c.status()).nodes.map((n) => n.name).sort().join() === "node-1,node-2" ? true : undefined));
    // Two stars: each goes to the node that holds fewest.
    for (const name of ["a", "b"]) await c.create({ name, command: ["sh", "-c", `echo "hello from ${name}"; exec sleep 600`], ram_mb: 64 });
    const placed = await waitFor("both running", async () => {
      const list = await c.list();
      return list.length === 2 && list.every((s) => s.status?.state === "running") ? list : undefined;
    });
    const remote = placed.find((s) => s.node === "node-2");
    assert.ok(remote, `a star on node-2: ${JSON.stringify(placed.map((s) => [s.name, s.node]))}`);
    // What each node's stars take: one star of 64 MB each.
    const used = Object.fromEntries((await c.status()).nodes.map((n) => [n.name, n.used]));
    assert.deepEqual(used, { "node-1": { stars: 1, cpuCores: 0, memoryBytes: 64 * 2 ** 20 }, "node-2": { stars: 1, cpuCores: 0, memoryBytes: 64 * 2 ** 20 } });
    // It runs on node-2: its files are in node-2's data dir.
    assert.ok(existsSync(join(dir, "node-2", "runtime", "stars", remote.name)), "the star's files are node-2's");
    const lines = await waitFor("its log line, through the controller", async () => {
      const out: string[] = [];
      for await (const l of c.star(remote.name).logs()) out.push(l.line);
      return out.length > 0 ? out : undefined;
    });
    assert.deepEqual(lines, [`hello from ${remote.name}`]);
    const stopped = await c.star(remote.name).stop();
    assert.equal(stopped.status?.state, "stopped");
  });

  it("a joined node restarted keeps its identity and its stars, which run on untouched", async () => {
    await c.star("a").start().catch(() => undefined);
    await c.star("b").start().catch(() => undefined);
    const before = await waitFor("both running", async () => {
      const list = await c.list();
      return list.length === 2 && list.every((s) => s.status?.state === "running") ? list : undefined;
    });
    const remote = before.find((s) => s.node === "node-2")!;
    const pid = remote.status!.pid;
    await node2!.close();
    node2 = await startAgentNode({ gossipPort: 0, dataDir: join(dir, "node-2"), log: (l) => log.push(l) }); // no token: it is a member already
    assert.equal(node2.name, "node-2");
    await waitFor("connected again", () => node2!.connected() || undefined);
    const after = await c.star(remote.name).info();
    assert.equal(after.status?.state, "running");
    assert.equal(after.status?.pid, pid, "the same run, not a restart");
  });

  it("the controller restarted under load: its node reconnects by itself, stars run on untouched, none is moved; a burst of creates meanwhile all run", async () => {
    const before = await waitFor("both running", async () => {
      const list = await c.list();
      return list.length === 2 && list.every((s) => s.status?.state === "running") ? list : undefined;
    });
    const remote = before.find((s) => s.node === "node-2")!;
    c.close();
    await ctl.close();
    ctl = await startSingleNode({ dataDir: join(dir, "node-1"), port: 0, devMode, cluster: { port: 0, apiPort: 0, gossipPort: 0, host: "127.0.0.1", addresses: ["127.0.0.1"], log: (l) => log.push(l), nodeTtlSeconds: TTL_S } });
    c = connect({ endpoint: ctl.url, token: ctl.token });
    // Load while the node comes back: twenty creates at once.
    const burst = Array.from({ length: 20 }, (_, i) => c.create({ name: `load${i}`, command: ["sh", "-c", "exec sleep 600"], ram_mb: 16 }));
    await Promise.all(burst);
    await waitFor("node-2 back", () => (ctl.cluster!.connected().includes("node-2") ? true : undefined), { timeoutMs: 15_000 });
    const all = await waitFor("everything running", async () => {
      const list = await c.list();
      return list.length === 22 && list.every((s) => s.status?.state === "running") ? list : undefined;
    }, { timeoutMs: 30_000 });
    const after = all.find((s) => s.name === remote.name)!;
    assert.equal(after.node, "node-2", "not moved");
    assert.equal(after.status?.pid, remote.status?.pid, "the same run");
    assert.ok(all.some((s) => s.name.startsWith("load") && s.node === "node-2"), "the node takes new stars again");
    assert.deepEqual((await c.events({ star: remote.name })).filter((e) => e.kind === "star.moved"), [], "nothing moved");
    for (const s of all.filter((x) => x.name.startsWith("load"))) await c.star(s.name).remove({ force: true });
  });

  it("a node that stops beating is declared dead; its stars that may restart run again elsewhere, and its old copies end when it is back", async () => {
    for (const name of ["m1", "m2", "m3"]) await c.create({ name, command: ["sh", "-c", "echo up; exec sleep 600"], restart: "always", ram_mb: 32 });
    const placed = await waitFor("all running", async () => {
      const list = (await c.list()).filter((s) => s.name.startsWith("m"));
      return list.length === 3 && list.every((s) => s.status?.state === "running") ? list : undefined;
    });
    const moving = placed.filter((s) => s.node === "node-2").map((s) => s.name);
    assert.ok(moving.length > 0, JSON.stringify(placed.map((s) => [s.name, s.node])));
    const stays = (await c.list()).find((s) => s.node === "node-2" && s.spec.restart !== "always");
    const died = Date.now();
    await node2!.close(); // no more heartbeats (its stars run on, as after a crash of its control plane)
    await waitFor("node-2 down", async () => ((await c.status()).nodes.find((n) => n.name === "node-2")?.state === "down" ? true : undefined));
    assert.ok(Date.now() - died <= (TTL_S + 2) * 1000, `declared dead ${Date.now() - died} ms after its last beat (TTL ${TTL_S} s)`);
    for (const name of moving) {
      await waitFor(`${name} running on node-1`, async () => {
        const s = await c.star(name).info();
        return s.node === "node-1" && s.status?.state === "running" ? s : undefined;
      });
    }
    if (stays) {
      const s = await c.star(stays.name).info();
      assert.equal(s.node, "node-2", "a star whose restart policy is never is not moved");
      assert.ok((await c.events({ star: stays.name })).some((e) => e.kind === "star.node-dead"), "and an event says why");
    }
    // node-2 back: the copies it still runs were superseded, and it ends them.
    node2 = await startAgentNode({ gossipPort: 0, dataDir: join(dir, "node-2"), log: (l) => log.push(l) });
    const back = Date.now();
    await waitFor("node-2's old copies ended", () => (moving.every((n) => !existsSync(join(dir, "node-2", "runtime", "stars", n))) ? true : undefined));
    assert.ok(Date.now() - back < 5000, `ended ${Date.now() - back} ms after it was back`);
    await waitFor("node-2 up", async () => ((await c.status()).nodes.find((n) => n.name === "node-2")?.state === "up" ? true : undefined));
  });

  it("cordon places nothing new on a node; drain moves its stars away (an exclusive one stopped first); uncordon undoes it", async () => {
    await c.cordon("node-2");
    assert.equal((await c.status()).nodes.find((n) => n.name === "node-2")?.cordoned, true);
    await c.create({ name: "k1", command: ["sleep", "600"], ram_mb: 32 });
    assert.equal((await waitFor("k1 placed", async () => (await c.star("k1").info()).node)), "node-1", "not on the cordoned node");
    await c.uncordon("node-2");
    await c.create({ name: "x1", command: ["sleep", "600"], ram_mb: 32, exclusive: true, restart: "always", stop_grace_ms: 500 });
    await c.create({ name: "x2", command: ["sleep", "600"], ram_mb: 32 });
    const onNode2 = await waitFor("x1 and x2 running on node-2", async () => {
      const l = (await c.list()).filter((s) => s.name === "x1" || s.name === "x2");
      return l.length === 2 && l.every((s) => s.node === "node-2" && s.status?.state === "running") ? l : undefined;
    }).catch(async (err: Error) => {
      const l = (await c.list()).filter((s) => s.name === "x1" || s.name === "x2").map((s) => `${s.name} on ${s.node} ${s.status?.state}`);
      const n = (await c.status()).nodes.map((x) => `${x.name} ${x.state} ${x.gossip?.state ?? "-"}${x.leaseExpired ? " no-heartbeat" : ""} ${x.cordoned ? "cordoned" : ""} stars ${x.used?.stars}`);
      throw new Error(`${err.message}: ${l.join("; ")} | nodes: ${n.join("; ")}`);
    });
    assert.equal(onNode2.length, 2);
    await c.cordon("node-2", { drain: true });
    assert.equal((await c.status()).nodes.find((n) => n.name === "node-2")?.draining, true);
    const moved = await waitFor("x1 and x2 running on node-1", async () => {
      const l = (await c.list()).filter((s) => s.name === "x1" || s.name === "x2");
      return l.every((s) => s.node === "node-1" && s.status?.state === "running") ? l : undefined;
    });
    assert.equal(moved.length, 2);
    const events = await c.events({ star: "x1" });
    const stopAt = events.find((e) => e.kind === "star.stop-requested" && /draining node node-2/.test(e.message))?.at;
    const movedAt = events.find((e) => e.kind === "star.moved")?.at;
    assert.ok(stopAt !== undefined && movedAt !== undefined && stopAt <= movedAt, "the exclusive star was stopped on node-2 before it was moved");
    await waitFor("node-2's copies gone", () => (["x1", "x2"].every((n) => !existsSync(join(dir, "node-2", "runtime", "stars", n))) ? true : undefined));
    await c.uncordon("node-2");
    assert.equal((await c.status()).nodes.find((n) => n.name === "node-2")?.cordoned, undefined);
    await assert.rejects(c.cordon("no-such-node"), /no node named no-such-node/);
  });

  it("a revoked node may not connect again, is dead at once, and its stars run elsewhere; the controller's own node cannot be revoked", async () => {
    await c.create({ name: "r1", command: ["sleep", "600"], ram_mb: 32, restart: "always" });
    await waitFor("r1 on node-2", async () => {
      const s = await c.star("r1").info();
      if (s.node === "node-1") await c.star("r1").remove({ force: true }).then(() => c.create({ name: "r1", command: ["sleep", "600"], ram_mb: 32, restart: "always" }));
      return s.node === "node-2" && s.status?.state === "running" ? s : undefined;
    }).catch(() => undefined);
    const before = await c.star("r1").info();
    await assert.rejects(c.revokeNode("node-1"), /this controller's own: it cannot be revoked/);
    assert.deepEqual(await c.revokeNode("node-2"), { certificates: 1, gossipKeyReplaced: true });
    const n2 = (await c.status()).nodes.find((n) => n.name === "node-2")!;
    assert.equal(n2.state, "down");
    assert.equal(n2.revoked, true);
    await waitFor("its refusal logged", () => (log.some((l) => /certificate of node node-2 .* is revoked/.test(l)) ? true : undefined));
    assert.equal(node2!.connected(), false, "node-2 is cut off for good");
    if (before.node === "node-2") await waitFor("r1 running on node-1", async () => ((await c.star("r1").info()).node === "node-1" ? true : undefined));
    await assert.rejects(c.uncordon("node-2"), /was revoked: it cannot come back/);
  });
});
