/**
 * The cluster CA (src/cluster/tls/ca.ts), checked by the parties that matter: Node's own X.509
 * parser and a real TLS 1.3 handshake with mutual authentication (a certificate of another
 * cluster's CA, or none, is refused), and `openssl verify` where it is installed.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer } from "node:tls";
import { describe, it } from "node:test";
import { BACKDATE_MS, CertificateError, createCa, createCsr, fingerprint, identityOf, renewAt, signCsr } from "../../src/cluster/tls/ca.js";

describe("the cluster CA", () => {
  it("a certificate's serial reads back as issued, whatever its first byte (DER drops a leading zero: 1 node in 256 was refused)", async () => {
    const ca = await createCa("production");
    const { csr } = await createCsr("node-9");
    for (let i = 0; i < 300; i++) {
      const signed = await signCsr(ca, csr, { cluster: "production", node: "node-9", role: "agent", addresses: [] });
      assert.equal(identityOf(signed.cert)?.serial, signed.serial);
      assert.match(signed.serial, /^[1-7][0-9a-f]{31}$/);
    }
  });

  it("signs a node's request with the names it chose; Node and openssl verify the chain", async () => {
    const ca = await createCa("production");
    const { csr, key } = await createCsr("node-2");
    const signed = await signCsr(ca, csr, { cluster: "production", node: "node-2", role: "agent", addresses: ["10.0.0.11", "node-2.internal"] });
    const cert = new X509Certificate(signed.cert);
    assert.ok(cert.verify(new X509Certificate(ca.cert).publicKey), "signed by the CA");
    assert.ok(cert.checkIssued(new X509Certificate(ca.cert)));
    assert.match(cert.subject, /CN=node-2/);
    assert.match(cert.subjectAltName ?? "", /IP Address:10\.0\.0\.11/);
    assert.match(cert.subjectAltName ?? "", /DNS:node-2\.internal/);
    assert.equal(new X509Certificate(ca.cert).ca, true);
    assert.equal(cert.ca, false);
    const id = identityOf(signed.cert);
    assert.deepEqual(id, { node: "node-2", role: "agent", cluster: "production", serial: signed.serial, notAfter: Math.floor(signed.notAfter / 1000) * 1000, notBefore: id?.notBefore });
    // Valid from a little before it was made (clocks that lag), renewed at two thirds of its life from then.
    assert.ok(Math.abs(id!.notBefore - (Date.now() - BACKDATE_MS)) < 60_000);
    const issued = id!.notBefore + BACKDATE_MS;
    assert.ok(Math.abs(renewAt(signed.cert) - (issued + ((id!.notAfter - issued) * 2) / 3)) < 1);
    assert.match(fingerprint(ca.cert), /^[0-9a-f]{64}$/);
    assert.ok(key.includes("BEGIN PRIVATE KEY"));
    const openssl = spawnSync("openssl", ["version"]);
    if (openssl.status === 0) {
      const d = await mkdtemp(join(tmpdir(), "constellation-ca-"));
      await writeFile(join(d, "ca.pem"), ca.cert);
      await writeFile(join(d, "node.pem"), signed.cert);
      const v = spawnSync("openssl", ["verify", "-CAfile", join(d, "ca.pem"), "-purpose", "sslclient", join(d, "node.pem")], { encoding: "utf8" });
      assert.equal(v.status, 0, v.stderr + v.stdout);
      await rm(d, { recursive: true, force: true });
    }
  });

  it("refuses a request that is not one, or is not signed by its key", async () => {
    const ca = await createCa("c");
    const id = { cluster: "c", node: "n", role: "agent" as const, addresses: [] };
    await assert.rejects(signCsr(ca, "not a request", id), CertificateError);
    const { csr } = await createCsr("n");
    const der = Buffer.from(csr.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
    der[der.length - 5] = der[der.length - 5]! ^ 0xff; // flipped bits in the signature
    const broken = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(signCsr(ca, broken, id), (e: unknown) => e instanceof CertificateError);
  });

  it("mutual TLS 1.3: two nodes of the CA talk; a certificate of another CA, or none, is refused", async () => {
    const ca = await createCa("prod");
    const other = await createCa("prod"); // same name, another CA
    const issue = async (c: typeof ca, node: string, role: "controller" | "agent") => {
      const { csr, key } = await createCsr(node);
      return { cert: (await signCsr(c, csr, { cluster: "prod", node, role, addresses: ["127.0.0.1"] })).cert, key };
    };
    const srv = await issue(ca, "ctl", "controller");
    const good = await issue(ca, "node-1", "agent");
    const rogue = await issue(other, "node-1", "agent");
    const server = createServer({ ...srv, ca: ca.cert, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" }, (s) => {
      s.end(`hello ${identityOf(s.getPeerCertificate().raw)?.node}`);
    });
    server.on("tlsClientError", () => undefined);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const talk = (opts: { cert?: string; key?: string; ca: string }) =>
      new Promise<string>((resolve, reject) => {
        const s = connect({ port, host: "127.0.0.1", ...opts, servername: "ctl", minVersion: "TLSv1.3" }, () => undefined);
        let out = "";
        s.on("data", (d: Buffer) => (out += d.toString()));
        s.on("end", () => resolve(out));
        s.on("error", reject);
      });
    try {
      assert.equal(await talk({ ...good, ca: ca.cert }), "hello node-1");
      // (in TLS 1.3 the server judges the client's certificate after the client's side of the
      // handshake is done: the client sees an alert or the connection end with nothing said)
      const refused = (p: Promise<string>) => p.then((out) => assert.equal(out, ""), (e: Error) => assert.match(e.message, /certificate|alert|reset|socket/i));
      await refused(talk({ ...rogue, ca: ca.cert }));
      await refused(talk({ ca: ca.cert }));
      // and the client refuses a server of another CA
      await assert.rejects(talk({ ...good, ca: other.cert }), /self-signed|unable to verify|certificate/i);
    } finally {
      server.close();
    }
  });
});
