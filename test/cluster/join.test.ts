/**
 * Joining with a token (src/cluster/join.ts) over a real TLS socket: the node checks the
 * controller against the CA its token names before sending anything; the controller checks the
 * token (known, unexpired, not revoked, this CA's) and the name (not in use), signs a
 * certificate with the names it chose, and the node then connects with it; a revoked
 * certificate is refused on its next connection.
 */
import assert from "node:assert/strict";
import type { Duplex } from "node:stream";
import type { AddressInfo } from "node:net";
import { connect, createServer as createTlsServer } from "node:tls";
import { after, before, describe, it } from "node:test";
import { admit, createJoinToken, joinCluster, listJoinTokens, parseJoinToken, renew, revokeJoinToken } from "../../src/cluster/join.js";
import { RnpClient } from "../../src/cluster/rnp/client.js";
import { RnpError } from "../../src/cluster/rnp/peer.js";
import { type ClusterServer, serveCluster } from "../../src/cluster/server.js";
import { type CertAndKey, createCa, createCsr, identityOf, signCsr } from "../../src/cluster/tls/ca.js";
import { dialController } from "../../src/cluster/dial.js";
import { type CertRecord, KEYS, nodeKey } from "../../src/model/records.js";
import { openStore } from "../../src/store/open.js";
import type { Store } from "../../src/store/types.js";
import { waitFor } from "../helpers/wait.js";

