/**
 * etcd/gRPC errors -> Constellation's typed errors, in one place (`castEtcdError`).
 *
 * Errors reach us in two shapes: from unary calls, already re-wrapped by the etcd3 package
 * (its own classes, the gRPC status code only left in the message, e.g.
 * "11 OUT_OF_RANGE: etcdserver: mvcc: required revision has been compacted", or for a lease
 * "Lease 5 NOT_FOUND: etcdserver: requested lease not found is expired or revoked"); and from
 * streams (watch, keepalive), as raw @grpc/grpc-js errors with a numeric `code`. Both carry
 * etcd's error text, which is what we match on (etcd 3.4's rpctypes texts).
 */
import {
  CompactedError,
  ConstellationError,
  DuplicateKeyError,
  EmptyKeyError,
  FutureRevisionError,
  InvalidArgumentError,
  InvalidTtlError,
  LeaseNotFoundError,
  RequestTooLargeError,
  StoreClosedError,
  StoreCorruptError,
  StoreUnavailableError,
  TooManyOpsError,
} from "../../model/errors.js";
import { MAX_REQUEST_BYTES, MAX_TXN_OPS } from "../validate.js";

/** What the caller knows about the failed request, to fill in the typed error's fields. */
export interface EtcdErrorContext {
  /** The operation, for messages ("put", "txn", "watch", ...). */
  op?: string;
  /** True for a request that changes data: a failure mid-flight leaves its outcome unknown. */
  write?: boolean;
  leaseId?: string;
  /** The revision the request asked for (range/get/compact/watch). */
  revision?: number;
  /** The store's compact revision, if known (etcd's error text does not carry it). */
  compactRevision?: number;
  /** The store's current revision, if known (etcd's error text does not carry it). */
  currentRevision?: number;
  /** Our estimate of the request's size in bytes. */
  requestBytes?: number;
  /** Number of operations in a txn. */
  ops?: number;
  ttl?: number;
  /** The request timeout, for the message of a deadline error. */
  timeoutMs?: number;
}

/** gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
export const GrpcCode = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const CODE_IN_MESSAGE =
  /(?:^|\s)(\d{1,2}) (?:CANCELLED|UNKNOWN|INVALID_ARGUMENT|DEADLINE_EXCEEDED|NOT_FOUND|ALREADY_EXISTS|PERMISSION_DENIED|RESOURCE_EXHAUSTED|FAILED_PRECONDITION|ABORTED|OUT_OF_RANGE|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS|UNAUTHENTICATED):/;

export function errorMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : typeof err === "string" ? err : String(err);
  // grpc-js ends some messages with an empty "Resolution note:" and a time stamp in brackets.
  return text.replace(/\s*\(\d{4}-\d\d-\d\dT[\d:.]+Z\)\.?/g, "").replace(/\.?\s*Resolution note:\s*$/, "").trim();
}

/** The gRPC status code of an error: its `code` (raw grpc-js errors) or the "14 UNAVAILABLE:" prefix. */
export function grpcCode(err: unknown): number | undefined {
  if (typeof err === "object" && err !== null) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === "number") return code;
  }
  const m = CODE_IN_MESSAGE.exec(errorMessage(err));
  return m ? Number(m[1]) : undefined;
}

/** etcd 3.4 texts (server/etcdserver/api/v3rpc/rpctypes) that say the request was never carried out. */
const NOT_APPLIED = [
  "etcdserver: no leader", // rejected up front: we send "hasleader: true" with every call
  "etcdserver: too many requests",
  "etcdserver: not capable",
];

/** grpc-js texts for a call that never reached a server. */
const NOT_SENT = [/No connection established/i, /ECONNREFUSED/, /Channel closed before call started/i, /Failed to connect/i];

/**
 * True when the request certainly did not run on the server (no connection, or etcd refused it
 * before proposing it), so even a write may be retried on another member.
 */
export function wasNotApplied(err: unknown): boolean {
  const msg = errorMessage(err);
  return NOT_APPLIED.some((t) => msg.includes(t)) || NOT_SENT.some((re) => re.test(msg));
}

/**
 * True for transport and cluster-availability failures (worth retrying elsewhere or later),
 * false for answers (errors etcd meant, e.g. compacted, lease not found, invalid request).
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof ConstellationError) return err instanceof StoreUnavailableError;
  const msg = errorMessage(err);
  if (/request is too large|received message larger than max|database space exceeded/i.test(msg)) return false;
  switch (grpcCode(err)) {
    case GrpcCode.CANCELLED:
    case GrpcCode.UNKNOWN:
    case GrpcCode.DEADLINE_EXCEEDED:
    case GrpcCode.RESOURCE_EXHAUSTED:
    case GrpcCode.ABORTED:
    case GrpcCode.INTERNAL:
    case GrpcCode.UNAVAILABLE:
      return true;
    case undefined:
      // No status: a stream that ended or broke without one.
      return !msg.includes("etcdserver:");
    default:
      return false;
  }
}

/** True when the member we talked to is unreachable or cut off (try another member). */
export function isEndpointFailure(err: unknown): boolean {
  const code = grpcCode(err);
  return code === GrpcCode.UNAVAILABLE || code === GrpcCode.DEADLINE_EXCEEDED || errorMessage(err).includes("etcdserver: no leader");
}

