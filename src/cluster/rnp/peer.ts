/**
 * One RNP connection (docs/rnp.md), either end: the hello, requests and answers by id, server
 * streams with credit, cancels, heartbeats, and backpressure both ways. It runs over any duplex
 * byte stream (a TLS socket in the cluster; a plain pair in unit tests) and knows nothing of
 * what the methods mean: `handlers` answer the peer's requests.
 */
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { Packr } from "msgpackr";
import { DEFAULT_MAX_FRAME, FrameDecoder, FrameError, encodeFrame } from "./frame.js";
import { type ErrorCode, type Hello, type Message, PROTOCOL_VERSIONS, ProtocolError, T, parseMessage, toWire } from "./messages.js";

/** An error answered by the peer (or made here for a call that could not be answered). */
export class RnpError extends Error {
  override readonly name = "RnpError";
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface CallContext {
  /** What the peer said of itself in its hello. */
  peer: Hello;
  /** Aborted when the caller cancels or the connection ends. */
  signal: AbortSignal;
}

/** Answers one method: a value (a request), or items (a stream). Throw an RnpError to answer an error. */
export type Handler = (body: unknown, ctx: CallContext) => Promise<unknown> | AsyncIterable<unknown>;

export interface PeerOptions {
  role: "client" | "server";
  /** What this side says of itself. */
  hello?: Omit<Hello, "versions">;
  handlers?: Record<string, Handler>;
  maxFrame?: number;
  /** Ping after this long without a message; close after three (default 2 s). */
  heartbeatMs?: number;
  /** Requests from the peer under way at most (default 256); more are answered `unavailable`. */
  maxInFlight?: number;
  /** Items of a stream the caller takes before it grants more (default 64). */
  window?: number;
  /** Bytes written but not yet taken by the socket beyond which sends wait (default 1 MiB). */
  highWater?: number;
  /** A line for the operator: why the connection was closed. */
  log?: (line: string) => void;
}

const codec = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/** A stream being received: items wait in `queue` until the consumer takes them. */
interface Incoming {
  queue: unknown[];
  done: boolean;
  error?: Error;
  wake?: () => void;
  /** Items taken since credit was last granted. */
  taken: number;
}

/** A stream being sent: how many more items the peer has granted. */
interface Outgoing {
  credit: number;
  wake?: () => void;
  abort: AbortController;
}

export class RnpPeer extends EventEmitter {
  readonly ready: Promise<Hello>;
  private peerHello: Hello | undefined;
  private settleReady!: { resolve: (h: Hello) => void; reject: (e: Error) => void };
  private readonly decoder: FrameDecoder;
  private readonly maxFrame: number;
  private readonly window: number;
  private readonly highWater: number;
  private nextId = 1;
  private readonly calls = new Map<number, Pending>();
  private readonly incoming = new Map<number, Incoming>();
  private readonly outgoing = new Map<number, Outgoing>();
  /** Requests of the peer being answered, by id: cancelled by a cancel or the close. */
  private readonly serving = new Map<number, AbortController>();
  /** Credit that came for a stream before its items began. */
  private readonly early = new Map<number, number>();
  private closed: Error | undefined;
  private lastHeard = performance.now(); // monotonic: a clock step neither hides a dead peer nor drops every link
  private readonly timer: NodeJS.Timeout;
  private drainWaiters: Array<() => void> = [];

  constructor(
    private readonly socket: Duplex,
    private readonly options: PeerOptions,
  ) {
    super();
    this.maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    this.window = options.window ?? 64;
    this.highWater = options.highWater ?? 2 ** 20;
    this.decoder = new FrameDecoder(this.maxFrame);
    this.ready = new Promise<Hello>((resolve, reject) => (this.settleReady = { resolve, reject }));
    this.ready.catch(() => undefined); // a close before the hello is reported by `closed`
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.wakeDrain());
    socket.on("error", (err) => this.close(new RnpError("unavailable", `connection failed: ${err.message}`)));
    socket.on("close", () => this.close(new RnpError("unavailable", "connection closed")));
    const beat = options.heartbeatMs ?? 2000;
    this.timer = setInterval(() => {
      const quiet = Math.round(performance.now() - this.lastHeard);
      if (quiet > 3 * beat) this.close(new RnpError("unavailable", `no word from the peer for ${quiet} ms`), `no heartbeat for ${quiet} ms`);
      else if (quiet > beat) void this.send({ t: T.ping, nonce: Date.now() }).catch(() => undefined);
    }, beat);
    this.timer.unref();
    if (options.role === "client") void this.send({ t: T.hello, hello: { versions: [...PROTOCOL_VERSIONS], ...options.hello, maxFrame: this.maxFrame } }).catch(() => undefined);
  }

