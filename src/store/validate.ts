/**
 * Input checks shared by every backend, run before anything is sent or written, so both
 * backends reject the same bad input with the same typed error (and nothing is written).
 */
import {
  DuplicateKeyError,
  EmptyKeyError,
  InvalidArgumentError,
  InvalidRangeError,
  InvalidTtlError,
  KeyTooLargeError,
  RequestTooLargeError,
  TooManyOpsError,
  ValueTooLargeError,
} from "../model/errors.js";
import type { LeaseId, TxnOp, TxnRequest } from "./types.js";

/** etcd's default --max-request-bytes: no single value may exceed it. */
export const MAX_VALUE_BYTES = 1.5 * 1024 * 1024;
export const MAX_KEY_BYTES = 4096;
/** A whole request (txn). etcd is started with a larger --max-request-bytes to fit it. */
export const MAX_REQUEST_BYTES = 2 * 1024 * 1024;
/** etcd's default --max-txn-ops. */
export const MAX_TXN_OPS = 128;
export const MAX_LEASE_TTL = 9_000_000_000;

/** A key range as bytes: the order both SQLite (BLOB memcmp) and etcd use. */
export interface ByteRange {
  start: Buffer;
  /** Exclusive end; undefined with `single` false means "to the end of the key space". */
  end?: Buffer;
  single: boolean;
}

export function checkKey(key: unknown, field = "key"): Buffer {
  if (typeof key !== "string") throw new InvalidArgumentError(field, `${field} must be a string, got ${typeof key}`);
  if (key.length === 0) throw new EmptyKeyError();
  const bytes = Buffer.from(key, "utf8");
  if (bytes.length > MAX_KEY_BYTES) throw new KeyTooLargeError(bytes.length, MAX_KEY_BYTES);
  return bytes;
}

export function checkValue(key: string, value: unknown): Buffer {
  if (typeof value !== "string") throw new InvalidArgumentError("value", `value must be a string, got ${typeof value}`);
  // Cheap bound first: a UTF-8 string is at most 3 bytes per UTF-16 unit.
  if (value.length * 3 > MAX_VALUE_BYTES) {
    const size = Buffer.byteLength(value, "utf8");
    if (size > MAX_VALUE_BYTES) throw new ValueTooLargeError(key, size, MAX_VALUE_BYTES);
  }
  return Buffer.from(value, "utf8");
}

export function checkLeaseId(id: unknown, field = "lease"): LeaseId {
  if (typeof id !== "string" || !/^[1-9][0-9]{0,18}$/.test(id)) {
    throw new InvalidArgumentError(field, `${field} must be a lease ID (a positive decimal integer string), got ${JSON.stringify(id)}`);
  }
  return id;
}

export function checkTtl(ttl: unknown): number {
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_LEASE_TTL) throw new InvalidTtlError(ttl);
  return ttl;
}

export function checkRevision(rev: unknown, field = "revision"): number {
  if (typeof rev !== "number" || !Number.isSafeInteger(rev) || rev < 0) {
    throw new InvalidArgumentError(field, `${field} must be a non-negative integer, got ${String(rev)}`);
  }
  return rev;
}

/** A compaction target: a revision of at least 1 (revision 0 would mean "nothing"). */
export function checkCompactRevision(rev: unknown): number {
  if (typeof rev !== "number" || !Number.isSafeInteger(rev) || rev < 1) {
    throw new InvalidArgumentError("revision", `compact revision must be a positive integer, got ${String(rev)}`);
  }
  return rev;
}

export function checkLimit(limit: unknown): number {
  if (limit === undefined) return 0;
  if (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 0) {
    throw new InvalidArgumentError("limit", `limit must be a non-negative integer, got ${String(limit)}`);
  }
  return limit;
}

/** A range's options: its limit (0: none), after checking that minModRevision is sound. */
export function checkRangeOptions(options: { limit?: unknown; minModRevision?: unknown } | undefined): number {
  const limit = checkLimit(options?.limit);
  const min = options?.minModRevision;
  if (min === undefined) return limit;
  if (typeof min !== "number" || !Number.isSafeInteger(min) || min < 0) {
    throw new InvalidArgumentError("minModRevision", `minModRevision must be a non-negative integer, got ${String(min)}`);
  }
  if (limit > 0 && min > 0) throw new InvalidArgumentError("minModRevision", "minModRevision cannot be combined with limit: read what changed whole");
  return limit;
}

/** The first key after every key that starts with `prefix` (etcd's GetPrefixRangeEnd). */
export function prefixEnd(prefix: Buffer): Buffer | undefined {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  return undefined; // all 0xff (or empty): no upper bound
}