/** What a TLS failure on the link to etcd means and what to do (undefined: not one). */
export function tlsFailure(msg: string): string | undefined {
  if (/alert bad certificate|alert certificate required|alert unknown ca|alert certificate unknown|SSL alert number (42|46|48|116)\b/i.test(msg)) {
    return "etcd refused this controller's client certificate (etcd has --client-cert-auth): give --store-cert and --store-key, a certificate signed by the CA etcd trusts (its --trusted-ca-file)";
  }
  if (/certificate has expired|alert certificate expired|SSL alert number 45\b/i.test(msg)) {
    return "a certificate on the link to etcd has expired (etcd's, or this controller's --store-cert); if it should not have, is this machine's clock right?";
  }
  if (/certificate is not yet valid/i.test(msg)) {
    return "etcd's certificate is not valid yet: is this machine's clock right (or etcd's certificate dated ahead)?";
  }
  if (/unable to verify the first certificate|self[- ]signed certificate|unable to get (local )?issuer certificate/i.test(msg)) {
    return "etcd's certificate is not signed by --store-ca: give the CA that signed etcd's certificate (its --trusted-ca-file, usually)";
  }
  if (/Hostname\/IP does not match|does not match certificate's altnames|ERR_TLS_CERT_ALTNAME_INVALID/i.test(msg)) {
    return "etcd's certificate does not name the address dialled: give --store with a name or address in its certificate";
  }
  if (/disconnected before secure TLS connection was established/i.test(msg)) {
    return "etcd closed the connection during the TLS handshake: it may not speak TLS on this port (give http:// endpoints and no --store-ca), or it refused this client before the handshake ended";
  }
  if (/wrong version number|packet length too long|http_request/i.test(msg)) {
    return "TLS was spoken to a plain-HTTP etcd (or the other way round): give http:// or https:// endpoints to match etcd's --listen-client-urls";
  }
  return undefined;
}

/**
 * Maps any error from the etcd3 client, gRPC or etcd to a ConstellationError.
 *
 * etcd's texts carry no numbers, so numeric fields come from `ctx`: the lease of the request,
 * the revision it asked for, the compact / current revision when the caller looked them up
 * (0 when unknown), our size estimate of the request.
 */
export function castEtcdError(err: unknown, ctx: EtcdErrorContext = {}): ConstellationError {
  if (err instanceof ConstellationError) return err;
  const msg = errorMessage(err);
  const op = ctx.op ?? "request";

  // Answers from etcd (application errors): match etcd's own texts.
  if (msg.includes("requested lease not found")) return new LeaseNotFoundError(ctx.leaseId ?? "(unknown)");
  if (msg.includes("mvcc: required revision has been compacted")) {
    return new CompactedError(ctx.revision ?? 0, ctx.compactRevision ?? 0);
  }
  if (msg.includes("mvcc: required revision is a future revision")) {
    return new FutureRevisionError(ctx.revision ?? 0, ctx.currentRevision ?? 0);
  }
  // "etcdserver: request is too large" (over --max-request-bytes), or gRPC's own limit
  // ("grpc: received message larger than max (N vs. M)", over --max-request-bytes + 512 KiB).
  if (msg.includes("request is too large") || /received message larger than max/i.test(msg)) {
    const size = /larger than max \((\d+) vs/.exec(msg);
    return new RequestTooLargeError(size ? Number(size[1]) : (ctx.requestBytes ?? 0), MAX_REQUEST_BYTES);
  }
  if (msg.includes("duplicate key given in txn request")) return new DuplicateKeyError("(unknown: etcd does not name it)");
  if (msg.includes("too many operations in txn request")) return new TooManyOpsError(ctx.ops ?? 0, MAX_TXN_OPS);
  if (msg.includes("etcdserver: key is not provided")) return new EmptyKeyError();
  if (msg.includes("etcdserver: too large lease TTL")) return new InvalidTtlError(ctx.ttl);
  if (msg.includes("etcdserver: corrupt cluster")) return new StoreCorruptError(`etcd reports a corrupt cluster (${op}): ${msg}`, err);
  // etcd3's ClientClosedError: "Tried to call a KV method on etcd3, but the client was already closed".
  if (msg.includes("client was already closed")) return new StoreClosedError();

  const tls = tlsFailure(msg);
  if (tls) return new StoreUnavailableError(`etcd ${op} failed: ${tls}`, err);

  const code = grpcCode(err);
  switch (code) {
    case GrpcCode.DEADLINE_EXCEEDED:
      return new StoreUnavailableError(
        `etcd did not answer the ${op} within ${ctx.timeoutMs ?? "the"} ms` +
          (ctx.write ? " (the write may or may not have been applied)" : "") +
          `: ${msg}`,
        err,
      );
    case GrpcCode.DATA_LOSS:
      return new StoreCorruptError(`etcd reports data loss (${op}): ${msg}`, err);
    case GrpcCode.INVALID_ARGUMENT:
    case GrpcCode.OUT_OF_RANGE:
    case GrpcCode.FAILED_PRECONDITION:
      return new InvalidArgumentError("request", `etcd rejected the ${op}: ${msg}`);
    default:
      // Unavailable, connection failures, no leader, request timed out, permission problems,
      // anything unknown: the store could not do it.
      return new StoreUnavailableError(
        `etcd ${op} failed` +
          (ctx.write && !wasNotApplied(err) ? " (the write may or may not have been applied)" : "") +
          `: ${msg}`,
        err,
      );
  }
}
