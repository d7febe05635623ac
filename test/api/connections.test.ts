/**
 * Connections to the API are bounded (issue 8: ~22,000 silent connections from a star took the
 * control plane to its open-file limit, and the node then lied about its stars): past the
 * limit new ones are closed at once, a client that sends no headers is cut off, and the API
 * answers again once they are gone.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import http from "node:http";
import { connect as tcp, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { defaultMaxConnections } from "../../src/api/router.js";
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
});
