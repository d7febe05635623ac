/** `--store etcd://…` with its TLS files: what is taken, and each mistake said plainly. */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseStoreUrl } from "../../src/model/store-url.js";
import { tlsFailure } from "../../src/store/etcd/etcd-errors.js";
import { testDir } from "../helpers/dirs.js";

describe("parseStoreUrl", () => {
  let dir: string;
  const at = (n: string) => join(dir, n);
  before(async () => {
    dir = await testDir("constellation-store-url-");
    writeFileSync(at("ca.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    writeFileSync(at("cert.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    writeFileSync(at("key.pem"), "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n");
    writeFileSync(at("enc.pem"), "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n");
    writeFileSync(at("junk"), "hello");
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
