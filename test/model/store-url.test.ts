/** `--store etcd://…` with its TLS files: what is taken, and each mistake said plainly. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseStoreUrl } from "../../src/model/store-url.js";
import { createCa, createCsr, signCsr } from "../../src/cluster/tls/ca.js";
import { tlsFailure } from "../../src/store/etcd/etcd-errors.js";
import { testDir } from "../helpers/dirs.js";

/** A FIFO at `path` (a read of it would block for ever). */
function mkfifoOrSkip(path: string): void {
  spawnSync("mkfifo", [path]);
}

describe("parseStoreUrl", () => {
  let dir: string;
  const at = (n: string) => join(dir, n);
  before(async () => {
    dir = await testDir("constellation-store-url-");
    const ca = await createCa("etcd");
    const sign = async (node: string, now = Date.now()) => {
      const { csr, key } = await createCsr(node);
      return { cert: (await signCsr(ca, csr, { cluster: "etcd", node, role: "controller", addresses: [] }, now)).cert, key };
    };
    const client = await sign("ctl");
    const other = await sign("other");
    const DAY = 86_400_000;
    writeFileSync(at("ca.pem"), ca.cert);
    writeFileSync(at("cert.pem"), client.cert);
    writeFileSync(at("key.pem"), client.key);
    writeFileSync(at("other-key.pem"), other.key);
    const ahead = await sign("ahead", Date.now() + 2 * DAY);
    writeFileSync(at("ahead.pem"), ahead.cert);
    writeFileSync(at("ahead-key.pem"), ahead.key);
    writeFileSync(at("enc.pem"), "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n");
    writeFileSync(at("bad-cert.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    writeFileSync(at("junk"), "hello");
    mkfifoOrSkip(at("fifo"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("plain: http endpoints", () => {
    assert.deepEqual(parseStoreUrl("etcd://10.0.0.1:2379,h2:2379"), { backend: "etcd", endpoints: ["http://10.0.0.1:2379", "http://h2:2379"] });
  });

  it("with --store-ca (and a client certificate): https endpoints and the files' absolute paths", () => {
    const c = parseStoreUrl("etcd://10.0.0.1:2379,https://h2:2379", { ca: at("ca.pem"), cert: at("cert.pem"), key: at("key.pem") });
    assert.deepEqual(c, { backend: "etcd", endpoints: ["https://10.0.0.1:2379", "https://h2:2379"], tls: { ca: at("ca.pem"), cert: at("cert.pem"), key: at("key.pem") } });
    assert.deepEqual(parseStoreUrl("etcd://h:2379", { ca: at("ca.pem") }).tls, { ca: at("ca.pem") });
  });

  it("refuses each mistake with what to do", () => {
    const bad: Array<[string, Parameters<typeof parseStoreUrl>[1], RegExp]> = [
      ["etcd://h:2379", { ca: at("ca.pem"), cert: at("cert.pem") }, /--store-cert and --store-key go together/],
      ["etcd://h:2379", { cert: at("cert.pem"), key: at("key.pem") }, /--store-cert needs --store-ca/],
      ["etcd://http://h:2379", { ca: at("ca.pem") }, /endpoints are https:\/\//],
      ["etcd://https://h:2379", {}, /an https:\/\/ etcd needs --store-ca/],
      ["etcd://h:2379", { ca: at("missing.pem") }, /--store-ca .*missing\.pem: cannot be read \(ENOENT\)/],
      ["etcd://h:2379", { ca: at("junk") }, /--store-ca .*junk: is not the CA certificate .* in PEM/],
      ["etcd://h:2379", { ca: at("ca.pem"), cert: at("key.pem"), key: at("key.pem") }, /--store-cert .*: is not this controller's client certificate/],
      ["etcd://h:2379", { ca: at("ca.pem"), cert: at("cert.pem"), key: at("enc.pem") }, /--store-key .*: is encrypted with a passphrase/],
      ["etcd://h:2379", { ca: at("cert.pem") }, /--store-ca .*: is a certificate but not a CA's/],
      ["etcd://h:2379", { ca: at("bad-cert.pem") }, /--store-ca .*: its PEM does not hold a certificate that parses/],
      ["etcd://h:2379", { ca: "/dev/zero" }, /--store-ca \/dev\/zero: is not a regular file/],
      ["etcd://h:2379", { ca: dir }, /is not a regular file/],
      ["etcd://h:2379", { ca: at("ca.pem"), cert: at("cert.pem"), key: at("other-key.pem") }, /--store-key .*other-key\.pem: is not the key of .*cert\.pem/],
      ["etcd://h:2379", { ca: at("ca.pem"), cert: at("cert.pem"), key: at("junk") }, /--store-key .*: is not a PEM private key that parses/],
      ["etcd://h:2379", { ca: at("ca.pem"), cert: at("ahead.pem"), key: at("ahead-key.pem") }, /--store-cert .*ahead\.pem: is not valid until .* and this machine's clock says .*: is this machine's clock right\?/],
      ["etcd://h:2379", { ca: at("fifo") }, /--store-ca .*fifo: is not a regular file/],
      ["etcd://h:99999", {}, /is not HOST:PORT/],
    ];
    for (const [url, tls, message] of bad) assert.throws(() => parseStoreUrl(url, tls), message, `${url} ${JSON.stringify(tls)}`);
  });
});

describe("tlsFailure", () => {
  it("names the cause and the fix of each TLS failure on the link to etcd", () => {
    assert.match(tlsFailure("14 UNAVAILABLE: ... ssl3_read_bytes:sslv3 alert bad certificate ... SSL alert number 42")!, /refused this controller's client certificate/);
    assert.match(tlsFailure("Last error: Error: unable to verify the first certificate")!, /not signed by --store-ca/);
    assert.match(tlsFailure("Error: certificate has expired")!, /expired.*clock/);
    assert.match(tlsFailure("Error: certificate is not yet valid")!, /not valid yet: is this machine's clock right/);
    assert.equal(tlsFailure("14 UNAVAILABLE: No connection established. Last error: Failed to connect"), undefined);
  });
});
