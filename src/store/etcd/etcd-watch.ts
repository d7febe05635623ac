/**
 * A Store `Watch` on etcd: one gRPC watch stream per Watch, resumed transparently on another
 * member (or the same one, later) when the stream breaks, from the last delivered revision + 1.
 */
import type { IDuplexStream, IEvent, IKeyValue, IWatchCreateRequest, IWatchRequest, IWatchResponse } from "etcd3";
import { CompactedError, StoreUnavailableError } from "../../model/errors.js";
import type { KeyValue, Watch, WatchBatch, WatchEvent } from "../types.js";
import { castEtcdError, errorMessage, isTransient } from "./etcd-errors.js";

export type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

export interface WatchConnection {
  stream: WatchStream;
  /** The member's client URL the stream went to. */
  endpoint: string;
}

/** What a watch needs from its store. */
export interface WatchConnector {
  /** Opens a watch stream on the member the store currently prefers. */
  open(): Promise<WatchConnection>;
  /** Reports a broken stream, so the store can prefer another member. */
  failed(endpoint: string, err: unknown): void;
  /** Reports a compact revision etcd told us about. */
  compacted(revision: number): void;
  /** The watch is over (closed or failed): forget it. */
  done(watch: EtcdWatch): void;
  /** How long a broken watch may try to reconnect before it fails with StoreUnavailableError. */
  readonly reconnectTimeoutMs: number;
}

export interface EtcdWatchSpec {
  key: Buffer;
  rangeEnd?: Buffer;
  /** First revision to deliver; undefined: from now. */
  fromRevision?: number;
  prevKv: boolean;
  /** The range holds no key (etcd refuses such a watch): never deliver anything, need no stream. */
  empty?: boolean;
}

/** A stream whose create request gets no answer in this time counts as broken (hung member). */
const CREATE_TIMEOUT_MS = 10_000;
const RETRY_INITIAL_MS = 50;
const RETRY_MAX_MS = 2_000;

export function toKeyValue(kv: IKeyValue): KeyValue {
  const out: KeyValue = {
    key: kv.key.toString("utf8"),
    value: kv.value.toString("utf8"),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
  };
  if (kv.lease && kv.lease !== "0") out.lease = String(kv.lease);
  return out;
}

function toWatchEvent(ev: IEvent, withPrev: boolean): WatchEvent {
  const type = String(ev.type).toLowerCase() === "delete" ? "delete" : "put";
  const out: WatchEvent = { type, kv: toKeyValue(ev.kv) };
  if (withPrev && ev.prev_kv) out.prevKv = toKeyValue(ev.prev_kv);
  return out;
}

function closeStream(stream: WatchStream): void {
  // end() first: etcd3 only counts stream errors against the member while the stream is writable.
  try {
    stream.end();
  } catch {
    // already ended
  }
  try {
    stream.cancel();
  } catch {
    // already closed
  }
}

type State = "open" | "closed" | "failed";

export class EtcdWatch implements Watch {
  readonly ready: Promise<void>;
  /** The member the current stream goes to (for diagnostics and tests). */
  endpoint: string | undefined;
  /** How many times the stream has been (re)created. */
  connects = 0;

