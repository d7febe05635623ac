/**
 * The Store contract: etcd's data model and semantics, so the embedded SQLite backend and a
 * real etcd cluster are interchangeable (one conformance suite runs against both).
 *
 * - One global revision, starting at 1 for an empty store; every write (put, delete of at
 *   least one key, or a txn with writes) raises it by exactly one, and every key written by
 *   that request carries it as its `modRevision`.
 * - Per key: `createRevision` (revision of the put that created it since its last delete),
 *   `modRevision`, `version` (1 on create, +1 on every put; a deleted key has version 0).
 * - Keys and values are UTF-8 strings (see docs/store.md for the byte limits).
 * - Lease IDs are decimal strings: etcd's are 64-bit and do not fit a JS number.
 */

export type LeaseId = string;

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** Lease the key is attached to, if any. */
  lease?: LeaseId;
}

/** Which keys a request touches: one key, every key with a prefix, or [start, end). */
export type KeyRange =
  | { key: string }
  | { prefix: string }
  /** `end` is exclusive; leave it out for "every key from start on". */
  | { start: string; end?: string };

export interface RangeOptions {
  /** At most this many keys (0 or absent: no limit). `more` says whether some were left out. */
  limit?: number;
  /** Read as of this past revision (must not be compacted). */
  revision?: number;
  /** Return keys and metadata without values. */
  keysOnly?: boolean;
  /** Return only the count. */
  countOnly?: boolean;
  /**
   * Return only keys last modified at this revision or later (etcd's min_mod_revision): what
   * changed since a read. `count` still counts every key in the range. Not with `limit`.
   */
  minModRevision?: number;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** True when `limit` cut the result. */
  more: boolean;
  /** How many keys the range holds (regardless of limit). */
  count: number;
  /** The store's revision when the read was served. */
  revision: number;
}

export interface PutOptions {
  lease?: LeaseId;
  /** Return the key's previous value. */
  prevKv?: boolean;
}

export interface PutResult {
  revision: number;
  prevKv?: KeyValue;
}

export interface DeleteOptions {
  prevKv?: boolean;
}

export interface DeleteResult {
  /** The store's revision after the delete (unchanged when nothing was deleted). */
  revision: number;
  deleted: number;
  prevKvs?: KeyValue[];
}

export type CompareOp = "=" | "!=" | "<" | ">";

/**
 * A txn guard. A key that does not exist has version, createRevision and modRevision 0 and
 * no lease ("0"); a compare on the value of a missing key is false.
 */
export type Compare =
  | { key: string; target: "value"; op: CompareOp; value: string }
  | { key: string; target: "version" | "createRevision" | "modRevision"; op: CompareOp; value: number }
  | { key: string; target: "lease"; op: CompareOp; value: LeaseId };

export type TxnOp =
  | { type: "put"; key: string; value: string; lease?: LeaseId; prevKv?: boolean }
  | { type: "delete"; range: KeyRange; prevKv?: boolean }
  | { type: "range"; range: KeyRange; options?: Omit<RangeOptions, "revision"> };

export type TxnOpResult =
  | ({ type: "put" } & PutResult)
  | ({ type: "delete" } & DeleteResult)
  | ({ type: "range" } & RangeResult);

export interface TxnRequest {
  /** All must hold for `success` to run; otherwise `failure` runs. Empty: success. */
  compare?: Compare[];
  success?: TxnOp[];
  failure?: TxnOp[];
}

export interface TxnResult {
  succeeded: boolean;
  /** The store's revision after the txn (raised by one if it wrote anything). */
  revision: number;
  results: TxnOpResult[];
}

export interface WatchEvent {
  type: "put" | "delete";
  /** For a delete: key, empty value, version 0, modRevision = the delete's revision. */
  kv: KeyValue;
  prevKv?: KeyValue;
}

/** All events of one revision, in the order the request wrote them. */
export interface WatchBatch {
  revision: number;
  events: WatchEvent[];
}

export interface WatchOptions {
  /** First revision to deliver (inclusive). Default: changes after the watch is created. */
  fromRevision?: number;
  prevKv?: boolean;
}

/**
 * A watch delivers every change to its range in revision order, one batch per revision, with
 * no gaps and no duplicates. To resume after a break, watch again from the last batch's
 * revision + 1. Iteration throws `CompactedError` if the history it needs has been compacted.
 */
export interface Watch extends AsyncIterable<WatchBatch> {
  /** Resolves once the watch is registered with the store (changes after this are seen). */
  readonly ready: Promise<void>;
  close(): void;
}

export interface LeaseGrant {
  id: LeaseId;
  /** Granted TTL in seconds (a backend may round a short TTL up). */
  ttl: number;
}

export interface LeaseInfo {
  id: LeaseId;
  /** Seconds left. */
  ttl: number;
  grantedTtl: number;
  keys: string[];
}

export interface Store {
  /** Which backend this is: "sqlite" or "etcd". */
  readonly backend: string;
  get(key: string, options?: { revision?: number }): Promise<KeyValue | undefined>;
  range(range: KeyRange, options?: RangeOptions): Promise<RangeResult>;
  put(key: string, value: string, options?: PutOptions): Promise<PutResult>;
  delete(range: KeyRange, options?: DeleteOptions): Promise<DeleteResult>;
  txn(request: TxnRequest): Promise<TxnResult>;
  watch(range: KeyRange, options?: WatchOptions): Watch;
  /** Drops history below `revision`; reads and watches below it fail with `CompactedError`. */
  compact(revision: number): Promise<void>;
  /** The store's current revision. */
  revision(): Promise<number>;
  grantLease(ttlSeconds: number): Promise<LeaseGrant>;
  /** Renews a lease once; throws `LeaseNotFoundError` if it has expired. Returns the TTL. */
  keepAliveOnce(id: LeaseId): Promise<number>;
  /** Revokes a lease and deletes its keys (one revision, a delete event per key). */
  revokeLease(id: LeaseId): Promise<void>;
  /** Lease details, or undefined if it does not exist (any more). */
  leaseInfo(id: LeaseId): Promise<LeaseInfo | undefined>;
  close(): Promise<void>;
}
