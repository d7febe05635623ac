/**
 * Only a controller's certificate stands for the HTTPS API: every node of a cluster holds a
 * certificate of the same CA (a join-token holder can get one naming any address), so `login`
 * and the SDK refuse a server whose certificate is not a controller's, even with the address
 * and the CA right. Found by the attack review: a node's certificate took an admin's token.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { createCa, createCsr, fingerprint, signCsr } from "../../src/cluster/tls/ca.js";
import { connect } from "../../src/sdk/client.js";
import { testDir } from "../helpers/dirs.js";

const BIN = fileURLToPath(new URL("../../src/cli/constellation.mjs", import.meta.url));
/** The CLI, run without blocking this process (its servers answer meanwhile). */
const cli = (args: string[], env: NodeJS.ProcessEnv) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [BIN, ...args], { encoding: "utf8", env, timeout: 30_000 }, (err, stdout, stderr) => resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
  );

describe("the HTTPS API's identity", () => {
  let dir: string;
  let ca: { cert: string; key: string };
  const servers: Array<ReturnType<typeof createServer>> = [];
  const asked: string[] = [];
  const serve = async (role: "agent" | "controller") => {
    const { csr, key } = await createCsr(role === "agent" ? "evil" : "ctl");
    const { cert } = await signCsr(ca, csr, { cluster: "prod", node: role === "agent" ? "evil" : "ctl", role, addresses: ["127.0.0.1"] });
    const s = createServer({ cert: `${cert.trim()}\n${ca.cert.trim()}\n`, key }, (req, res) => {
      asked.push(`${req.url} ${req.headers.authorization ?? ""}`);
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ nodes: [], stars: { total: 0, byState: {}, desiredRunning: 0 }, capacity: { cpuCores: 0, memoryBytes: 0 }, revision: 1 }));
    });
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    servers.push(s);
    return `https://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };
  before(async () => {
    dir = await testDir("constellation-loginid-");
    ca = await createCa("prod");
  });
  after(async () => {
    for (const s of servers) s.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("login refuses a node's certificate of the right CA and address, and saves nothing; a controller's passes", async () => {
    const fake = await serve("agent");
    const env = { PATH: process.env.PATH, HOME: join(dir, "home") };
    const r = await cli(["login", fake, "--ca-fingerprint", fingerprint(ca.cert), "--token", "cst_secret"], env);
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /presents a certificate of this cluster that is not a controller's .*nothing was saved/);
    assert.equal(asked.length, 0, "no token was sent");
    assert.equal(existsSync(join(dir, "home", ".config", "constellation", "login.json")), false);
    const real = await serve("controller");
    const ok = await cli(["login", real, "--ca-fingerprint", fingerprint(ca.cert), "--token", "cst_secret"], env);
    assert.equal(ok.status, 0, ok.stderr);
  });

  it("the SDK refuses a node's certificate before sending the token", async () => {
    asked.length = 0;
    const fake = await serve("agent");
    const c = connect({ endpoint: fake, token: "cst_secret", ca: ca.cert });
    await assert.rejects(c.status(), /the certificate of https:\/\/127\.0\.0\.1:\d+ is not a controller's \(evil, agent\)/);
    c.close();
    assert.equal(asked.length, 0, "no token was sent");
  });
});