export function toByteRange(range: unknown): ByteRange {
  if (typeof range !== "object" || range === null) {
    throw new InvalidArgumentError("range", "range must be { key }, { prefix } or { start, end? }");
  }
  const r = range as Record<string, unknown>;
  if ("key" in r) return { start: checkKey(r.key), single: true };
  if ("prefix" in r) {
    if (typeof r.prefix !== "string") throw new InvalidArgumentError("prefix", "prefix must be a string");
    const start = Buffer.from(r.prefix, "utf8");
    if (start.length > MAX_KEY_BYTES) throw new KeyTooLargeError(start.length, MAX_KEY_BYTES);
    const end = prefixEnd(start);
    return end ? { start, end, single: false } : { start, single: false };
  }
  if ("start" in r) {
    if (typeof r.start !== "string") throw new InvalidArgumentError("start", "start must be a string");
    const start = Buffer.from(r.start, "utf8");
    if (start.length > MAX_KEY_BYTES) throw new KeyTooLargeError(start.length, MAX_KEY_BYTES);
    if (r.end === undefined) return { start, single: false };
    if (typeof r.end !== "string") throw new InvalidArgumentError("end", "end must be a string");
    const end = Buffer.from(r.end, "utf8");
    if (Buffer.compare(end, start) <= 0) {
      throw new InvalidRangeError(
        `range end ${JSON.stringify(r.end)} is not after its start ${JSON.stringify(r.start)}: end is exclusive and must sort after start`,
      );
    }
    return { start, end, single: false };
  }
  throw new InvalidArgumentError("range", "range must be { key }, { prefix } or { start, end? }");
}

export function inByteRange(range: ByteRange, key: Buffer): boolean {
  if (range.single) return key.equals(range.start);
  if (Buffer.compare(key, range.start) < 0) return false;
  return range.end === undefined || Buffer.compare(key, range.end) < 0;
}

function checkOps(ops: unknown, branch: string): TxnOp[] {
  if (ops === undefined) return [];
  if (!Array.isArray(ops)) throw new InvalidArgumentError(branch, `${branch} must be an array of operations`);
  if (ops.length > MAX_TXN_OPS) throw new TooManyOpsError(ops.length, MAX_TXN_OPS);
  return ops as TxnOp[];
}

/**
 * Checks a whole txn: sizes, counts, and that no branch writes a key twice (etcd's rule:
 * puts may not repeat a key, and a put may not fall inside a delete range of the same branch).
 * Returns the request's size in bytes.
 */
export function checkTxn(req: TxnRequest): void {
  if (typeof req !== "object" || req === null) throw new InvalidArgumentError("txn", "txn must be an object");
  const compare = req.compare ?? [];
  if (!Array.isArray(compare)) throw new InvalidArgumentError("compare", "compare must be an array");
  if (compare.length > MAX_TXN_OPS) throw new TooManyOpsError(compare.length, MAX_TXN_OPS);
  let size = 0;
  for (const c of compare) {
    if (typeof c !== "object" || c === null) throw new InvalidArgumentError("compare", "each compare must be an object");
    size += checkKey(c.key, "compare.key").length;
    if (!["=", "!=", "<", ">"].includes(c.op)) {
      throw new InvalidArgumentError("compare.op", `compare op must be one of = != < >, got ${JSON.stringify(c.op)}`);
    }
    switch (c.target) {
      case "value":
        size += checkValue(c.key, c.value).length;
        break;
      case "version":
      case "createRevision":
      case "modRevision":
        checkRevision(c.value, `compare.${c.target}`);
        break;
      case "lease":
        if (c.value !== "0") checkLeaseId(c.value, "compare.lease");
        break;
      default:
        throw new InvalidArgumentError(
          "compare.target",
          `compare target must be value, version, createRevision, modRevision or lease, got ${JSON.stringify((c as { target: unknown }).target)}`,
        );
    }
  }
  for (const [branch, ops] of [
    ["success", checkOps(req.success, "success")],
    ["failure", checkOps(req.failure, "failure")],
  ] as const) {
    const puts = new Set<string>();
    const deletes: ByteRange[] = [];
    for (const op of ops) {
      if (typeof op !== "object" || op === null) throw new InvalidArgumentError(branch, "each operation must be an object");
      switch (op.type) {
        case "put": {
          const k = checkKey(op.key);
          size += k.length + checkValue(op.key, op.value).length;
          if (op.lease !== undefined) checkLeaseId(op.lease);
          if (puts.has(op.key)) throw new DuplicateKeyError(op.key);
          puts.add(op.key);
          break;
        }
        case "delete":
          deletes.push(toByteRange(op.range));
          break;
        case "range":
          toByteRange(op.range);
          checkRangeOptions(op.options);
          break;
        default:
          throw new InvalidArgumentError(
            `${branch}.type`,
            `operation type must be put, delete or range, got ${JSON.stringify((op as { type: unknown }).type)}`,
          );
      }
    }
    for (const key of puts) {
      const kb = Buffer.from(key, "utf8");
      if (deletes.some((d) => inByteRange(d, kb))) throw new DuplicateKeyError(key);
    }
  }
  if (size > MAX_REQUEST_BYTES) throw new RequestTooLargeError(size, MAX_REQUEST_BYTES);
}
