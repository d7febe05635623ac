/**
 * An agent that talks to its controller only over RNP, mutual TLS on a real socket (issue 11):
 * it takes its assignments, runs them (fake runtime), reports; its link comes back by itself
 * after the controller's port restarts, and the star ran on meanwhile. The cluster port refuses
 * whoever is not a node of this cluster with a log line, and a node speaks only for itself.
 */
import assert from "node:assert/strict";
import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { connect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { Agent } from "../../src/agent/agent.js";
import { RnpAgentLink, nodeHandlers } from "../../src/cluster/agent-protocol.js";
import { ClusterNodes } from "../../src/cluster/nodes.js";
import { EventLog } from "../../src/controller/events.js";
import { RnpClient } from "../../src/cluster/rnp/client.js";
import { RnpError } from "../../src/cluster/rnp/peer.js";
import { type ClusterServer, serveCluster } from "../../src/cluster/server.js";
import { type CertAndKey, createCa, createCsr, signCsr } from "../../src/cluster/tls/ca.js";
import { type CertRecord, KEYS, type StarObserved, type StarRecord, starKey, statusKey } from "../../src/model/records.js";
import type { NodeLink } from "../../src/model/agent-link.js";
import type { LogLine } from "../../src/model/status.js";
import { FakeRuntime } from "../../src/runtime/fake/fake-runtime.js";
import { openStore } from "../../src/store/open.js";
import type { Store } from "../../src/store/types.js";
import { waitFor } from "../helpers/wait.js";

/** A node certificate, recorded as issued (as a join records it) unless `record` is false. */
async function issue(ca: CertAndKey, cluster: string, node: string, role: "controller" | "agent", store?: Store, signedAt = Date.now()): Promise<CertAndKey & { serial: string }> {
  const { csr, key } = await createCsr(node);
  const signed = await signCsr(ca, csr, { cluster, node, role, addresses: ["127.0.0.1"] }, signedAt);
  if (store) await store.put(`${KEYS.certs}${signed.serial}`, JSON.stringify({ node, role, issuedAt: Date.now(), notAfter: signed.notAfter } satisfies CertRecord));
  return { cert: signed.cert, key, serial: signed.serial };
}

describe("an agent over RNP", () => {
  let store: Store;
  let ca: CertAndKey;
  let ctl: CertAndKey;
  let server: ClusterServer;
  const log: string[] = [];
  // Where the controller's records put each star (the test's own, kept by hand).
  const placed = new Map<string, string>();
  const nodes = new ClusterNodes(undefined, (star) => placed.get(star.name));
  const start = (port = 0) => serveCluster({ store, cluster: "prod", caCert: ca.cert, ...ctl, host: "127.0.0.1", port, log: (l) => log.push(l), heartbeatMs: 500, nodes });
  const dialer = (port: () => number, mine: CertAndKey, caCert = ca.cert) => () =>
    new Promise<Duplex>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port: port(), ...mine, ca: caCert, servername: "controller", checkServerIdentity: () => undefined, minVersion: "TLSv1.3" });
      s.once("secureConnect", () => resolve(s));
      s.once("error", reject);
    });

  before(async () => {
    store = await openStore({ backend: "sqlite", path: ":memory:" });
    ca = await createCa("prod");
    ctl = await issue(ca, "prod", "controller", "controller");
    server = await start();
  });
  after(async () => {
    if (process.env.DEBUG_LOG) console.log(log.join("\n"));
    await server.close();
    await store.close();
  });

  it("runs what it is assigned and reports it; comes back by itself when the controller's port restarts", async () => {
    const mine = await issue(ca, "prod", "node-2", "agent", store);
    let port = server.port;
    // The agent answers the controller's questions about its stars on the same connection.
    const asked: NodeLink = { logs: (s, o) => agent.logs(s, o), usage: (s) => agent.usage(s), unsentStatus: (s) => agent.unsentStatus(s) };
    const client = new RnpClient({ dial: dialer(() => port, mine), hello: { node: "node-2" }, backoffMs: { min: 20, max: 200 }, heartbeatMs: 500, handlers: nodeHandlers(asked) });
    const runtime = new FakeRuntime();
    const agent: Agent = new Agent({
      link: new RnpAgentLink(client),
      node: { name: "node-2", cpuCores: 2, memoryBytes: 2 ** 31, runtimes: ["process"], limitsEnforced: true, startedAt: Date.now() },
      runtimes: { process: runtime },
      retryMs: 50,
      sampleMs: 50,
    });
    try {
      await agent.start();
      assert.ok(await store.get("/constellation/nodes/node-2"), "its node record, written by the controller for it");
      const record: StarRecord = { name: "web", uid: "u1", spec: { name: "web", command: ["sleep", "9"] }, desired: "running", node: "node-2", createdAt: 0, generation: 1 };
      await store.put(starKey("web"), JSON.stringify(record));
      await waitFor("its report of the star running", async () => {
        const kv = await store.get(statusKey("web"));
        return kv && (JSON.parse(kv.value) as StarObserved).status.state === "running" ? true : undefined;
      });
      // Its events (node up, the star started) came over RNP, recorded as the node's.
      const told = await new EventLog(store, "test").list();
      assert.ok(told.some((e) => e.kind === "node.up" && e.node === "node-2"), `node-2's node.up event: ${JSON.stringify(told)}`);
      assert.ok(told.some((e) => e.star === "web" && e.node === "node-2"), "an event of star web from node-2");
      // The controller's API asks for the star's logs and usage: from its node, over RNP.
      placed.set("web", "node-2");
      runtime.log("web", "hello from node-2");
      runtime.log("web", "second line", "stderr");
      const lines: LogLine[] = [];
      for await (const l of nodes.logs({ name: "web", uid: "u1" })) lines.push(l);
      assert.deepEqual(lines, [{ stream: "stdout", line: "hello from node-2" }, { stream: "stderr", line: "second line" }]);
      const abort = new AbortController();
      const following = (async () => {
        const got: string[] = [];
        for await (const l of nodes.logs({ name: "web", uid: "u1" }, { follow: true, signal: abort.signal })) got.push(l.line);
        return got;
      })();
      await new Promise((r) => setTimeout(r, 100));
      abort.abort();
      assert.equal((await following).length, 2, "a follow ends when its caller goes");
      for await (const l of nodes.logs({ name: "web", uid: "another" })) assert.fail(`an earlier star's line: ${l.line}`);
      runtime.setUsage("web", { cpuUsageUsec: 0, memoryBytes: 12_345_678, pids: 1 });
      await waitFor("its usage, sent by its node", () => (nodes.usage({ name: "web", uid: "u1" })?.memoryBytes === 12_345_678 ? true : undefined));
      assert.equal(nodes.usage({ name: "web", uid: "another" }), undefined, "not an earlier star's");
      // The controller's port goes away and comes back (on another port): the agent's link
      // comes back by itself, and the star ran on meanwhile.
      const before = runtime.status("web")?.pid;
      await server.close();
      server = await start();
      port = server.port;
      await waitFor("the link back", () => (client.connected && server.connected().includes("node-2") ? true : undefined));
      assert.equal(runtime.status("web")?.pid, before, "the same run, not a restart");
      assert.equal(runtime.status("web")?.state, "running");
      await store.put(starKey("web"), JSON.stringify({ ...record, desired: "stopped", generation: 2 }));
      await waitFor("the stop, over the new connection", async () => {
        const kv = await store.get(statusKey("web"));
        const o = kv ? (JSON.parse(kv.value) as StarObserved) : undefined;
        return o?.generation === 2 && o.status.state === "stopped" ? true : undefined;
      });
    } finally {
      await agent.stop();
      client.close();
      await runtime.close();
    }
  });

  it("a node speaks only for itself; bad bodies are refused with what was wrong", async () => {
    const mine = await issue(ca, "prod", "node-3", "agent", store);
    const client = new RnpClient({ dial: dialer(() => server.port, mine) });
    try {
      await assert.rejects(
        client.call("agent.report", { name: "web", observed: { uid: "u1", node: "node-2", status: { id: "web", name: "web", state: "failed", restarts: 0, ready: false, limitsEnforced: true, limits: {} }, generation: 9, updatedAt: 1 } }),
        (e: unknown) => e instanceof RnpError && e.code === "forbidden" && /node node-3 may not report for node node-2/.test(e.message),
      );
      // node-2's star "web": node-3 may not report on it, nor take or drop its tokens
      await assert.rejects(
        client.call("agent.report", { name: "web", observed: { uid: "u1", node: "node-3", status: { id: "web", name: "web", state: "failed", restarts: 0, ready: false, limitsEnforced: true, limits: {} }, generation: 9, updatedAt: 1 } }),
        (e: unknown) => e instanceof RnpError && e.code === "forbidden" && /may not report on star web/.test(e.message),
      );
      await assert.rejects(client.call("agent.starToken", { name: "web", uid: "u1", keepOld: false }), (e: unknown) => e instanceof RnpError && e.code === "not-found");
      await assert.rejects(client.call("agent.dropStarTokens", { name: "web" }), (e: unknown) => e instanceof RnpError && e.code === "forbidden");
      await assert.rejects(client.call("agent.report", { name: "web" }), (e: unknown) => e instanceof RnpError && e.code === "bad-request" && /agent.report: observed/.test(e.message));
      await assert.rejects(client.call("agent.putNode", { name: "node-2" }), (e: unknown) => e instanceof RnpError && e.code === "bad-request");
      await assert.rejects(client.call("store.get", {}), (e: unknown) => e instanceof RnpError && e.code === "not-found");
    } finally {
      client.close();
    }
  });

  it("refuses, with a log line, a client of another CA, of another cluster, with a certificate the controller did not issue or one expired, without a certificate (no joins here), speaking TLS 1.2, or not speaking TLS", async () => {
    log.length = 0;
    const other = await createCa("prod");
    const attempts: Array<[string, () => Promise<unknown>]> = [
      ["another CA", dialer(() => server.port, await issue(other, "prod", "node-x", "agent"), ca.cert)],
      ["another cluster", dialer(() => server.port, await issue(ca, "staging", "node-y", "agent", store))],
      ["not issued by the controller", dialer(() => server.port, await issue(ca, "prod", "node-z", "agent"))],
      // Issued (and recorded) 100 days ago for 90 days: expired 10 days ago.
      ["expired", dialer(() => server.port, await issue(ca, "prod", "node-old", "agent", store, Date.now() - 100 * 86_400_000))],
      [
        "TLS 1.2",
        () =>
          new Promise((resolve, reject) => {
            const s = connect({ host: "127.0.0.1", port: server.port, ...ctl, ca: ca.cert, checkServerIdentity: () => undefined, maxVersion: "TLSv1.2" });
            s.once("secureConnect", () => resolve(s));
            s.once("error", reject);
          }),
      ],
      [
        "no certificate",
        () =>
          new Promise((resolve, reject) => {
            const s = connect({ host: "127.0.0.1", port: server.port, ca: ca.cert, checkServerIdentity: () => undefined });
            s.once("secureConnect", () => resolve(s));
            s.once("error", reject);
          }),
      ],
    ];
    for (const [, dial] of attempts) {
      const s = (await dial().catch(() => undefined)) as Socket | undefined;
      if (s) await new Promise((resolve) => (s.destroyed ? resolve(undefined) : s.once("close", resolve)));
    }
    const plain = new Socket();
    await new Promise<void>((resolve) => plain.connect(server.port, "127.0.0.1", resolve));
    plain.end("GET / HTTP/1.1\r\n\r\n");
    await new Promise((resolve) => plain.once("close", resolve));
    await waitFor("seven refusals logged", () => (log.filter((l) => /refused/.test(l)).length >= 7 ? true : undefined));
    const text = log.join("\n");
    assert.match(text, /no certificate of this cluster's CA/);
    assert.match(text, /no certificate, and this controller admits no joins/);
    assert.match(text, /the certificate of node node-z \(serial [0-9a-f]+\) was not issued by this cluster's controller/);
    assert.match(text, /for cluster "staging", this is "prod"/);
    assert.match(text, /node node-old's certificate has expired \(at .*\) and this machine's clock says/);
    assert.match(text, /refused 127\.0\.0\.1:\d+: it speaks a TLS version older than 1\.3/);
    assert.match(text, /refused 127\.0\.0\.1:\d+: it speaks plain HTTP, not TLS/);
    assert.doesNotMatch(text, /SSL routines/, "no OpenSSL text");
    assert.doesNotMatch(text, /at .*\.js:\d+/, "no stack traces");
  });
  it("a flood of connections from one address takes the port from no one else: past the cap they are closed with a log line", async () => {
    const flood: string[] = [];
    const capped = await serveCluster({ store, cluster: "prod", caCert: ca.cert, ...ctl, host: "0.0.0.0", port: 0, log: (l) => flood.push(l), maxPendingPerAddress: 3 });
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = new Socket();
        await new Promise<void>((resolve) => s.connect(capped.port, "127.0.0.1", resolve));
        held.push(s);
      }
      const fourth = new Socket();
      await new Promise<void>((resolve) => fourth.connect(capped.port, "127.0.0.1", resolve));
      await new Promise((resolve) => (fourth.destroyed ? resolve(undefined) : fourth.once("close", resolve)));
      await waitFor("the refusal logged", () => flood.find((l) => /refused 127\.0\.0\.1: 3 connections from it are not yet a node's/.test(l)));
      // A node from another address connects meanwhile.
      const mine = await issue(ca, "prod", "node-q", "agent", store);
      const tcp = new Socket();
      await new Promise<void>((resolve) => tcp.connect({ port: capped.port, host: "127.0.0.1", localAddress: "127.0.0.2" }, resolve));
      const s = connect({ socket: tcp, ...mine, ca: ca.cert, checkServerIdentity: () => undefined, minVersion: "TLSv1.3" });
      s.on("error", () => undefined);
      await waitFor("node-q connected", () => (capped.connected().includes("node-q") ? true : undefined));
      s.destroy();
    } finally {
      for (const s of held) s.destroy();
      await capped.close();
    }
  });
});