describe("joining a cluster", () => {
  let store: Store;
  let ca: CertAndKey;
  let server: ClusterServer;
  const log: string[] = [];
  const address = () => `127.0.0.1:${server.port}`;

  before(async () => {
    store = await openStore({ backend: "sqlite", path: ":memory:" });
    ca = await createCa("prod");
    const { csr, key } = await createCsr("ctl");
    const ctl = { cert: (await signCsr(ca, csr, { cluster: "prod", node: "ctl", role: "controller", addresses: ["127.0.0.1"] })).cert, key };
    server = await serveCluster({ store, cluster: "prod", caCert: ca.cert, ...ctl, host: "127.0.0.1", port: 0, log: (l) => log.push(l), join: (body) => admit(store, ca, "prod", body) });
  });
  after(async () => {
    await server.close();
    await store.close();
  });

  const refusedWith = (code: string, re: RegExp) => (e: unknown) => {
    assert.ok(e instanceof RnpError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  };

  it("a node joins with a token, gets a certificate with the names the controller chose, and connects with it", async () => {
    const { token, id } = await createJoinToken(store, ca.cert);
    assert.ok(parseJoinToken(token));
    const joined = await joinCluster({ address: address(), token, node: "node-2", addresses: ["10.0.0.11"] });
    assert.equal(joined.cluster, "prod");
    assert.equal(joined.caCert, ca.cert);
    const who = identityOf(joined.cert)!;
    assert.deepEqual([who.node, who.role, who.cluster], ["node-2", "agent", "prod"]);
    const issued = JSON.parse((await store.get(`${KEYS.certs}${who.serial}`))!.value) as CertRecord;
    assert.equal(issued.joinToken, id);
    // with it, a connection to the agent methods
    const dial = () =>
      new Promise<Duplex>((resolve, reject) => {
        const s = connect({ host: "127.0.0.1", port: server.port, cert: joined.cert, key: joined.key, ca: joined.caCert, checkServerIdentity: () => undefined });
        s.once("secureConnect", () => resolve(s));
        s.once("error", reject);
      });
    const client = new RnpClient({ dial });
    try {
      assert.deepEqual(await client.call("agent.reports", null, { timeoutMs: 5000 }), []);
      // revoked: refused at its next connection
      await store.put(`${KEYS.certs}${who.serial}`, JSON.stringify({ ...issued, revokedAt: Date.now() }));
      log.length = 0;
      const again = new RnpClient({ dial, backoffMs: { min: 1000, max: 1000 } });
      await waitFor("the refusal", () => (log.some((l) => /certificate of node node-2 .* is revoked/.test(l)) ? true : undefined));
      again.close();
    } finally {
      client.close();
    }
  });

  it("refuses a token that is not one, unknown, expired, revoked, or another CA's; and a name in use", async () => {
    const good = await createJoinToken(store, ca.cert);
    await assert.rejects(joinCluster({ address: address(), token: "hello", node: "n-a" }), refusedWith("unauthorized", /not one: copy it whole/));
    const t = parseJoinToken(good.token)!;
    const unknown = `cjt1.${t.caFingerprint}.${"0".repeat(12)}.${t.secret}`;
    await assert.rejects(joinCluster({ address: address(), token: unknown, node: "n-b" }), refusedWith("unauthorized", /not known to this cluster/));
    const wrongSecret = `cjt1.${t.caFingerprint}.${t.id}.${"A".repeat(43)}`;
    await assert.rejects(joinCluster({ address: address(), token: wrongSecret, node: "n-c" }), refusedWith("unauthorized", /not known to this cluster/));
    const expired = await createJoinToken(store, ca.cert, { ttlSeconds: -1 });
    await assert.rejects(joinCluster({ address: address(), token: expired.token, node: "n-d" }), refusedWith("unauthorized", /expired at/));
    const revoked = await createJoinToken(store, ca.cert);
    assert.equal(await revokeJoinToken(store, revoked.id), true);
    await assert.rejects(joinCluster({ address: address(), token: revoked.token, node: "n-e" }), refusedWith("unauthorized", /was revoked/));
    assert.ok((await listJoinTokens(store)).some((r) => r.id === revoked.id && r.revokedAt !== undefined));
    await store.put(nodeKey("taken"), JSON.stringify({ name: "taken" }));
    await assert.rejects(joinCluster({ address: address(), token: good.token, node: "taken" }), refusedWith("conflict", /a node named taken is already in the cluster/));
    await assert.rejects(joinCluster({ address: address(), token: good.token, node: "Bad_Name" }), refusedWith("bad-request", /DNS label/));
    // a token of another cluster's CA: the node refuses this controller before sending anything
    const other = await createCa("prod");
    const foreign = await createJoinToken(store, other.cert);
    await assert.rejects(joinCluster({ address: address(), token: foreign.token, node: "n-f" }), refusedWith("unauthorized", /not a controller of the cluster this token is for/));
    await assert.rejects(joinCluster({ address: "127.0.0.1", token: good.token, node: "n-g" }), refusedWith("bad-request", /is not HOST:PORT/));
    // nothing was issued for any of them
    const { kvs } = await store.range({ prefix: KEYS.certs });
    const names = kvs.map((kv) => (JSON.parse(kv.value) as CertRecord).node);
    assert.deepEqual(names.filter((n) => n !== "node-2"), []);
  });

  it("a client without a certificate may only ask to join: no agent method is there for it", async () => {
    const client = new RnpClient({
      dial: () =>
        new Promise<Duplex>((resolve, reject) => {
          const s = connect({ host: "127.0.0.1", port: server.port, ca: ca.cert, checkServerIdentity: () => undefined, minVersion: "TLSv1.3" });
          s.once("secureConnect", () => resolve(s));
          s.once("error", reject);
        }),
    });
    try {
      for (const method of ["agent.reports", "agent.assignments", "agent.heartbeat", "cluster.renew"]) {
        await assert.rejects(client.call(method, null, { timeoutMs: 5000 }), refusedWith("not-found", new RegExp(`no method "${method.replace(".", "\\.")}" here`)));
      }
      // Joining is what it may do (here with no certificate request: refused for that).
      await assert.rejects(client.call("cluster.join", { token: "hello", node: "x" }, { timeoutMs: 5000 }), refusedWith("bad-request", /csr/));
    } finally {
      client.close();
    }
  });

  it("one name, one node: of joins under one name at once exactly one wins, and a later one is refused; addresses must be IPs or names", async () => {
    const good = await createJoinToken(store, ca.cert);
    const tries = await Promise.allSettled(Array.from({ length: 5 }, () => joinCluster({ address: address(), token: good.token, node: "victim" })));
    assert.equal(tries.filter((r) => r.status === "fulfilled").length, 1, "exactly one certificate for the name");
    for (const r of tries) if (r.status === "rejected") assert.match(String(r.reason), /a node named victim is already in the cluster/);
    await assert.rejects(joinCluster({ address: address(), token: good.token, node: "victim" }), refusedWith("conflict", /already in the cluster/));
    for (const bad of ["*", "*.example.com", "a\u0000b", "-x.example"]) {
      await assert.rejects(joinCluster({ address: address(), token: good.token, node: "n-addr", addresses: [bad] }), refusedWith("bad-request", /an IP address or a DNS name/));
    }
    // refused addresses took no name
    const ok = await joinCluster({ address: address(), token: good.token, node: "n-addr", addresses: ["10.0.0.5", "node.example.com"] });
    assert.ok(ok.cert.includes("BEGIN CERTIFICATE"));
  });

  it("a joining node gives its token only to a controller: a node's certificate of the same CA gets nothing", async () => {
    const { csr, key } = await createCsr("impostor");
    const signed = await signCsr(ca, csr, { cluster: "prod", node: "impostor", role: "agent", addresses: ["127.0.0.1"] });
    let received = 0;
    const fake = createTlsServer({ cert: `${signed.cert.trimEnd()}\n${ca.cert.trimEnd()}\n`, key, minVersion: "TLSv1.3" }, (sock) => sock.on("data", (d: Buffer) => (received += d.length)));
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r));
    try {
      const good = await createJoinToken(store, ca.cert);
      await assert.rejects(joinCluster({ address: `127.0.0.1:${(fake.address() as AddressInfo).port}`, token: good.token, node: "n-imp" }), refusedWith("unauthorized", /a node of the cluster this token is for, not its controller/));
      assert.equal(received, 0, "nothing was sent to it");
    } finally {
      fake.close();
    }
  });

  it("a clock far off is named: a controller's certificate not yet valid or expired here, a node's at the controller", async () => {
    const DAY = 86_400_000;
    // The controller's certificate is dated two days ahead: as a node whose clock lags two days sees it.
    const { csr, key } = await createCsr("ctl-ahead");
    const ahead = { cert: (await signCsr(ca, csr, { cluster: "prod", node: "ctl-ahead", role: "controller", addresses: ["127.0.0.1"] }, Date.now() + 2 * DAY)).cert, key };
    const n = await createCsr("n-clock");
    const nodeCert = { cert: (await signCsr(ca, n.csr, { cluster: "prod", node: "n-clock", role: "agent", addresses: ["127.0.0.1"] })).cert, key: n.key };
    const other = await serveCluster({ store, cluster: "prod", caCert: ca.cert, ...ahead, host: "127.0.0.1", port: 0, log: () => undefined, join: (body) => admit(store, ca, "prod", body) });
    try {
      const good = await createJoinToken(store, ca.cert);
      await assert.rejects(
        joinCluster({ address: `127.0.0.1:${other.port}`, token: good.token, node: "n-lag" }),
        refusedWith("unauthorized", /the controller's \(127\.0\.0\.1:\d+\) certificate is not valid yet \(from \d{4}-.*\) and this machine's clock says .*: is this machine's clock right/),
      );
      // A node's dial (the agent's) says the same.
      await assert.rejects(
        dialController({ host: "127.0.0.1", port: other.port, ...nodeCert, ca: ca.cert, cluster: "prod", timeoutMs: 3000, target: "c:1" }),
        /^Error: the controller's \(c:1\) certificate is not valid yet \(from \d{4}-.*\) and this machine's clock says .*: is this machine's clock right/,
      );
      // ...and a controller of another cluster, or a node's certificate, is not taken.
      await assert.rejects(dialController({ host: "127.0.0.1", port: server.port, ...nodeCert, ca: ca.cert, cluster: "other", timeoutMs: 3000, target: "c:2" }), /c:2 is not a controller of cluster other/);
      const foreign = await createCa("prod");
      await assert.rejects(dialController({ host: "127.0.0.1", port: server.port, ...nodeCert, ca: foreign.cert, cluster: "prod", timeoutMs: 3000, target: "c:3" }), /c:3's certificate is not one of this cluster's CA \(/);
      const s = await dialController({ host: "127.0.0.1", port: server.port, ...nodeCert, ca: ca.cert, cluster: "prod", timeoutMs: 3000, target: "c:4" });
      s.destroy();
      // Another CA's certificate that is also out of date is another CA's, not a clock's problem.
      await assert.rejects(dialController({ host: "127.0.0.1", port: other.port, ...nodeCert, ca: foreign.cert, cluster: "prod", timeoutMs: 3000, target: "c:5" }), /^Error: c:5's certificate is not one of this cluster's CA \(/);
    } finally {
      await other.close();
    }
    // At the controller: a node's certificate dated ahead, and one expired, refused with the clock named.
    for (const [node, at, said] of [
      ["n-ahead", Date.now() + 2 * DAY, /refused .*: node n-ahead's certificate is not valid yet \(from .*\) and this machine's clock says .*: is this machine's clock right/],
      ["n-old", Date.now() - 100 * DAY, /refused .*: node n-old's certificate has expired \(at .*\) and this machine's clock says/],
      ["n-alien", Date.now() - 100 * DAY, /refused .*: no certificate of this cluster's CA \(CERT_HAS_EXPIRED\)/],
    ] as const) {
      const n = await createCsr(node);
      const cert = (await signCsr(node === "n-alien" ? await createCa("prod") : ca, n.csr, { cluster: "prod", node, role: "agent", addresses: ["127.0.0.1"] }, at)).cert;
      log.length = 0;
      const s = connect({ host: "127.0.0.1", port: server.port, cert, key: n.key, ca: ca.cert, checkServerIdentity: () => undefined, minVersion: "TLSv1.3" });
      s.on("error", () => undefined);
      await waitFor(`the refusal of ${node}`, () => (log.some((l) => said.test(l)) ? true : undefined));
      s.destroy();
    }
  });
});

describe("renewing a certificate (cluster.renew)", () => {
  let store: Store;
  let ca: CertAndKey;
  before(async () => {
    store = await openStore({ backend: "sqlite", path: ":memory:" });
    ca = await createCa("prod");
  });
  after(async () => store.close());

  const issued = async (node: string, serial: string, ageMs: number, lifeMs: number) => {
    const now = Date.now();
    await store.put(`${KEYS.certs}${serial}`, JSON.stringify({ node, role: "agent", issuedAt: now - ageMs, notAfter: now - ageMs + lifeMs } satisfies CertRecord));
  };
  const certsOf = async (node: string) => (await store.range({ prefix: KEYS.certs })).kvs.map((kv) => JSON.parse(kv.value) as CertRecord).filter((c) => c.node === node);
  const DAY = 86_400_000;

  it("is refused before half the certificate's life: a node cannot have certificates signed without end", async () => {
    await issued("n1", "1a", 0, 90 * DAY);
    const { csr } = await createCsr("n1");
    await assert.rejects(renew(store, ca, "prod", "n1", "1a", { csr }), /not due for renewal before/);
    assert.equal((await certsOf("n1")).length, 1);
  });

  it("when due, of two at once exactly one is signed and the old one points to it", async () => {
    await issued("n2", "2a", 61 * DAY, 90 * DAY);
    const { csr } = await createCsr("n2");
    const results = await Promise.allSettled([renew(store, ca, "prod", "n2", "2a", { csr }), renew(store, ca, "prod", "n2", "2a", { csr })]);
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1, JSON.stringify(results.map((r) => r.status === "rejected" && String(r.reason))));
    const certs = await certsOf("n2");
    assert.equal(certs.length, 2);
    assert.ok(certs.some((c) => c.renewedTo !== undefined && c.revokedAt !== undefined));
  });

  it("is refused for a revoked node, even with a certificate not yet marked revoked", async () => {
    await issued("n3", "3a", 61 * DAY, 90 * DAY);
    await store.put(`${KEYS.cordons}n3`, JSON.stringify({ at: Date.now(), drain: false, revoked: true }));
    const { csr } = await createCsr("n3");
    await assert.rejects(renew(store, ca, "prod", "n3", "3a", { csr }), /node n3 is revoked/);
    assert.equal((await certsOf("n3")).length, 1);
  });
});
