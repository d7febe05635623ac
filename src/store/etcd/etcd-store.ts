/**
 * The etcd backend of the Store contract, on the etcd3 package's raw gRPC clients (`kv`,
 * `leaseClient`, `watchClient`) so every request field is ours.
 *
 * Connection handling (ours, not etcd3's):
 * - One etcd3 client per endpoint, with etcd3's retry and circuit-breaker policies switched off:
 *   etcd3 retries every "recoverable" error (including a too-large request and deadlines, and
 *   including writes whose outcome is unknown) and then opens a 5 s circuit breaker, which would
 *   turn one bad request into seconds of unavailability.
 * - We stick to one member and move to the next when it is unreachable or has no leader.
 *   Reads are retried on another member within the request deadline; writes only when the
 *   request certainly did not run (no connection, or etcd refused it before proposing it),
 *   otherwise they fail with StoreUnavailableError saying the outcome is unknown.
 * - Every call and watch carries gRPC metadata `hasleader: true`, so a member cut off from
 *   its cluster refuses requests and cancels watches ("etcdserver: no leader") instead of
 *   hanging; the watch then resumes on another member.
 *
 * CompactedError's compactRevision: etcd's error text for a compacted read does not carry it,
 * so on that (rare) error we ask etcd with a throw-away watch from revision 1, which etcd
 * cancels at once with its compact revision. If that fails within 2 s, we report the highest
 * compact revision this client has seen (its own compactions, watch cancellations), else 0.
 */
import { CompareResult, CompareTarget, Etcd3 } from "etcd3";
import type {
  ICompare,
  IDeleteRangeRequest,
  IOptions,
  IRangeRequest,
  IRangeResponse,
  IRequestOp,
  IResponseHeader,
  IResponseOp,
  WatchClient,
} from "etcd3";
import { InvalidArgumentError, StoreClosedError, StoreUnavailableError } from "../../model/errors.js";
import type {
  Compare,
  DeleteOptions,
  DeleteResult,
  KeyRange,
  KeyValue,
  LeaseGrant,
  LeaseId,
  LeaseInfo,
  PutOptions,
  PutResult,
  RangeOptions,
  RangeResult,
  Store,
  TxnOp,
  TxnOpResult,
  TxnRequest,
  TxnResult,
  WatchOptions,
} from "../types.js";
import type { ByteRange } from "../validate.js";
import { checkKey, checkLeaseId, checkRangeOptions, checkCompactRevision, checkRevision, checkTtl, checkTxn, checkValue, toByteRange } from "../validate.js";
import type { EtcdErrorContext } from "./etcd-errors.js";
import { castEtcdError, isEndpointFailure, isTransient, tlsFailure, wasNotApplied } from "./etcd-errors.js";
import type { WatchConnection, WatchConnector } from "./etcd-watch.js";
import { EtcdWatch, toKeyValue } from "./etcd-watch.js";

export { castEtcdError } from "./etcd-errors.js";
export { EtcdWatch } from "./etcd-watch.js";

export interface EtcdStoreOptions {
  /** Client URLs of the cluster's members, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /** How long openEtcdStore waits for a first answer from any member. Default 5000. */
  dialTimeoutMs?: number;
  /** Deadline of one request, retries included. Default 15000 (compaction: 4x). */
  requestTimeoutMs?: number;
  /** How long a broken watch keeps trying to reconnect before it fails. Default 30000. */
  watchReconnectTimeoutMs?: number;
  /** TLS (https endpoints): the CA that signed etcd's certificate, and a client certificate and key for etcd's --client-cert-auth (PEM). */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
}

type CallOptions = NonNullable<Parameters<WatchClient["watch"]>[0]>;
type Interceptor = NonNullable<CallOptions["interceptors"]>[number];
type InterceptingCall = ReturnType<Interceptor>;
type FaultHandling = NonNullable<IOptions["faultHandling"]>;
type Policy = NonNullable<FaultHandling["global"]>;

const ZERO = Buffer.from([0]);
/** [\x01, \x01): a range etcd accepts and that holds no key. */
const NOTHING = Buffer.from([1]);
const DEFAULT_DIAL_TIMEOUT_MS = 5_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 15_000;
const DEFAULT_WATCH_RECONNECT_TIMEOUT_MS = 30_000;
const COMPACT_PROBE_TIMEOUT_MS = 2_000;

