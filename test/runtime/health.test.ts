import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type AddressInfo, type Socket, createServer } from "node:net";
import { type HealthState, initialHealth, nextHealth, probeHttp } from "../../src/runtime/health.js";
import { waitFor } from "../helpers/wait.js";

const cfg = { failure_threshold: 2, success_threshold: 2, kill_after: 4 };
const ok = { ok: true as const };
const bad = { ok: false as const, error: "503" };

describe("health rules", () => {
  it("becomes ready after success_threshold successes, unready after failure_threshold failures, kills at kill_after", () => {
    let s: HealthState = initialHealth;
    const step = (r: typeof ok | typeof bad) => {
      const n = nextHealth(s, r, cfg);
      s = n.state;
      return [s.ready, n.kill];
    };
    assert.deepEqual(step(ok), [false, false]);
    assert.deepEqual(step(ok), [true, false]);
    assert.deepEqual(step(bad), [true, false], "one failure is tolerated");
    assert.deepEqual(step(ok), [true, false], "and forgotten after a success");
    assert.deepEqual(step(bad), [true, false]);
    assert.deepEqual(step(bad), [false, false]);
    assert.equal(s.lastError, "503");
    assert.deepEqual(step(bad), [false, false]);
    assert.deepEqual(step(bad), [false, true]);
    assert.deepEqual(nextHealth(s, bad, { ...cfg, kill_after: 0 }).kill, false, "kill_after 0 never kills");
  });
});

describe("probes hold nothing of the node's", () => {
  /** A server that answers `head` and then trickles a byte every 100 ms for ever; counts open connections. */
  const trickler = async (head: string) => {
    const open = new Set<Socket>();
    const server = createServer((socket) => {
      open.add(socket);
      socket.on("close", () => open.delete(socket));
      socket.on("error", () => undefined);
      socket.once("data", () => {
        socket.write(head);
        const t = setInterval(() => socket.writable && socket.write("x"), 100);
        socket.on("close", () => clearInterval(t));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return { port: (server.address() as AddressInfo).port, open, close: () => (server.close(), [...open].forEach((s) => s.destroy())) };
  };

  it("an HTTP probe closes its connection once it has the status, however the body trickles", async () => {
    const t = await trickler("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
    try {
      for (let i = 0; i < 20; i++) assert.deepEqual(await probeHttp("127.0.0.1", t.port, "/", 1000), { ok: true });
      await waitFor("every probe connection closed", () => (t.open.size === 0 ? true : undefined), { timeoutMs: 3000 });
    } finally {
      t.close();
    }
  });

  it("an HTTP probe has one deadline for the whole answer: headers trickled a byte at a time fail it in time", async () => {
    const t = await trickler("HTTP/1.1 200 OK\r\nX-Slow: ");
    try {
      const t0 = Date.now();
      const res = await probeHttp("127.0.0.1", t.port, "/", 500);
      assert.equal(res.ok, false);
      assert.match((res as { error: string }).error, /no answer within 500 ms/);
      assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
      await waitFor("its connection closed", () => (t.open.size === 0 ? true : undefined), { timeoutMs: 3000 });
    } finally {
      t.close();
    }
  });
});
