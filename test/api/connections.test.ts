/**
 * Connections to the API are bounded (issue 8: ~22,000 silent connections from a star took the
 * control plane to its open-file limit, and the node then lied about its stars): past the
 * limit new ones are closed at once, a client that sends no headers is cut off, and the API
 * answers again once they are gone.
 */
import assert from "node:assert/strict";
import { rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import { connect as tcp, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { defaultMaxConnections } from "../../src/api/router.js";
import { BODY_LIMIT, REQUESTS_IN_FLIGHT } from "../../src/api/server.js";
import { connect, resolveConnection } from "../../src/sdk/client.js";
import { type ApiHarness, startApi } from "../helpers/api.js";
import { testDirSync } from "../helpers/dirs.js";
import { waitFor } from "../helpers/wait.js";

describe("API connections", () => {
  const MAX = 40;
  let api: ApiHarness;
  const sockets: Socket[] = [];
  before(async () => {
    api = await startApi({ connections: { max: MAX, headersTimeoutMs: 1500 } });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await api?.close();
  });

  it("past the limit new connections are closed at once; silent ones are cut off; then the API answers again", async () => {
    const { port } = new URL(api.url);
    const closed = new Set<Socket>();
    for (let i = 0; i < MAX + 20; i++) {
      const s = tcp({ host: "127.0.0.1", port: Number(port) });
      s.on("error", () => undefined);
      s.on("close", () => closed.add(s));
      sockets.push(s);
      await new Promise((r) => s.once("connect", r).once("close", r));
    }
    // The ones past the limit go at once (well before any timeout).
    await waitFor("the connections past the limit closed", () => closed.size >= 20, { timeoutMs: 1000 });
    // (node:http, not fetch: undici waits for ever on a connection closed before any answer.)
    const status = () =>
      new Promise<number | string>((resolve) => {
        http.get(`${api.url}/v1/health`, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
      });
    assert.equal(await status(), "ECONNRESET", "full: a new client is refused");
    // The silent ones are cut off when their headers are late...
    await waitFor("the silent connections closed", () => closed.size === MAX + 20, { timeoutMs: 5000 });
    // ...and the API answers again.
    assert.equal(await status(), 200);
    assert.equal((await api.request("GET", "/v1/stars")).status, 200);
  });

  it("a client trickling its headers is cut off too", async () => {
    const { port } = new URL(api.url);
    const s = tcp({ host: "127.0.0.1", port: Number(port) });
    sockets.push(s);
    s.on("error", () => undefined);
    await new Promise((r) => s.once("connect", r));
    s.write("GET /v1/stars HTTP/1.1\r\nHost: x\r\n");
    const timer = setInterval(() => s.writable && s.write("X-Slow: 1\r\n"), 200);
    const t0 = Date.now();
    const reply = await new Promise<string>((resolve) => {
      let got = "";
      s.on("data", (d) => (got += d.toString()));
      s.once("close", () => resolve(got));
    });
    clearInterval(timer);
    assert.ok(Date.now() - t0 < 4000, `cut off after ${Date.now() - t0} ms`);
    assert.match(reply, /^HTTP\/1\.1 408|^$/, "a 408 or a closed connection");
  });

  it("by default: half the process's open-file limit, between 64 and 8192", () => {
    const dir = testDirSync("limits");
    after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "limits");
    const at = (soft: string) => {
      writeFileSync(file, `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                 1048576              files\n`);
      return defaultMaxConnections(file);
    };
    assert.equal(at("1024"), 512);
    assert.equal(at("20000"), 8192);
    assert.equal(at("100"), 64);
    assert.equal(at("unlimited"), 8192);
    assert.equal(defaultMaxConnections(join(dir, "missing")), 512);
  });

  it("requests in flight: 16 per tree of stars, and 32 MiB of bodies being read for callers other than admins", async () => {
    const api = await startApi();
    after(() => api.close());
    const { port } = new URL(api.url);
    const trees: string[] = [];
    for (const name of ["tree-a", "tree-b", "tree-c"]) {
      assert.equal((await api.request("POST", "/v1/stars", { body: { spec: { name, command: ["sleep", "60"] } } })).status, 201);
      trees.push(await api.starToken(name));
    }
    /** A POST that sends its headers (Content-Length 1 MiB) and a little of its body, then stalls. */
    const stall = (token: string) =>
      new Promise<Socket>((resolve) => {
        const s = tcp({ host: "127.0.0.1", port: Number(port) }, () => {
          s.write(`POST /v1/stars HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${BODY_LIMIT}\r\n\r\n{"spec":`);
          resolve(s);
        });
        s.on("error", () => undefined);
        sockets.push(s);
      });
    const stalled: Socket[] = [];
    for (let i = 0; i < REQUESTS_IN_FLIGHT.perToken; i++) stalled.push(await stall(trees[0]!));
    const busy = await waitFor("the tree's requests all in flight", async () => {
      const r = await api.request("GET", "/v1/stars", { token: trees[0]! });
      return r.status === 429 ? r : undefined;
    });
    assert.match(busy.error().message, /the stars made from tree-a have 16 requests in flight at once \(at most 16\)/);
    assert.equal((await api.request("GET", "/v1/stars", { token: trees[1]! })).status, 200, "another tree is not held up");
    // A second tree's 16 stalled bodies: 32 MiB being read, the budget; a third tree must wait.
    for (let i = 0; i < REQUESTS_IN_FLIGHT.perToken; i++) stalled.push(await stall(trees[1]!));
    let n = 0;
    const kid = () => ({ spec: { name: `tree-c-kid-${n++}`, command: ["true"] } });
    const full = await waitFor("the body budget used up", async () => {
      const r = await api.request("POST", "/v1/stars", { token: trees[2]!, body: kid() });
      return r.status === 429 ? r : undefined;
    });
    assert.match(full.error().message, /the API is reading \d+ bytes of request bodies already \(at most 33554432\)/);
    assert.equal((await api.request("POST", "/v1/stars", { body: { spec: { name: "by-admin", command: ["true"] } } })).status, 201, "an admin's body waits for none");
    for (const s of stalled) s.destroy();
    let last = "";
    await waitFor("the budget back", async () => {
      const r = await api.request("POST", "/v1/stars", { token: trees[2]!, body: kid() });
      last = r.text;
      return r.status === 201 ? true : undefined;
    }).catch((err: Error) => assert.fail(`${err.message}: ${last}`));
  });

  it("the unix socket (root's, 0600) takes the operator in while the TCP port is full; the SDK finds it in the data dir", async () => {
    const dataDir = testDirSync("sock");
    after(() => rmSync(dataDir, { recursive: true, force: true }));
    writeFileSync(join(dataDir, "endpoint"), `${api.url}\n`);
    writeFileSync(join(dataDir, "admin.token"), `${api.admin}\n`, { mode: 0o600 });
    // (The harness's API object is not exposed: a second one on the same store and controller.)
    const sock = join(dataDir, "api.sock");
    await api.listenUnix(sock);
    assert.equal(statSync(sock).mode & 0o777, 0o600);
    assert.ok(statSync(sock).isSocket());
    const resolved = resolveConnection({ dataDir });
    assert.equal(resolved.endpoint, `unix:${sock}`);
    // Fill the TCP port.
    const { port } = new URL(api.url);
    const held: Socket[] = [];
    for (let i = 0; i < MAX + 5; i++) {
      const s = tcp({ host: "127.0.0.1", port: Number(port) });
      s.on("error", () => undefined);
      held.push(s);
      sockets.push(s);
      await new Promise((r) => s.once("connect", r).once("close", r));
    }
    const viaSocket = connect({ dataDir });
    try {
      assert.ok(Array.isArray(await viaSocket.list()), "the operator gets in");
    } finally {
      viaSocket.close();
      for (const s of held) s.destroy();
    }
  });
});