/** Passes calls straight through: no retries, no circuit breaker (we do our own). */
const NEVER_ABORTED = new AbortController().signal;
const noEvent = (): { dispose(): void } => ({ dispose: () => undefined });
const passThrough = {
  onSuccess: noEvent,
  onFailure: noEvent,
  execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> {
    return Promise.resolve().then(() => fn({ signal: NEVER_ABORTED }));
  },
} as unknown as Policy;

/** Adds etcd's "hasleader: true" metadata: a member without a leader refuses instead of hanging. */
const requireLeader: Interceptor = (options, nextCall) => {
  const call = nextCall(options);
  // grpc-js types an interceptor's result as its InterceptingCall class but only uses the
  // InterceptingCallInterface methods: a proxy that adds metadata in start() is enough.
  const proxy = new Proxy(call, {
    get(target, prop) {
      if (prop === "start") {
        return (...args: Parameters<InterceptingCall["start"]>) => {
          args[0].set("hasleader", "true");
          target.start(...args);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return proxy as unknown as InterceptingCall;
};

const GRPC_CHANNEL_OPTIONS = {
  // Responses may be large (a range over many 1.5 MiB values); grpc-js' default is 4 MiB.
  "grpc.max_receive_message_length": -1,
  "grpc.max_send_message_length": -1,
  // Detect dead connections on idle watch streams (etcd allows pings every 5 s and more).
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 0,
  // Reconnect to a restarted member quickly (grpc-js backs off up to 120 s by default).
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2_000,
};

interface Endpoint {
  url: string;
  client: Etcd3;
  /** Do not prefer this member before this time (ms since epoch). */
  downUntil: number;
  failures: number;
}

/** etcd's key/range_end for a validated range. */
export function toEtcdRange(r: ByteRange): { key: Buffer; range_end?: Buffer } {
  if (r.single) return { key: r.start };
  if (r.start.length === 0) {
    // etcd rejects an empty key; no key sorts before "\0" except "", which cannot exist.
    if (r.end === undefined) return { key: ZERO, range_end: ZERO };
    // ["", "\0") holds no key, but range_end "\0" would mean "to the end" to etcd.
    if (r.end.equals(ZERO)) return { key: NOTHING, range_end: NOTHING };
    return { key: ZERO, range_end: r.end };
  }
  // range_end "\0": every key >= key.
  return { key: r.start, range_end: r.end ?? ZERO };
}

const COMPARE_RESULT: Record<Compare["op"], CompareResult> = {
  "=": CompareResult.Equal,
  "!=": CompareResult.NotEqual,
  "<": CompareResult.Less,
  ">": CompareResult.Greater,
};

function toCompare(c: Compare): ICompare {
  const key = Buffer.from(c.key, "utf8");
  const result = COMPARE_RESULT[c.op];
  switch (c.target) {
    case "value":
      return { key, result, target: CompareTarget.Value, value: Buffer.from(c.value, "utf8") };
    case "version":
      return { key, result, target: CompareTarget.Version, version: c.value };
    case "createRevision":
      return { key, result, target: CompareTarget.Create, create_revision: c.value };
    case "modRevision":
      return { key, result, target: CompareTarget.Mod, mod_revision: c.value };
    case "lease":
      return { key, result, target: CompareTarget.Lease, lease: c.value };
  }
}

function rangeRequest(r: ByteRange, opts: Omit<RangeOptions, "revision"> & { revision?: number }): IRangeRequest {
  const req: IRangeRequest = { ...toEtcdRange(r) };
  if (opts.limit) req.limit = opts.limit;
  if (opts.revision) req.revision = opts.revision;
  if (opts.keysOnly) req.keys_only = true;
  if (opts.countOnly) req.count_only = true;
  if (opts.minModRevision) req.min_mod_revision = opts.minModRevision;
  return req;
}

function toRequestOp(op: TxnOp): IRequestOp {
  switch (op.type) {
    case "put":
      return {
        request_put: {
          key: Buffer.from(op.key, "utf8"),
          value: Buffer.from(op.value, "utf8"),
          lease: op.lease ?? 0,
          prev_kv: op.prevKv === true,
        },
      };
    case "delete": {
      const req: IDeleteRangeRequest = { ...toEtcdRange(toByteRange(op.range)), prev_kv: op.prevKv === true };
      return { request_delete_range: req };
    }
    case "range":
      return { request_range: rangeRequest(toByteRange(op.range), op.options ?? {}) };
  }
}

function headerRevision(header: IResponseHeader | null | undefined, fallback = 0): number {
  const rev = header ? Number(header.revision) : 0;
  return rev > 0 ? rev : fallback;
}

function toRangeResult(res: IRangeResponse, fallbackRevision = 0): RangeResult {
  return {
    kvs: (res.kvs ?? []).map(toKeyValue),
    more: res.more === true,
    count: Number(res.count ?? 0),
    revision: headerRevision(res.header, fallbackRevision),
  };
}

function toOpResult(op: TxnOp, res: IResponseOp | undefined, txnRevision: number): TxnOpResult {
  switch (op.type) {
    case "put": {
      const r = res?.response_put;
      const out: TxnOpResult = { type: "put", revision: headerRevision(r?.header, txnRevision) };
      if (op.prevKv && r?.prev_kv) out.prevKv = toKeyValue(r.prev_kv);
      return out;
    }
    case "delete": {
      const r = res?.response_delete_range;
      const out: TxnOpResult = { type: "delete", revision: headerRevision(r?.header, txnRevision), deleted: Number(r?.deleted ?? 0) };
      if (op.prevKv) out.prevKvs = (r?.prev_kvs ?? []).map(toKeyValue);
      return out;
    }
    case "range": {
      const r = res?.response_range;
      const base = r ? toRangeResult(r, txnRevision) : { kvs: [], more: false, count: 0, revision: txnRevision };
      return { type: "range", ...base };
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function leaseIdsOf(ops: TxnOp[]): string | undefined {
  const ids = new Set(ops.flatMap((op) => (op.type === "put" && op.lease !== undefined ? [op.lease] : [])));
  return ids.size > 0 ? [...ids].join(",") : undefined;
}

function txnBytes(req: TxnRequest): number {
  let n = 0;
  for (const c of req.compare ?? []) n += Buffer.byteLength(c.key) + (c.target === "value" ? Buffer.byteLength(c.value) : 8);
  for (const op of [...(req.success ?? []), ...(req.failure ?? [])]) {
    if (op.type === "put") n += Buffer.byteLength(op.key) + Buffer.byteLength(op.value);
    else n += 64;
  }
  return n;
}

type CallKind = "read" | "write";

export class EtcdStore implements Store {
  readonly backend = "etcd";
  private readonly endpoints: Endpoint[];
  private preferred = 0;
  private closed = false;
  private readonly watches = new Set<EtcdWatch>();
  private knownCompactRevision = 0;
  private readonly requestTimeoutMs: number;
  private readonly watchConnector: WatchConnector;

  constructor(opts: EtcdStoreOptions) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0 || !opts.endpoints.every((e) => typeof e === "string" && e !== "")) {
      throw new InvalidArgumentError("endpoints", "endpoints must be a non-empty array of etcd client URLs");
    }
    this.requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.watchConnector = {
      open: () => this.openWatchStream(),
      failed: (endpoint, err) => {
        const ep = this.endpoints.find((e) => e.url === endpoint);
        if (ep && isEndpointFailure(err)) this.markDown(ep);
      },
      compacted: (revision) => {
        this.knownCompactRevision = Math.max(this.knownCompactRevision, revision);
      },
      done: (watch) => {
        this.watches.delete(watch);
      },
      reconnectTimeoutMs: opts.watchReconnectTimeoutMs ?? DEFAULT_WATCH_RECONNECT_TIMEOUT_MS,
    };
    this.endpoints = opts.endpoints.map((url) => ({
      url,
      client: new Etcd3({
        hosts: [url],
        ...(opts.tls ? { credentials: { rootCertificate: opts.tls.ca, ...(opts.tls.cert && opts.tls.key ? { certChain: opts.tls.cert, privateKey: opts.tls.key } : {}) } } : {}),
        faultHandling: { global: passThrough, host: () => passThrough },
        grpcOptions: GRPC_CHANNEL_OPTIONS,
      }),
      downUntil: 0,
      failures: 0,
    }));
  }

  /** Waits until some member answers (and prefers the first that does). */
  async connect(timeoutMs = DEFAULT_DIAL_TIMEOUT_MS): Promise<void> {
    this.ensureOpen();
    const deadline = Date.now() + timeoutMs;
    const errors: unknown[] = [];
    const probes = this.endpoints.map(async (ep, i) => {
      try {
        await ep.client.kv.range({ key: ZERO, count_only: true }, this.callOptions(deadline));
        return i;
      } catch (err) {
        this.markDown(ep);
        errors.push(err);
        throw err;
      }
    });
    try {
      this.preferred = await Promise.any(probes);
      this.markUp(this.endpoints[this.preferred]!);
    } catch {
      const tls = [...new Set(errors.map((e) => tlsFailure(e instanceof Error ? e.message : String(e))))];
      if (tls.length === 1 && tls[0]) throw new StoreUnavailableError(`etcd at ${this.endpoints.map((e) => e.url).join(", ")}: ${tls[0]}`, errors[0]);
      const detail = errors.map((e) => castEtcdError(e, { op: "connect", timeoutMs }).message).join("; ");
      const waited = Date.now() >= deadline ? ` within ${timeoutMs} ms` : "";
      throw new StoreUnavailableError(`cannot reach etcd at ${this.endpoints.map((e) => e.url).join(", ")}${waited}: ${detail}`, errors[0]);
    }
  }

  /** The member the store currently sends requests and new watches to. */
  get currentEndpoint(): string {
    return this.pick().url;
  }

  async get(key: string, options: { revision?: number } = {}): Promise<KeyValue | undefined> {
    const k = checkKey(key);
    const revision = options.revision === undefined ? 0 : checkRevision(options.revision);
    const res = await this.rangeCall({ start: k, single: true }, { revision }, "get");
    return res.kvs[0];
  }

  async range(range: KeyRange, options: RangeOptions = {}): Promise<RangeResult> {
    const r = toByteRange(range);
    const limit = checkRangeOptions(options);
    const revision = options.revision === undefined ? 0 : checkRevision(options.revision);
    return this.rangeCall(r, { ...options, limit, revision }, "range");
  }

  async put(key: string, value: string, options: PutOptions = {}): Promise<PutResult> {
    const k = checkKey(key);
    const v = checkValue(key, value);
    const lease = options.lease === undefined ? undefined : checkLeaseId(options.lease);
    const prevKv = options.prevKv === true;
    const res = await this.call(
      "write",
      (ep, o) => ep.client.kv.put({ key: k, value: v, lease: lease ?? 0, prev_kv: prevKv }, o),
      { op: "put", leaseId: lease, requestBytes: k.length + v.length },
    );
    const out: PutResult = { revision: headerRevision(res.header) };
    if (prevKv && res.prev_kv) out.prevKv = toKeyValue(res.prev_kv);
    return out;
  }

  async delete(range: KeyRange, options: DeleteOptions = {}): Promise<DeleteResult> {
    const r = toByteRange(range);
    const prevKv = options.prevKv === true;
    const res = await this.call("write", (ep, o) => ep.client.kv.deleteRange({ ...toEtcdRange(r), prev_kv: prevKv }, o), {
      op: "delete",
    });
    const out: DeleteResult = { revision: headerRevision(res.header), deleted: Number(res.deleted ?? 0) };
    if (prevKv) out.prevKvs = (res.prev_kvs ?? []).map(toKeyValue);
    return out;
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    checkTxn(request);
    const compare = (request.compare ?? []).map(toCompare);
    const success = request.success ?? [];
    const failure = request.failure ?? [];
    const req = { compare, success: success.map(toRequestOp), failure: failure.map(toRequestOp) };
    const res = await this.call("write", (ep, o) => ep.client.kv.txn(req, o), {
      op: "txn",
      leaseId: leaseIdsOf([...success, ...failure]),
      ops: Math.max(compare.length, success.length, failure.length),
      requestBytes: txnBytes(request),
    });
    const succeeded = res.succeeded === true;
    const revision = headerRevision(res.header);
    const ops = succeeded ? success : failure;
    const responses = res.responses ?? [];
    return { succeeded, revision, results: ops.map((op, i) => toOpResult(op, responses[i], revision)) };
  }

  watch(range: KeyRange, options: WatchOptions = {}): EtcdWatch {
    const r = toByteRange(range);
    const fromRevision = options.fromRevision === undefined ? undefined : checkRevision(options.fromRevision, "fromRevision");
    this.ensureOpen();
    const { key, range_end } = toEtcdRange(r);
    // Only our "holds no key" marker has key == range_end (etcd refuses to watch it).
    const empty = key.equals(NOTHING) && range_end !== undefined && range_end.equals(NOTHING);
    const watch = new EtcdWatch(this.watchConnector, { key, rangeEnd: range_end, fromRevision, prevKv: options.prevKv === true, empty });
    this.watches.add(watch);
    return watch;
  }

  async compact(revision: number): Promise<void> {
    const rev = checkCompactRevision(revision);
    await this.call("write", (ep, o) => ep.client.kv.compact({ revision: rev, physical: true }, o), { op: "compact", revision: rev }, 4);
    this.knownCompactRevision = Math.max(this.knownCompactRevision, rev);
  }

  async revision(): Promise<number> {
    this.ensureOpen();
    const res = await this.call("read", (ep, o) => ep.client.kv.range({ key: ZERO, count_only: true }, o), { op: "revision" });
    return headerRevision(res.header);
  }

  async grantLease(ttlSeconds: number): Promise<LeaseGrant> {
    const ttl = checkTtl(ttlSeconds);
    const res = await this.call("write", (ep, o) => ep.client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 }, o), { op: "grantLease", ttl });
    if (res.error) throw castEtcdError(new Error(res.error), { op: "grantLease", ttl });
    // etcd raises a TTL below its minimum (1.5 x election timeout, rounded up: 2 s by default).
    return { id: String(res.ID), ttl: Number(res.TTL) };
  }

  async keepAliveOnce(id: LeaseId): Promise<number> {
    const leaseId = checkLeaseId(id);
    const ttl = await this.call("read", (ep, o) => this.keepAliveCall(ep, leaseId, o), { op: "keepAliveOnce", leaseId });
    if (ttl <= 0) throw castEtcdError(new Error("etcdserver: requested lease not found"), { leaseId });
    return ttl;
  }

  async revokeLease(id: LeaseId): Promise<void> {
    const leaseId = checkLeaseId(id);
    await this.call("write", (ep, o) => ep.client.leaseClient.leaseRevoke({ ID: leaseId }, o), { op: "revokeLease", leaseId });
  }

  async leaseInfo(id: LeaseId): Promise<LeaseInfo | undefined> {
    const leaseId = checkLeaseId(id);
    let res;
    try {
      res = await this.call("read", (ep, o) => ep.client.leaseClient.leaseTimeToLive({ ID: leaseId, keys: true }, o), {
        op: "leaseInfo",
        leaseId,
      });
    } catch (err) {
      if ((err as { code?: unknown }).code === "STORE_LEASE_NOT_FOUND") return undefined;
      throw err;
    }
    const ttl = Number(res.TTL);
    if (ttl < 0) return undefined; // etcd answers TTL -1 for a lease that does not exist
    return {
      id: leaseId,
      ttl,
      grantedTtl: Number(res.grantedTTL),
      keys: (res.keys ?? []).map((k) => k.toString("utf8")),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) w.fail(new StoreClosedError());
    this.watches.clear();
    for (const ep of this.endpoints) ep.client.close();
  }

  // --- internals -------------------------------------------------------------------------------

  private ensureOpen(): void {
    if (this.closed) throw new StoreClosedError();
  }

  private callOptions(deadline: number): CallOptions {
    return { deadline, interceptors: [requireLeader] };
  }

  /** The preferred member if it is not marked down, else the next one that is not, else the least recently failed. */
  private pick(): Endpoint {
    const n = this.endpoints.length;
    const now = Date.now();
    for (let i = 0; i < n; i++) {
      const idx = (this.preferred + i) % n;
      const ep = this.endpoints[idx]!;
      if (ep.downUntil <= now) {
        this.preferred = idx;
        return ep;
      }
    }
    let best = this.endpoints[0]!;
    for (const ep of this.endpoints) if (ep.downUntil < best.downUntil) best = ep;
    return best;
  }

  private markDown(ep: Endpoint): void {
    ep.failures++;
    ep.downUntil = Date.now() + Math.min(250 * 2 ** (ep.failures - 1), 5_000);
  }

  private markUp(ep: Endpoint): void {
    ep.failures = 0;
    ep.downUntil = 0;
  }

  /**
   * Runs one request with a deadline, moving to another member on failures of the member.
   * Reads retry any transient failure; writes only those where etcd certainly did not run them.
   */
  private async call<T>(
    kind: CallKind,
    fn: (ep: Endpoint, options: CallOptions) => Promise<T>,
    ctx: EtcdErrorContext,
    timeoutFactor = 1,
  ): Promise<T> {
    this.ensureOpen();
    const timeoutMs = this.requestTimeoutMs * timeoutFactor;
    const deadline = Date.now() + timeoutMs;
    const fullCtx: EtcdErrorContext = { ...ctx, write: kind === "write", timeoutMs };
    for (let attempt = 1; ; attempt++) {
      const ep = this.pick();
      // A read gives each member a part of the budget, so a hung member leaves time for another.
      const attemptDeadline =
        kind === "read" && this.endpoints.length > 1 ? Math.min(deadline, Date.now() + Math.max(timeoutMs / 3, 1_000)) : deadline;
      try {
        const res = await fn(ep, this.callOptions(attemptDeadline));
        this.markUp(ep);
        return res;
      } catch (err) {
        if (this.closed) throw new StoreClosedError();
        if (isEndpointFailure(err)) this.markDown(ep);
        const retry = isTransient(err) && (kind === "read" || wasNotApplied(err));
        const backoff = Math.min(25 * 2 ** (attempt - 1), 1_000);
        if (retry && attempt < this.endpoints.length * 3 + 2 && Date.now() + backoff < deadline) {
          await sleep(backoff);
          if (this.closed) throw new StoreClosedError();
          continue;
        }
        throw await this.explain(err, fullCtx);
      }
    }
  }

  /** castEtcdError, after looking up the numbers etcd's error texts leave out. */
  private async explain(err: unknown, ctx: EtcdErrorContext): Promise<Error> {
    const mapped = castEtcdError(err, ctx);
    if (mapped.code === "STORE_COMPACTED" && ctx.compactRevision === undefined) {
      return castEtcdError(err, { ...ctx, compactRevision: await this.probeCompactRevision() });
    }
    if (mapped.code === "STORE_FUTURE_REVISION" && ctx.currentRevision === undefined) {
      const current = await this.revision().catch(() => 0);
      return castEtcdError(err, { ...ctx, currentRevision: current });
    }
    return mapped;
  }

  private async rangeCall(r: ByteRange, opts: RangeOptions, op: string): Promise<RangeResult> {
    const req = rangeRequest(r, opts);
    const res = await this.call("read", (ep, o) => ep.client.kv.range(req, o), { op, revision: opts.revision });
    return toRangeResult(res);
  }

  /** One request on a LeaseKeepAlive stream; resolves etcd's TTL (0: the lease does not exist). */
  private async keepAliveCall(ep: Endpoint, id: string, options: CallOptions): Promise<number> {
    const stream = await ep.client.leaseClient.leaseKeepAlive(options);
    return new Promise<number>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        try {
          stream.end(); // half-close: etcd ends the call with OK
        } catch {
          // already closed
        }
        fn();
      };
      stream.on("data", (res) => settle(() => resolve(Number(res.TTL))));
      stream.on("error", (err) => settle(() => reject(err)));
      stream.on("end", () => settle(() => reject(new Error("14 UNAVAILABLE: the keepalive stream ended without an answer"))));
      stream.write({ ID: id });
    });
  }

  /**
   * etcd's compact revision, from a watch that starts at revision 1: etcd cancels it at once
   * with `compact_revision` set (if anything was compacted).
   */
  private async probeCompactRevision(): Promise<number> {
    const fallback = this.knownCompactRevision;
    if (this.closed) return fallback;
    let conn: WatchConnection | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      conn = await this.openWatchStream();
      const stream = conn.stream;
      const found = await new Promise<number>((resolve) => {
        timer = setTimeout(() => resolve(0), COMPACT_PROBE_TIMEOUT_MS);
        stream.on("data", (res) => {
          const rev = Number(res.compact_revision || 0);
          if (rev > 0) resolve(rev);
          else if (res.canceled) resolve(0);
        });
        stream.on("error", () => resolve(0));
        stream.write({ create_request: { key: ZERO, start_revision: 1 } });
      });
      if (found > 0) this.knownCompactRevision = Math.max(this.knownCompactRevision, found);
      return Math.max(found, fallback);
    } catch {
      return fallback;
    } finally {
      clearTimeout(timer);
      if (conn) {
        try {
          conn.stream.end();
          conn.stream.cancel();
        } catch {
          // already closed
        }
      }
    }
  }

  private async openWatchStream(): Promise<WatchConnection> {
    this.ensureOpen();
    const ep = this.pick();
    const stream = await ep.client.watchClient.watch({ interceptors: [requireLeader] });
    return { stream, endpoint: ep.url };
  }
}

/** Opens an etcd-backed Store and waits (up to dialTimeoutMs) until a member answers. */
export async function openEtcdStore(opts: EtcdStoreOptions): Promise<EtcdStore> {
  const store = new EtcdStore(opts);
  try {
    await store.connect(opts.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