  private state: State = "open";
  private error: Error | undefined;
  private readyDone = false;
  private resolveReady!: () => void;
  private rejectReady!: (err: Error) => void;
  private readonly queue: WatchBatch[] = [];
  private head = 0;
  private waiters: Array<() => void> = [];
  private stream: WatchStream | undefined;
  /** Next revision to deliver; undefined until a "from now" watch is first created. */
  private nextRev: number | undefined;
  /** The start revision of the current stream's create request (for CompactedError). */
  private startRev = 0;
  /** Bumped on every (re)connect and break: events from older streams are ignored. */
  private generation = 0;
  private brokenSince: number | undefined;
  private retryDelay = RETRY_INITIAL_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private createTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly connector: WatchConnector,
    private readonly spec: EtcdWatchSpec,
  ) {
    this.nextRev = spec.fromRevision && spec.fromRevision > 0 ? spec.fromRevision : undefined;
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // A consumer that never awaits `ready` must not get an unhandled rejection.
    this.ready.catch(() => undefined);
    if (spec.empty) this.settleReady();
    else void this.connect();
  }

  close(): void {
    if (this.state === "closed") return;
    const wasOpen = this.state === "open";
    this.state = "closed";
    this.queue.length = 0;
    this.head = 0;
    this.teardown();
    this.settleReady();
    this.wake();
    if (wasOpen) this.connector.done(this);
  }

  /** Ends the watch with an error: the iterator delivers what is queued, then throws it. */
  fail(err: Error): void {
    if (this.state !== "open") return;
    this.state = "failed";
    this.error = err;
    this.teardown();
    this.settleReady(err);
    this.wake();
    this.connector.done(this);
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchBatch> {
    return {
      next: () => this.next(),
      return: () => {
        this.close();
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }

  private async next(): Promise<IteratorResult<WatchBatch>> {
    for (;;) {
      if (this.state === "closed") return { done: true, value: undefined };
      if (this.head < this.queue.length) {
        const batch = this.queue[this.head]!;
        this.queue[this.head] = undefined as unknown as WatchBatch; // let it be collected
        this.head++;
        if (this.head === this.queue.length) {
          this.queue.length = 0;
          this.head = 0;
        } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue.splice(0, this.head);
          this.head = 0;
        }
        return { done: false, value: batch };
      }
      if (this.state === "failed") throw this.error;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private settleReady(err?: Error): void {
    if (this.readyDone) return;
    this.readyDone = true;
    if (err) this.rejectReady(err);
    else this.resolveReady();
  }

  private teardown(): void {
    this.generation++;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.clearCreateTimer();
    const stream = this.stream;
    this.stream = undefined;
    if (stream) closeStream(stream);
  }

  private async connect(): Promise<void> {
    const gen = ++this.generation;
    let conn: WatchConnection;
    try {
      conn = await this.connector.open();
    } catch (err) {
      if (gen === this.generation && this.state === "open") this.broken(err, undefined);
      return;
    }
    const { stream, endpoint } = conn;
    if (gen !== this.generation || this.state !== "open") {
      stream.on("error", () => undefined);
      closeStream(stream);
      return;
    }
    this.stream = stream;
    this.endpoint = endpoint;
    this.connects++;
    stream.on("data", (res: IWatchResponse) => {
      if (gen === this.generation && this.state === "open") this.onResponse(res);
    });
    stream.on("error", (err: Error) => {
      if (gen === this.generation && this.state === "open") this.broken(err, endpoint);
    });
    stream.on("end", () => {
      if (gen === this.generation && this.state === "open") this.broken(new Error("the etcd watch stream ended"), endpoint);
    });
    this.startRev = this.nextRev ?? 0;
    const create: IWatchCreateRequest = { key: this.spec.key, prev_kv: this.spec.prevKv };
    if (this.spec.rangeEnd) create.range_end = this.spec.rangeEnd;
    if (this.nextRev !== undefined) create.start_revision = this.nextRev;
    stream.write({ create_request: create });
    this.createTimer = setTimeout(() => {
      this.createTimer = undefined;
      if (gen === this.generation && this.state === "open") {
        this.broken(new Error(`4 DEADLINE_EXCEEDED: no answer to the watch's create request within ${CREATE_TIMEOUT_MS} ms`), endpoint);
      }
    }, CREATE_TIMEOUT_MS);
  }

  private clearCreateTimer(): void {
    if (this.createTimer) {
      clearTimeout(this.createTimer);
      this.createTimer = undefined;
    }
  }

  private onResponse(res: IWatchResponse): void {
    const compactRev = Number(res.compact_revision || 0);
    if (compactRev !== 0) {
      // etcd cancels a watcher whose start revision has been compacted (at create, on resume, or
      // when a slow watcher falls behind a compaction) and tells the compact revision.
      this.connector.compacted(compactRev);
      this.fail(new CompactedError(this.nextRev || this.startRev || 0, compactRev));
      return;
    }
    if (res.canceled) {
      // Without a reason: canceled by the server for no request-related cause; try again.
      // With one: etcd refused the watch (e.g. permission denied), except for losing its leader.
      const reason = res.cancel_reason;
      if (!reason || reason.includes("no leader")) this.broken(new Error(`14 UNAVAILABLE: ${reason || "watch canceled by etcd"}`), this.endpoint);
      else this.fail(castEtcdError(new Error(reason), { op: "watch", revision: this.startRev }));
      return;
    }
    if (res.created) {
      this.clearCreateTimer();
      if (this.nextRev === undefined) this.nextRev = Number(res.header.revision) + 1;
      this.brokenSince = undefined;
      this.retryDelay = RETRY_INITIAL_MS;
      this.settleReady();
    }
    const events = res.events ?? [];
    if (events.length === 0) return;
    // One batch per revision; a response may hold several revisions (etcd never splits one
    // revision across responses unless fragmenting, which we do not ask for).
    let batch: WatchBatch | undefined;
    let added = 0;
    for (const ev of events) {
      const rev = Number(ev.kv.mod_revision);
      if (this.nextRev !== undefined && rev < this.nextRev) continue; // already delivered
      if (!batch || batch.revision !== rev) {
        batch = { revision: rev, events: [] };
        this.queue.push(batch);
        added++;
      }
      batch.events.push(toWatchEvent(ev, this.spec.prevKv));
    }
    if (batch) this.nextRev = batch.revision + 1;
    if (added > 0) this.wake();
  }

  /** The stream broke: reconnect after a backoff, from the next undelivered revision. */
  private broken(err: unknown, endpoint: string | undefined): void {
    if (this.state !== "open") return;
    this.generation++;
    this.clearCreateTimer();
    const stream = this.stream;
    this.stream = undefined;
    if (stream) closeStream(stream);
    if (!isTransient(err)) {
      this.fail(castEtcdError(err, { op: "watch", revision: this.startRev }));
      return;
    }
    if (endpoint) this.connector.failed(endpoint, err);
    const now = Date.now();
    this.brokenSince ??= now;
    const timeout = this.connector.reconnectTimeoutMs;
    if (now - this.brokenSince >= timeout) {
      this.fail(new StoreUnavailableError(`etcd watch could not reconnect within ${timeout} ms: ${errorMessage(err)}`, err));
      return;
    }
    const delay = Math.min(this.retryDelay * (0.5 + Math.random()), timeout - (now - this.brokenSince));
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state === "open") void this.connect();
    }, delay);
  }
}
