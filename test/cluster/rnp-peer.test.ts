/**
 * RNP connections (src/cluster/rnp/peer.ts) over real loopback sockets: calls and errors by
 * code, streams held to the credit the caller gives, cancels reaching the handler, garbage and
 * a wrong version refused with a log line, a silent peer dropped by the heartbeat.
 */
import assert from "node:assert/strict";
import { type AddressInfo, type Server, type Socket, connect, createServer } from "node:net";
import { after, describe, it } from "node:test";
import { Packr } from "msgpackr";
import { encodeFrame } from "../../src/cluster/rnp/frame.js";
import { T } from "../../src/cluster/rnp/messages.js";
import { type Handler, type PeerOptions, RnpError, RnpPeer } from "../../src/cluster/rnp/peer.js";
import { waitFor } from "../helpers/wait.js";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

describe("RNP connections", () => {
  const servers: Server[] = [];
  const peers: RnpPeer[] = [];
  after(() => {
    for (const p of peers) p.close();
    for (const s of servers) s.close();
  });

  /** A server peer with `handlers` on a loopback port; its log lines are collected. */
  async function serve(handlers: Record<string, Handler>, opts: Partial<PeerOptions> = {}) {
    const log: string[] = [];
    const server = createServer((sock) => peers.push(new RnpPeer(sock, { role: "server", handlers, hello: { node: "srv" }, log: (l) => log.push(l), ...opts })));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const client = async (o: Partial<PeerOptions> = {}) => {
      const sock = connect(port, "127.0.0.1");
      const peer = new RnpPeer(sock, { role: "client", hello: { node: "cli" }, ...o });
      peers.push(peer);
      await peer.ready;
      return peer;
    };
    const raw = async (): Promise<Socket> => {
      const sock = connect(port, "127.0.0.1");
      await new Promise((resolve) => sock.once("connect", resolve));
      return sock;
    };
    return { log, client, raw };
  }

  it("calls: an answer, an error with its code, a method that is not there", async () => {
    const { client } = await serve({
      "math.add": async (body) => {
        const { a, b } = body as { a: number; b: number };
        return a + b;
      },
      "math.fail": async () => {
        throw new RnpError("conflict", "already done");
      },
    });
    const c = await client();
    assert.equal(c.peer?.node, "srv");
    assert.equal(await c.call("math.add", { a: 2, b: 3 }), 5);
    await assert.rejects(c.call("math.fail", null), (e: unknown) => e instanceof RnpError && e.code === "conflict" && e.message === "already done");
    await assert.rejects(c.call("math.nope", null), (e: unknown) => e instanceof RnpError && e.code === "not-found" && /no method "math.nope"/.test(e.message));
    // many at once on one connection, answered by id
    const sums = await Promise.all(Array.from({ length: 200 }, (_, i) => c.call("math.add", { a: i, b: 1 })));
    assert.deepEqual(sums, Array.from({ length: 200 }, (_, i) => i + 1));
  });

  it("a call opened as a stream is refused, and its handler's failure is taken (it once ended the process)", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { client } = await serve({
        "x.fails": async () => {
          await new Promise((r) => setTimeout(r, 20));
          throw new RnpError("unauthorized", "no");
        },
      });
      const c = await client();
      await assert.rejects(async () => {
        for await (const _ of c.stream("x.fails", null)) void _;
      }, (e: unknown) => e instanceof RnpError && e.code === "bad-request" && /is not a stream: call it/.test(e.message));
      await new Promise((r) => setTimeout(r, 100)); // the handler has failed by now
      assert.deepEqual(unhandled, []);
      await assert.rejects(c.call("x.fails", null), (e: unknown) => e instanceof RnpError && e.code === "unauthorized");
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("a stream runs only as far ahead as the caller's credit; a cancel reaches the handler", async () => {
    let produced = 0;
    let cancelled = false;
    const { client } = await serve({
      "count.up": async function* (_body, ctx) {
        ctx.signal.addEventListener("abort", () => (cancelled = true));
        for (let i = 0; ; i++) {
          produced = i + 1;
          yield i;
        }
      },
    });
    const c = await client({ window: 16 });
    let got = 0;
    for await (const item of c.stream("count.up", null)) {
      assert.equal(item, got);
      got++;
      // a slow consumer: the producer stays within a window of it
      await new Promise((resolve) => setTimeout(resolve, 1));
      assert.ok(produced - got <= 16 + 1, `produced ${produced}, taken ${got}`);
      if (got === 200) break;
    }
    await waitFor("the handler sees the cancel", () => cancelled);
  });

  it("garbage, a message before the hello, and an unknown version are refused with a log line; the server goes on", async () => {
    const { log, client, raw } = await serve({ ping: async () => "pong" });
    const junk = await raw();
    junk.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    await waitFor("the garbage connection closed", () => junk.destroyed || junk.readableEnded);
    const early = await raw();
    early.write(encodeFrame(packr.pack([T.request, 1, "ping", null])));
    await new Promise((resolve) => early.once("close", resolve));
    const future = await raw();
    const answer: Buffer[] = [];
    future.on("data", (d: Buffer) => answer.push(d));
    future.write(encodeFrame(packr.pack([T.hello, { versions: [99] }])));
    await new Promise((resolve) => future.once("close", resolve));
    assert.match(Buffer.concat(answer).toString("latin1"), /unsupported-version/);
    await waitFor("three log lines", () => log.length >= 3);
    assert.match(log[0]!, /protocol error from the peer: a frame of 4294967295 bytes is over the limit/);
    assert.match(log[1]!, /message type 1 before the hello/);
    assert.match(log[2]!, /refused: the peer speaks RNP 99; this node speaks 1/);
    assert.equal(await (await client()).call("ping", null), "pong", "others are served as before");
  });

  it("a peer that says nothing for three heartbeats is dropped; calls under way fail", async () => {
    const { log, raw } = await serve({}, { heartbeatMs: 50 });
    const silent = await raw();
    silent.write(encodeFrame(packr.pack([T.hello, { versions: [1] }])));
    silent.resume();
    await new Promise((resolve) => silent.once("close", resolve));
    assert.ok(log.some((l) => /no heartbeat for \d+ ms/.test(l)), log.join("\n"));
    // a live client answers pings, so it stays
    const { client } = await serve({ slow: () => new Promise(() => undefined) }, { heartbeatMs: 50 });
    const c = await client({ heartbeatMs: 50 });
    const pending = c.call("slow", null);
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(c.isClosed, false, "pings kept it up");
    c.close();
    await assert.rejects(pending, (e: unknown) => e instanceof RnpError && e.code === "unavailable");
  });
  it("backpressure: calls past the peer's in-flight limit are answered unavailable; a sender to a peer that does not read stops at its high-water mark", async () => {
    // The server answers at most 4 requests at once; the rest are refused, not queued.
    const release: Array<() => void> = [];
    const { client } = await serve({ hold: () => new Promise<string>((resolve) => release.push(() => resolve("done"))) }, { maxInFlight: 4 });
    const c = await client();
    const calls = Array.from({ length: 10 }, () => c.call("hold", null).then((v) => ({ ok: v }), (e: unknown) => ({ err: e })));
    await waitFor("four requests held", () => release.length === 4);
    const refused = (await Promise.all(calls.slice(4))) as Array<{ err?: unknown }>;
    for (const r of refused) assert.ok(r.err instanceof RnpError && r.err.code === "unavailable" && /too many requests under way/.test(r.err.message), String(r.err));
    for (const r of release) r();
    assert.deepEqual(await Promise.all(calls.slice(0, 4)), Array.from({ length: 4 }, () => ({ ok: "done" })));

    // A peer that said hello and then reads nothing: the sender's buffer stops at its
    // high-water mark (the rest of the sends wait), it does not take every frame.
    const deaf = createServer((sock) => {
      sock.write(encodeFrame(packr.pack([T.hello, { versions: [1] }])));
      sock.pause();
    });
    servers.push(deaf);
    await new Promise<void>((resolve) => deaf.listen(0, "127.0.0.1", resolve));
    const sock = connect((deaf.address() as AddressInfo).port, "127.0.0.1");
    const sender = new RnpPeer(sock, { role: "client", hello: { node: "cli" }, highWater: 2 ** 20, heartbeatMs: 60_000 });
    peers.push(sender);
    await sender.ready;
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    const body = "x".repeat(64 * 1024);
    for (let i = 0; i < 400; i++) void sender.call("deaf.take", body).catch(() => undefined); // 25 MiB asked
    await waitFor("the sender's buffer past its high-water mark", () => sock.writableLength > 2 ** 20);
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.ok(sock.writableLength < 2 ** 20 + 2 * 70_000, `buffered ${sock.writableLength} bytes: the sends did not wait`);
    // Closed with sends still waiting: each call fails, and none is an unhandled rejection (one
    // would end a node's process).
    sender.close();
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    process.off("unhandledRejection", onUnhandled);
    assert.deepEqual(unhandled, []);
  });
});
