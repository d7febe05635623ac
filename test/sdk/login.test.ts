/**
 * The login file of `constellation login`: written whole and only for its user; a file that is
 * not a login is a clear error naming it, and the SDK uses a login only when no constellation
 * runs from this machine's data dir.
 */
import assert from "node:assert/strict";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { resolveConnection } from "../../src/sdk/client.js";
import { readLogin, writeLogin } from "../../src/sdk/login.js";
import { createCa } from "../../src/cluster/tls/ca.js";
import { testDir } from "../helpers/dirs.js";

let CA = "";

describe("login file", () => {
  let dir: string;
  const saved = { ...process.env };
  before(async () => {
    dir = await testDir("constellation-login-");
    CA = (await createCa("prod")).cert;
  });
  after(async () => {
    process.env = saved;
    await rm(dir, { recursive: true, force: true });
  });

  it("is written 0600 in a 0700 directory and read back", () => {
    const file = join(dir, "cfg", "constellation", "login.json");
    writeLogin({ endpoint: "https://10.0.0.10:7443", token: "cst_x", ca: CA, caFingerprint: "ab".repeat(32), at: 1 }, file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, "cfg", "constellation")).mode & 0o777, 0o700);
    assert.equal(readLogin(file)?.endpoint, "https://10.0.0.10:7443");
    assert.equal(readLogin(join(dir, "none.json")), undefined);
  });

  it("a file that is not a login is refused with its name and what to do", () => {
    const file = join(dir, "bad.json");
    writeFileSync(file, "{not json");
    assert.throws(() => readLogin(file), /bad\.json is not a login \(not JSON\): run constellation login again, or remove it/);
    writeFileSync(file, JSON.stringify({ endpoint: "http://plain", token: "t", ca: CA }));
    assert.throws(() => readLogin(file), /bad\.json is not a login \(endpoint, token and ca are missing or wrong\)/);
    writeFileSync(file, JSON.stringify({ endpoint: "https://h:7443", token: "bad\ntoken", ca: CA }));
    assert.throws(() => readLogin(file), /bad\.json is not a login/);
    writeFileSync(file, JSON.stringify({ endpoint: "https://h:7443", token: "t", ca: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" }));
    assert.throws(() => readLogin(file), /bad\.json holds a CA that is not a certificate \(damaged\)/);
    assert.throws(() => readLogin(dir), /cannot be read \(EISDIR\): fix or remove it/);
  });

  it("is used when no constellation runs from this machine's data dir, and only then", () => {
    const file = join(dir, "login.json");
    writeLogin({ endpoint: "https://10.0.0.10:7443", token: "cst_login", ca: CA, caFingerprint: "ab".repeat(32), at: 1 }, file);
    process.env.CONSTELLATION_LOGIN = file;
    process.env.HOME = join(dir, "home"); // an empty default data dir
    delete process.env.CONSTELLATION_DATA;
    delete process.env.CONSTELLATION_ENDPOINT;
    delete process.env.CONSTELLATION_TOKEN;
    assert.deepEqual(resolveConnection(), { endpoint: "https://10.0.0.10:7443", token: "cst_login", ca: CA });
    // That endpoint given in the environment without its CA: the login's CA.
    assert.deepEqual(resolveConnection({ endpoint: "https://10.0.0.10:7443", token: "cst_env" }), { endpoint: "https://10.0.0.10:7443", token: "cst_env", ca: CA });
    assert.deepEqual(resolveConnection({ endpoint: "https://10.0.0.99:7443", token: "cst_env" }), { endpoint: "https://10.0.0.99:7443", token: "cst_env" });
    // An endpoint that is no URL is left to the client, which says so (not a TypeError here).
    assert.deepEqual(resolveConnection({ endpoint: "https://", token: "cst_env" }), { endpoint: "https://", token: "cst_env" });
    // A data dir given: that one, even when it has no constellation (a clear error, not the login).
    assert.throws(() => resolveConnection({ dataDir: join(dir, "other") }), /no constellation found in/);
    const local = join(dir, "home", ".constellation");
    mkdirSync(local, { recursive: true });
    writeFileSync(join(local, "endpoint"), "http://127.0.0.1:7070\n");
    writeFileSync(join(local, "admin.token"), "cst_local\n");
    assert.deepEqual(resolveConnection(), { endpoint: "http://127.0.0.1:7070", token: "cst_local" });
  });
});
