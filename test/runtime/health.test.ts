import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type AddressInfo, type Socket, createServer } from "node:net";
import { type HealthState, initialHealth, nextHealth, probeHttp } from "../../src/runtime/health.js";
import { FakeRuntime } from "../../src/runtime/fake/fake-runtime.js";
import { PROBES_IN_FLIGHT, Slots } from "../../src/runtime/supervisor.js";
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

describe("probes in flight on a node", () => {
  it("Slots: at most max at once, the rest in order, a failure gives its slot back", async () => {
    const slots = new Slots(3);
    let now = 0;
    let most = 0;
    const order: number[] = [];
    const gates: Array<() => void> = [];
    const tasks = Array.from({ length: 10 }, (_, i) =>
      slots
        .run(async () => {
          order.push(i);
          most = Math.max(most, ++now);
          await new Promise<void>((r) => gates.push(r));
          now--;
          if (i === 4) throw new Error("boom");
          return i;
        })
        .catch(() => -1),
    );
    for (let released = 0; released < 10; released++) {
      await waitFor("a task to be running", () => (gates.length > 0 ? true : undefined));
      gates.shift()!();
    }
    assert.deepEqual(await Promise.all(tasks), [0, 1, 2, 3, -1, 5, 6, 7, 8, 9]);
    assert.equal(most, 3);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it(`${PROBES_IN_FLIGHT + 16} stars probing a server that never answers: at most ${PROBES_IN_FLIGHT} connections at once`, async () => {
    let open = 0;
    let most = 0;
    let seen = 0;
    const held = new Set<Socket>();
    const server = createServer((s) => {
      seen++;
      most = Math.max(most, ++open);
      held.add(s);
      s.on("error", () => undefined);
      s.on("close", () => (open--, held.delete(s)));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const rt = new FakeRuntime();
    try {
      const n = PROBES_IN_FLIGHT + 16;
      for (let i = 0; i < n; i++) await rt.start(`probed-${i}`, { name: `probed-${i}`, command: ["x"], health: { type: "http", port, interval_ms: 50, timeout_ms: 3000 } });
      // The first PROBES_IN_FLIGHT connect at once and hold their slots (3 s each): no more come.
      await waitFor("the slots taken", () => (seen >= PROBES_IN_FLIGHT ? true : undefined));
      assert.equal(seen, PROBES_IN_FLIGHT, "no probe beyond the slots");
      assert.equal(most, PROBES_IN_FLIGHT);
      // Every star's probe gets its turn (the first ones time out and pass their slots on).
      await waitFor("every star probed", () => (seen >= n ? true : undefined), { timeoutMs: 15_000 });
    } finally {
      for (const s of rt.list()) await rt.remove(s.id).catch(() => undefined);
      await rt.close();
      server.close();
      for (const s of held) s.destroy();
    }
  });
});
