/**
 * An RNP client that stays connected (docs/rnp.md, "Reconnect"): it dials, says hello, and
 * when the connection ends dials again after a backoff (100 ms doubling to 10 s, full jitter),
 * for as long as it is open. Calls made while it is down wait for the connection up to their
 * deadline; a stream fails when its connection ends (its owner opens it again, from where it
 * was).
 */
import type { Duplex } from "node:stream";
import { type PeerOptions, RnpError, RnpPeer } from "./peer.js";

export interface ClientOptions extends Omit<PeerOptions, "role"> {
  /** Opens a connection (a TLS socket to the controller); resolves once it is connected. */
  dial: () => Promise<Duplex>;
  /** First and largest delay between attempts (default 100 ms and 10 s). */
  backoffMs?: { min: number; max: number };
  /** Called with each connection once its hello is done. */
  onConnect?: (peer: RnpPeer) => void;
}

/**
 * The wait before reconnect attempt `attempt` (0 first): a cap doubling from `min` to `max`, and
 * a delay drawn evenly below it ("full jitter": a restarted controller is not met by every agent
 * at once).
 */
export function backoffDelay(attempt: number, bounds: { min: number; max: number }, random: () => number = Math.random): number {
  const cap = Math.min(bounds.max, bounds.min * 2 ** Math.min(attempt, 52));
  return random() * cap;
}

export class RnpClient {
  private peer: RnpPeer | undefined;
  private waiters: Array<{ done: (p: RnpPeer) => void; fail: (e: Error) => void }> = [];
  private closed = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Why the last attempt failed (for the error of a call that waited in vain). */
  private lastError = "not connected yet";

  constructor(private readonly options: ClientOptions) {
    void this.connect();
  }

  get connected(): boolean {
    return this.peer !== undefined && !this.peer.isClosed;
  }

  async call(method: string, body: unknown, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<unknown> {
    const started = performance.now();
    const peer = await this.ready(opts.timeoutMs, opts.signal);
    const left = opts.timeoutMs === undefined ? undefined : Math.max(1, opts.timeoutMs - (performance.now() - started));
    return peer.call(method, body, { ...(opts.signal ? { signal: opts.signal } : {}), ...(left === undefined ? {} : { timeoutMs: left }) });
  }

  async *stream(method: string, body: unknown, opts: { signal?: AbortSignal } = {}): AsyncGenerator<unknown> {
    const peer = await this.ready(undefined, opts.signal);
    yield* peer.stream(method, body, opts);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.peer?.close(new RnpError("cancelled", "client closed"));
    for (const w of this.waiters.splice(0)) w.fail(new RnpError("cancelled", "client closed"));
  }

  /** The connection, once there is one (waiting at most `timeoutMs`). */
  private ready(timeoutMs?: number, signal?: AbortSignal): Promise<RnpPeer> {
    if (this.closed) return Promise.reject(new RnpError("cancelled", "client closed"));
    if (this.peer && !this.peer.isClosed) return Promise.resolve(this.peer);
    return new Promise<RnpPeer>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (p: RnpPeer) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve(p);
      };
      const fail = (e: Error) => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        reject(e);
      };
      const onAbort = () => fail(new RnpError("cancelled", "cancelled while waiting for the connection"));
      signal?.addEventListener("abort", onAbort);
      if (timeoutMs !== undefined) timer = setTimeout(() => fail(new RnpError("unavailable", `no connection to the controller within ${timeoutMs} ms (${this.lastError})`)), timeoutMs);
      const waiter = { done, fail };
      this.waiters.push(waiter);
    });
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    let socket: Duplex;
    try {
      socket = await this.options.dial();
    } catch (err) {
      this.lastError = (err as Error).message;
      this.retry();
      return;
    }
    if (this.closed) {
      socket.destroy();
      return;
    }
    const peer = new RnpPeer(socket, { ...this.options, role: "client" });
    peer.on("close", (reason: Error) => {
      if (this.peer === peer) this.peer = undefined;
      this.lastError = reason.message;
      this.retry();
    });
    try {
      await peer.ready;
    } catch (err) {
      this.lastError = (err as Error).message;
      return; // the close handler retries
    }
    this.attempt = 0;
    this.peer = peer;
    this.options.onConnect?.(peer);
    for (const w of this.waiters.splice(0)) w.done(peer);
  }

  private retry(): void {
    if (this.closed || this.timer) return;
    const delay = backoffDelay(this.attempt++, this.options.backoffMs ?? { min: 100, max: 10_000 });
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.connect();
    }, delay);
    this.timer.unref();
  }
}
