/**
 * A node's cluster/ files: read back whole; a damaged or missing file, a key that is not its
 * certificate's, a certificate of another CA, each a clear error naming the file and what to do.
 */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type ClusterFiles, readClusterFiles, writeClusterFiles } from "../../src/cluster/files.js";
import { createCa, createCsr, signCsr } from "../../src/cluster/tls/ca.js";
import { testDir } from "../helpers/dirs.js";

describe("cluster files", () => {
  let dir: string;
  let files: ClusterFiles;
  let other: { cert: string; key: string };
  before(async () => {
    dir = await testDir("constellation-cfiles-");
    const ca = await createCa("prod");
    const { csr, key } = await createCsr("n1");
    const { cert } = await signCsr(ca, csr, { cluster: "prod", node: "n1", role: "controller", addresses: ["127.0.0.1"] });
    files = { name: "prod", node: "n1", role: "controller", caCert: ca.cert, caKey: ca.key, cert, key };
    const ca2 = await createCa("prod");
    const c2 = await createCsr("n1");
    other = { cert: (await signCsr(ca2, c2.csr, { cluster: "prod", node: "n1", role: "controller", addresses: ["127.0.0.1"] })).cert, key: c2.key };
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const fresh = (name: string) => {
    const d = join(dir, name);
    mkdirSync(d);
    writeClusterFiles(d, files);
    return d;
  };

  it("are read back as written", () => {
    assert.deepEqual(readClusterFiles(fresh("ok")), files);
    assert.equal(readClusterFiles(join(dir, "none")), undefined);
  });

  it("a damaged or missing file is a clear error naming it", () => {
    const cases: Array<[string, (d: string) => void, RegExp]> = [
      ["json", (d) => writeFileSync(join(d, "cluster", "cluster.json"), "{"), /cluster\.json is damaged \(not JSON\): restore .* or make this node anew/],
      ["fields", (d) => writeFileSync(join(d, "cluster", "cluster.json"), JSON.stringify({ name: "Prod!", node: "n1", role: "controller" })), /cluster\.json is damaged \(it must name the cluster/],
      ["agent", (d) => writeFileSync(join(d, "cluster", "cluster.json"), JSON.stringify({ name: "prod", node: "n1", role: "agent" })), /cluster\.json is damaged/],
      ["nocrt", (d) => rmSync(join(d, "cluster", "node.crt")), /node\.crt cannot be read \(ENOENT\)/],
      ["badpem", (d) => writeFileSync(join(d, "cluster", "node.crt"), "not a certificate"), /node\.crt is damaged \(not a PEM certificate\)/],
      ["badkey", (d) => writeFileSync(join(d, "cluster", "node.key"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), /node\.key is damaged \(not a PEM key\)/],
      ["otherkey", (d) => writeFileSync(join(d, "cluster", "node.key"), other.key), /node\.key is not the key of node\.crt/],
      ["otherca", (d) => (writeFileSync(join(d, "cluster", "node.crt"), other.cert), writeFileSync(join(d, "cluster", "node.key"), other.key)), /node\.crt is not signed by ca\.crt/],
      ["cakey", (d) => writeFileSync(join(d, "cluster", "ca.key"), other.key), /ca\.key is not the key of ca\.crt/],
    ];
    for (const [name, damage, message] of cases) {
      const d = fresh(name);
      damage(d);
      assert.throws(() => readClusterFiles(d), message, name);
    }
  });
});