  /** What the peer said of itself (after `ready`). */
  get peer(): Hello | undefined {
    return this.peerHello;
  }

  get isClosed(): boolean {
    return this.closed !== undefined;
  }

  /** Calls `method` and resolves with its answer (rejects with an RnpError). */
  async call(method: string, body: unknown, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<unknown> {
    await this.ready;
    if (this.closed) throw this.closed;
    const id = this.nextId++;
    const answer = new Promise<unknown>((resolve, reject) => this.calls.set(id, { resolve, reject }));
    // A close while the request still waits to be sent (the peer reads nothing) rejects it before
    // anyone awaits it: taken here, or it is an unhandled rejection that ends the process.
    answer.catch(() => undefined);
    const stop = (err: Error) => {
      const p = this.calls.get(id);
      if (!p) return;
      this.calls.delete(id);
      void this.send({ t: T.cancel, id }).catch(() => undefined);
      p.reject(err);
    };
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => stop(new RnpError("deadline", `${method}: no answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    const onAbort = () => stop(new RnpError("cancelled", `${method}: cancelled`));
    opts.signal?.addEventListener("abort", onAbort);
    try {
      await this.send({ t: T.request, id, method, body, stream: false });
      return await answer;
    } finally {
      if (timer) clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      this.calls.delete(id);
    }
  }

  /** Opens a server stream of `method`: its items as they come, at most a window ahead. */
  async *stream(method: string, body: unknown, opts: { signal?: AbortSignal } = {}): AsyncGenerator<unknown> {
    await this.ready;
    if (this.closed) throw this.closed;
    const id = this.nextId++;
    const s: Incoming = { queue: [], done: false, taken: 0 };
    this.incoming.set(id, s);
    const onAbort = () => {
      s.error = new RnpError("cancelled", `${method}: cancelled`);
      s.wake?.();
    };
    opts.signal?.addEventListener("abort", onAbort);
    let finished = false;
    try {
      await this.send({ t: T.request, id, method, body, stream: true });
      await this.send({ t: T.credit, id, n: this.window }); // the first window: nothing is sent before it
      for (;;) {
        if (s.queue.length > 0) {
          const item = s.queue.shift();
          if (++s.taken >= this.window / 2) {
            // top the window up as items are taken: the producer never gets far ahead
            const n = s.taken;
            s.taken = 0;
            await this.send({ t: T.credit, id, n });
          }
          yield item;
          continue;
        }
        if (s.error) throw s.error;
        if (s.done) {
          finished = true;
          return;
        }
        await new Promise<void>((resolve) => (s.wake = resolve));
        s.wake = undefined;
      }
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      this.incoming.delete(id);
      if (!finished && !this.closed) void this.send({ t: T.cancel, id }).catch(() => undefined);
    }
  }

  /** Ends the connection: every call and stream under way fails with `reason`. */
  close(reason: Error = new RnpError("unavailable", "connection closed"), logLine?: string): void {
    if (this.closed) return;
    this.closed = reason;
    if (logLine) this.options.log?.(logLine);
    clearInterval(this.timer);
    this.settleReady.reject(reason);
    for (const p of this.calls.values()) p.reject(reason);
    this.calls.clear();
    for (const s of this.incoming.values()) {
      s.error = reason;
      s.wake?.();
    }
    for (const o of this.outgoing.values()) {
      o.abort.abort(reason);
      o.wake?.();
    }
    for (const a of this.serving.values()) a.abort(reason);
    this.wakeDrain();
    this.socket.destroy();
    this.emit("close", reason);
  }

  /** Writes a message; waits while the socket holds more than the high-water mark. */
  private async send(m: Message): Promise<void> {
    if (this.closed) throw this.closed;
    let frame: Buffer;
    try {
      frame = encodeFrame(codec.pack(toWire(m)), this.maxFrame);
    } catch (err) {
      if (err instanceof FrameError && "id" in m && m.t !== T.error) {
        throw new RnpError("too-large", `a message of more than ${this.maxFrame} bytes cannot be sent: send less at once`);
      }
      throw err;
    }
    while (this.socket.writableLength > this.highWater && !this.closed) await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    if (this.closed) throw this.closed;
    this.socket.write(frame);
  }

  private wakeDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.lastHeard = performance.now();
    let bodies: Buffer[];
    try {
      bodies = this.decoder.push(chunk);
    } catch (err) {
      this.close(new RnpError("bad-request", (err as Error).message), `protocol error from the peer: ${(err as Error).message}`);
      return;
    }
    for (const body of bodies) {
      let m: Message;
      try {
        m = parseMessage(codec.unpack(body));
      } catch (err) {
        const what = err instanceof ProtocolError ? err.message : `not MessagePack (${(err as Error).message})`;
        this.close(new RnpError("bad-request", what), `protocol error from the peer: ${what}`);
        return;
      }
      this.onMessage(m);
      if (this.closed) return;
    }
  }

  private onMessage(m: Message): void {
    if (!this.peerHello) {
      if (m.t === T.error && m.id === 0) {
        this.close(new RnpError(m.code, m.message), `refused by the peer: ${m.message}`);
        return;
      }
      if (m.t !== T.hello) {
        this.close(new RnpError("bad-request", "the first message must be a hello"), `protocol error from the peer: message type ${m.t} before the hello`);
        return;
      }
      this.onHello(m.hello);
      return;
    }
    switch (m.t) {
      case T.hello:
        this.close(new RnpError("bad-request", "a second hello"), "protocol error from the peer: a second hello");
        return;
      case T.request:
        this.serve(m.id, m.method, m.body, m.stream);
        return;
      case T.response:
        this.calls.get(m.id)?.resolve(m.body);
        return;
      case T.error: {
        const err = new RnpError(m.code, m.message);
        const call = this.calls.get(m.id);
        if (call) call.reject(err);
        const s = this.incoming.get(m.id);
        if (s) {
          s.error = err;
          s.wake?.();
        }
        return;
      }
      case T.item: {
        const s = this.incoming.get(m.id);
        if (!s) return; // cancelled meanwhile
        if (s.queue.length >= this.window * 2) {
          this.close(new RnpError("bad-request", "stream items beyond the credit given"), "protocol error from the peer: stream items beyond the credit given");
          return;
        }
        s.queue.push(m.body);
        s.wake?.();
        return;
      }
      case T.end: {
        const s = this.incoming.get(m.id);
        if (s) {
          s.done = true;
          s.wake?.();
        }
        return;
      }
      case T.cancel:
        this.serving.get(m.id)?.abort(new RnpError("cancelled", "cancelled by the caller"));
        return;
      case T.credit: {
        const o = this.outgoing.get(m.id);
        if (o) {
          o.credit = Math.min(o.credit + m.n, 1_000_000);
          o.wake?.();
        } else if (this.serving.has(m.id) && this.early.size < 1024) {
          this.early.set(m.id, Math.min((this.early.get(m.id) ?? 0) + m.n, 1_000_000)); // before the handler's first item
        }
        return;
      }
      case T.ping:
        void this.send({ t: T.pong, nonce: m.nonce }).catch(() => undefined);
        return;
      case T.pong:
        return;
    }
  }

  private onHello(h: Hello): void {
    const common = h.versions.filter((v) => (PROTOCOL_VERSIONS as readonly number[]).includes(v));
    if (common.length === 0) {
      const why = `the peer speaks RNP ${h.versions.join(", ")}; this node speaks ${PROTOCOL_VERSIONS.join(", ")}: upgrade the older one`;
      if (this.options.role === "server") void this.send({ t: T.error, id: 0, code: "unsupported-version", message: why }).catch(() => undefined);
      // give the error a moment to go out before closing
      setImmediate(() => this.close(new RnpError("unsupported-version", why), `refused: ${why}`));
      this.peerHello = h; // nothing more is read before the close
      return;
    }
    this.peerHello = { ...h, versions: [Math.max(...common)] };
    if (this.options.role === "server") {
      void this.send({ t: T.hello, hello: { versions: [Math.max(...common)], ...this.options.hello, maxFrame: this.maxFrame } }).catch(() => undefined);
    }
    this.settleReady.resolve(this.peerHello);
  }

  private serve(id: number, method: string, body: unknown, stream: boolean): void {
    const handler = Object.hasOwn(this.options.handlers ?? {}, method) ? this.options.handlers![method] : undefined;
    if (this.serving.has(id)) {
      this.close(new RnpError("bad-request", `request id ${id} is already under way`), `protocol error from the peer: request id ${id} reused while under way`);
      return;
    }
    if (!handler) {
      void this.send({ t: T.error, id, code: "not-found", message: `no method "${method}" here` }).catch(() => undefined);
      return;
    }
    if (this.serving.size >= (this.options.maxInFlight ?? 256)) {
      void this.send({ t: T.error, id, code: "unavailable", message: "too many requests under way on this connection: wait for answers" }).catch(() => undefined);
      return;
    }
    const abort = new AbortController();
    this.serving.set(id, abort);
    const ctx: CallContext = { peer: this.peerHello!, signal: abort.signal };
    void (async () => {
      try {
        const result = handler(body, ctx);
        // Whatever the handler began is awaited or its failure taken, even when the request was
        // of the wrong kind (a call opened as a stream: its rejection once ended the process).
        if (!isAsyncIterable(result)) Promise.resolve(result).catch(() => undefined);
        if (stream) {
          if (!isAsyncIterable(result)) throw new RnpError("bad-request", `"${method}" is not a stream: call it`);
          await this.pump(id, result, abort);
          await this.send({ t: T.end, id });
        } else {
          if (isAsyncIterable(result)) throw new RnpError("bad-request", `"${method}" is a stream: open it as one`); // (never iterated: it does nothing)
          const value = await result;
          if (!abort.signal.aborted) await this.send({ t: T.response, id, body: value });
        }
      } catch (err) {
        if (this.closed || abort.signal.aborted) return;
        const e = err instanceof RnpError ? err : new RnpError("internal", `"${method}" failed: ${(err as Error).message}`);
        await this.send({ t: T.error, id, code: e.code, message: e.message.slice(0, 4096) }).catch(() => undefined);
      } finally {
        this.serving.delete(id);
        this.early.delete(id);
      }
    })();
  }

  /** Sends a stream's items as the caller grants credit for them. */
  private async pump(id: number, items: AsyncIterable<unknown>, abort: AbortController): Promise<void> {
    const o: Outgoing = { credit: this.early.get(id) ?? 0, abort };
    this.early.delete(id);
    this.outgoing.set(id, o);
    const onAbort = () => o.wake?.();
    abort.signal.addEventListener("abort", onAbort);
    const it = items[Symbol.asyncIterator]();
    try {
      for (;;) {
        while (o.credit <= 0 && !abort.signal.aborted) await new Promise<void>((resolve) => (o.wake = resolve));
        if (abort.signal.aborted) return;
        const next = await it.next();
        if (next.done || abort.signal.aborted) return;
        o.credit--;
        await this.send({ t: T.item, id, body: next.value });
      }
    } finally {
      abort.signal.removeEventListener("abort", onAbort);
      this.outgoing.delete(id);
      await it.return?.();
    }
  }
}

function isAsyncIterable(x: unknown): x is AsyncIterable<unknown> {
  return x !== null && typeof x === "object" && Symbol.asyncIterator in x;
}
