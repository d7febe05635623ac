/**
 * The embedded Store: etcd's semantics on one SQLite file (better-sqlite3, WAL).
 *
 * Every write is one SQLite transaction taken with BEGIN IMMEDIATE, so writers in several
 * processes sharing the file are serialized and each gets the next global revision. A write is
 * acknowledged only after COMMIT; with WAL and synchronous=NORMAL a committed write survives
 * the process being killed (it is in the WAL, in the OS page cache); `durability: "fsync"`
 * (synchronous=FULL) also survives power loss, at the cost of an fsync per write.
 *
 * Watches read the log from their own cursor (see watch.ts): a write in this process wakes them
 * at once; writes by other processes are noticed by a short poll while any watch is open.
 * Leases expire by wall clock; a reaper revokes expired leases (one revision each).
 */
import { randomInt } from "node:crypto";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type Database from "better-sqlite3";
import { Sqlite } from "./driver.js";
import {
  CompactedError,
  FutureRevisionError,
  LeaseNotFoundError,
  StoreClosedError,
  StoreCorruptError,
  StoreUnavailableError,
  isConstellationError,
} from "../../model/errors.js";
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
  Watch,
  WatchOptions,
} from "../types.js";
import {
  type ByteRange,
  checkCompactRevision,
  checkKey,
  checkLeaseId,
  checkRangeOptions,
  checkRevision,
  checkTtl,
  checkTxn,
  checkValue,
  toByteRange,
} from "../validate.js";
import { DDL, type KvRow, type LogRow, SCHEMA_VERSION, type Statements, kvFromRow, prepareStatements, prevKvFromLog } from "./schema.js";
import { SqliteWatch } from "./watch.js";

export interface SqliteStoreOptions {
  /** Path of the database file, or ":memory:" (single process only). */
  path: string;
  /** "normal" (default): survives a process crash. "fsync": also survives power loss. */
  durability?: "normal" | "fsync";
  /**
   * Automatic compaction: keep at least this many revisions of history (default 10,000);
   * 0 turns it off. Checked every `retainRevisions / 10` writes and on a timer.
   */
  retainRevisions?: number;
  /**
   * Let several processes open the file at once (default false). By default the store holds
   * SQLite's exclusive lock for as long as it is open: a second process is refused at open
   * with a clear error, and writes skip the per-transaction file locking (about 1.5x faster;
   * see docs/store.md). Shared mode is for tools and tests that need several processes.
   */
  shared?: boolean;
  /** SQLite's page cache, in KiB (default 1024). */
  cacheKib?: number;
  /** Shared mode: how often to look for writes by other processes while a watch is open (default 25 ms). */
  pollIntervalMs?: number;
  /** How often expired leases are revoked (default 250 ms). */
  leaseCheckIntervalMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/** What one write transaction changed: the log rows to hand to watchers. */
interface WriteState {
  rev: number;
  /** Log rows written so far (their order within the revision). */
  seq: number;
  wrote: boolean;
}

export class SqliteStore implements Store {
  readonly backend = "sqlite";
  private readonly db: Database.Database;
  private readonly st: Statements;
  private readonly tx: Database.Transaction<(fn: () => unknown) => unknown>;
  private readonly watches = new Set<SqliteWatch>();
  private readonly now: () => number;
  private readonly retain: number;
  private readonly pollIntervalMs: number;
  private readonly shared: boolean;
  private closed = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private readonly leaseTimer: NodeJS.Timeout;
  private wakeScheduled = false;
  private lastSeen = "";
  /** Exclusive mode only: the revision, kept in memory after each committed write. */
  private knownRevision: number | undefined;
  private writesSinceCompactCheck = 0;

  constructor(options: SqliteStoreOptions) {
    this.now = options.now ?? steadyClock();
    this.retain = options.retainRevisions ?? 10_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 25;
    this.shared = options.shared ?? false;
    if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true });
    try {
      this.db = new Sqlite(options.path);
    } catch (err) {
      throw new StoreCorruptError(`cannot open the store at ${options.path}: ${(err as Error).message}`, err);
    }
    try {
      if (!this.shared) this.db.pragma("locking_mode = EXCLUSIVE"); // before WAL: wal-index in heap, no shm
      this.db.pragma(`busy_timeout = ${this.shared ? 5000 : 100}`);
      this.db.pragma("journal_mode = WAL");
      this.db.pragma(`synchronous = ${options.durability === "fsync" ? "FULL" : "NORMAL"}`);
      // Checkpoint the WAL into the main file every ~40 MB instead of ~4 MB: fewer, larger
      // checkpoints (each one fsyncs); the WAL is truncated back to 64 MB at most afterwards.
      this.db.pragma("wal_autocheckpoint = 10000");
      this.db.pragma("journal_size_limit = 67108864");
      // A page cache of 1 MiB (better-sqlite3 builds SQLite with 16 MiB): the controller's memory
      // at 10,000 stars is its budget (issue 11); pages beyond it come from the OS's cache.
      this.db.pragma(`cache_size = -${options.cacheKib ?? 1024}`);
      this.db.exec(DDL); // also takes the exclusive lock now, not at the first request
    } catch (err) {
      this.db.close();
      const code = (err as { code?: string }).code ?? "";
      if (code.startsWith("SQLITE_BUSY")) {
        throw new StoreUnavailableError(
          `the store at ${options.path} is in use by another process: stop that process (only one constellation may own a data dir)`,
          err,
        );
      }
      throw new StoreCorruptError(`cannot open the store at ${options.path}: ${(err as Error).message}`, err);
    }
    const schema = (this.db.prepare("SELECT value FROM meta WHERE name = 'schema'").get() as { value: number }).value;
    if (schema !== SCHEMA_VERSION) {
      this.db.close();
      throw new StoreCorruptError(`store at ${options.path} has schema ${schema}; this version reads schema ${SCHEMA_VERSION}`);
    }
    this.st = prepareStatements(this.db);
    // One transaction wrapper, made once (better-sqlite3 builds its BEGIN/COMMIT on creation):
    // tx(fn) reads in one snapshot, tx.immediate(fn) writes under the write lock.
    this.tx = this.db.transaction((fn: () => unknown) => fn());
    this.leaseTimer = setInterval(() => this.reapExpiredLeases(), options.leaseCheckIntervalMs ?? 250);
    this.leaseTimer.unref();
  }

  // ---- reads -------------------------------------------------------------------------

  async get(key: string, options?: { revision?: number }): Promise<KeyValue | undefined> {
    const k = checkKey(key);
    const rev = options?.revision === undefined ? 0 : checkRevision(options.revision);
    return this.guard(() => {
      if (rev) return (this.tx(() => this.rangeAt({ start: k, single: true }, rev, 1, false)) as RangeResult).kvs[0];
      const row = this.st.getKv.get(k);
      return row ? kvFromRow(row, false) : undefined;
    });
  }

  async range(range: KeyRange, options: RangeOptions = {}): Promise<RangeResult> {
    const r = toByteRange(range);
    const limit = checkRangeOptions(options);
    if (options.revision !== undefined) checkRevision(options.revision);
    return this.guard(() => this.tx(() => this.rangeNow(r, limit, options)) as RangeResult);
  }

  private rangeNow(r: ByteRange, limit: number, options: Omit<RangeOptions, "limit">): RangeResult {
    const since = options.minModRevision ?? 0;
    if (options.revision) {
      const res = this.rangeAt(r, options.revision, limit, options.keysOnly ?? false);
      if (options.countOnly) return { ...res, kvs: [], more: false };
      return since > 0 ? { ...res, kvs: res.kvs.filter((kv) => kv.modRevision >= since) } : res;
    }
    const revision = this.currentRevision();
    if (r.single) {
      const row = this.st.getKv.get(r.start);
      const kvs = row && !options.countOnly && row.mod_rev >= since ? [kvFromRow(row, options.keysOnly ?? false)] : [];
      return { kvs, more: false, count: row ? 1 : 0, revision };
    }
    const count = (r.end ? this.st.countKvBetween.get(r.start, r.end) : this.st.countKvFrom.get(r.start))!.n;
    if (options.countOnly) return { kvs: [], more: false, count, revision };
    const max = limit > 0 ? limit : -1;
    if (since > 0) {
      // What changed since a read: filtered in SQLite, so the rest are never made into objects.
      const keysOnly = options.keysOnly ?? false;
      const rows = keysOnly
        ? r.end
          ? this.st.rangeKeysSinceBetween.all(r.start, r.end, since)
          : this.st.rangeKeysSinceFrom.all(r.start, since)
        : r.end
          ? this.st.rangeKvSinceBetween.all(r.start, r.end, since)
          : this.st.rangeKvSinceFrom.all(r.start, since);
      return { kvs: rows.map((row) => kvFromRow(row, keysOnly)), more: false, count, revision };
    }
    const rows = options.keysOnly
      ? r.end
        ? this.st.rangeKeysBetween.all(r.start, r.end, max)
        : this.st.rangeKeysFrom.all(r.start, max)
      : r.end
        ? this.st.rangeKvBetween.all(r.start, r.end, max)
        : this.st.rangeKvFrom.all(r.start, max);
    const kvs = rows.map((row) => kvFromRow(row, options.keysOnly ?? false));
    return { kvs, more: limit > 0 && count > kvs.length, count, revision };
  }

  /** Range as of a past revision: the current state with every later change undone. */
  private rangeAt(r: ByteRange, rev: number, limit: number, keysOnly: boolean): RangeResult {
    const current = this.currentRevision();
    if (rev > current) throw new FutureRevisionError(rev, current);
    const compactRev = this.compactRevision();
    if (rev < compactRev) throw new CompactedError(rev, compactRev);
    const state = new Map<string, { key: Buffer; kv: KeyValue }>();
    let now: KvRow[];
    let undo: LogRow[];
    if (r.single) {
      const row = this.st.getKv.get(r.start);
      now = row ? [row] : [];
      undo = this.st.undoBetween.all(rev, r.start, Buffer.concat([r.start, Buffer.from([0])]));
    } else if (r.end) {
      now = this.st.rangeKvBetween.all(r.start, r.end, -1);
      undo = this.st.undoBetween.all(rev, r.start, r.end);
    } else {
      now = this.st.rangeKvFrom.all(r.start, -1);
      undo = this.st.undoFrom.all(rev, r.start);
    }
    for (const row of now) state.set(row.key.toString("latin1"), { key: row.key, kv: kvFromRow(row, false) });
    for (const row of undo) {
      const prev = prevKvFromLog(row);
      if (prev) state.set(row.key.toString("latin1"), { key: row.key, kv: prev });
      else state.delete(row.key.toString("latin1"));
    }
    const all = [...state.values()].sort((a, b) => Buffer.compare(a.key, b.key));
    const kept = limit > 0 ? all.slice(0, limit) : all;
    const kvs = kept.map(({ kv }) => (keysOnly ? { ...kv, value: "" } : kv));
    return { kvs, more: kept.length < all.length, count: all.length, revision: current };
  }

  async revision(): Promise<number> {
    return this.guard(() => this.currentRevision());
  }

  private currentRevision(): number {
    // The sole owner of the file knows its revision; in shared mode others may have written.
    if (this.knownRevision !== undefined) return this.knownRevision;
    const rev = this.st.revision.get()!.rev;
    if (!this.shared) this.knownRevision = rev;
    return rev;
  }

  private compactRevision(): number {
    return this.st.getMeta.get("compact_revision")!.value;
  }

  // ---- writes ------------------------------------------------------------------------

  async put(key: string, value: string, options: PutOptions = {}): Promise<PutResult> {
    const k = checkKey(key);
    const v = checkValue(key, value);
    const lease = options.lease === undefined ? 0 : leaseNumber(checkLeaseId(options.lease));
    return this.write((w) => {
      const prev = this.applyPut(w, k, v, lease);
      return options.prevKv && prev ? { revision: w.rev, prevKv: kvFromRow(prev, false) } : { revision: w.rev };
    });
  }

  async delete(range: KeyRange, options: DeleteOptions = {}): Promise<DeleteResult> {
    const r = toByteRange(range);
    return this.write((w) => {
      const deleted = this.applyDelete(w, r);
      const res: DeleteResult = { revision: w.wrote ? w.rev : w.rev - 1, deleted: deleted.length };
      if (options.prevKv) res.prevKvs = deleted.map((row) => kvFromRow(row, false));
      return res;
    });
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    checkTxn(request);
    return this.write((w) => {
      const succeeded = (request.compare ?? []).every((c) => this.evalCompare(c));
      const ops = (succeeded ? request.success : request.failure) ?? [];
      // Each op's result reports the store's revision as of just after that op, as etcd does.
      const results = ops.map((op) => ({ ...this.applyOp(w, op), revision: w.wrote ? w.rev : w.rev - 1 }));
      return { succeeded, revision: w.wrote ? w.rev : w.rev - 1, results };
    });
  }

  private applyOp(w: WriteState, op: TxnOp): TxnOpResult {
    switch (op.type) {
      case "put": {
        const lease = op.lease === undefined ? 0 : leaseNumber(op.lease);
        const prev = this.applyPut(w, Buffer.from(op.key, "utf8"), Buffer.from(op.value, "utf8"), lease);
        return op.prevKv && prev ? { type: "put", revision: w.rev, prevKv: kvFromRow(prev, false) } : { type: "put", revision: w.rev };
      }
      case "delete": {
        const deleted = this.applyDelete(w, toByteRange(op.range));
        const res: TxnOpResult = { type: "delete", revision: w.rev, deleted: deleted.length };
        if (op.prevKv) res.prevKvs = deleted.map((row) => kvFromRow(row, false));
        return res;
      }
      case "range": {
        const res = this.rangeNow(toByteRange(op.range), checkRangeOptions(op.options), op.options ?? {});
        return { type: "range", ...res };
      }
    }
  }

  private applyPut(w: WriteState, key: Buffer, value: Buffer, lease: number): KvRow | undefined {
    if (lease !== 0) this.requireLiveLease(lease);
    const prev = this.st.getKv.get(key);
    const createRev = prev ? prev.create_rev : w.rev;
    const version = prev ? prev.version + 1 : 1;
    this.st.upsertKv.run(key, value, createRev, w.rev, version, lease);
    this.st.insertLog.run(w.rev, w.seq++, key, 0, value, createRev, version, lease, ...prevColumns(prev));
    w.wrote = true;
    return prev;
  }

  private applyDelete(w: WriteState, r: ByteRange): KvRow[] {
    let rows: KvRow[];
    if (r.single) {
      const row = this.st.getKv.get(r.start);
      rows = row ? [row] : [];
    } else {
      rows = r.end ? this.st.rangeKvBetween.all(r.start, r.end, -1) : this.st.rangeKvFrom.all(r.start, -1);
    }
    for (const row of rows) {
      this.st.deleteKv.run(row.key);
      this.st.insertLog.run(w.rev, w.seq++, row.key, 1, null, 0, 0, 0, ...prevColumns(row));
    }
    if (rows.length > 0) w.wrote = true;
    return rows;
  }

  private evalCompare(c: Compare): boolean {
    const row = this.st.getKv.get(Buffer.from(c.key, "utf8"));
    let cmp: number;
    switch (c.target) {
      case "value":
        if (!row) return false;
        cmp = Buffer.compare(row.value, Buffer.from(c.value, "utf8"));
        break;
      case "version":
        cmp = Math.sign((row?.version ?? 0) - c.value);
        break;
      case "createRevision":
        cmp = Math.sign((row?.create_rev ?? 0) - c.value);
        break;
      case "modRevision":
        cmp = Math.sign((row?.mod_rev ?? 0) - c.value);
        break;
      case "lease":
        cmp = Math.sign((row?.lease ?? 0) - Number(c.value));
        break;
    }
    switch (c.op) {
      case "=":
        return cmp === 0;
      case "!=":
        return cmp !== 0;
      case "<":
        return cmp < 0;
      case ">":
        return cmp > 0;
    }
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction with the next revision; stores the revision only if
   * `fn` wrote something. A thrown error rolls everything back: nothing is half-written.
   */
  private write<T>(fn: (w: WriteState) => T): T {
    const w: WriteState = { rev: 0, seq: 0, wrote: false };
    const result = this.guard(() =>
      this.tx.immediate(() => {
        w.rev = this.currentRevision() + 1;
        return fn(w);
      }),
    ) as T;
    if (w.wrote && !this.shared) this.knownRevision = w.rev; // committed

    this.wakeWatches();
    if (this.retain > 0 && ++this.writesSinceCompactCheck >= Math.max(1, Math.floor(this.retain / 10))) {
      this.writesSinceCompactCheck = 0;
      this.autoCompact();
    }
    return result;
  }

  // ---- compaction --------------------------------------------------------------------

  async compact(revision: number): Promise<void> {
    checkCompactRevision(revision);
    this.guard(() => this.compactTo(revision));
  }

  private compactTo(revision: number): void {
    this.tx.immediate(() => {
      const current = this.currentRevision();
      const compactRev = this.compactRevision();
      if (revision > current) throw new FutureRevisionError(revision, current);
      if (revision <= compactRev) throw new CompactedError(revision, compactRev);
      this.st.compact.run(revision);
      this.st.setMeta.run(revision, "compact_revision");
    });
    this.wakeWatches(); // watches behind the new floor must learn they are compacted
  }

  /**
   * Runs after a write has committed, so it must never fail that write: any error here (a busy
   * file in shared mode, a concurrent compaction by another process, a full disk) is left for
   * the next check.
   */
  private autoCompact(): void {
    try {
      const target = this.currentRevision() - this.retain;
      if (target > this.compactRevision()) this.compactTo(target);
    } catch {
      // retried at the next check
    }
  }

  // ---- leases ------------------------------------------------------------------------

  async grantLease(ttlSeconds: number): Promise<LeaseGrant> {
    const ttl = checkTtl(ttlSeconds);
    return this.guard(() => {
      for (;;) {
        const id = randomInt(1, 2 ** 47) * 64 + randomInt(0, 64); // < 2^53: exact as a JS number
        if (this.st.insertLease.run(id, ttl, this.now() + ttl * 1000).changes === 1) return { id: String(id), ttl };
      }
    });
  }

  async keepAliveOnce(id: LeaseId): Promise<number> {
    const n = leaseNumber(checkLeaseId(id));
    return this.guard(() => {
      const lease = this.st.getLease.get(n);
      // One conditional update: a lease revoked or expired meanwhile (by another process's
      // reaper, say) is not renewed.
      const now = this.now();
      if (!lease || this.st.renewLease.run(now + lease.ttl * 1000, n, now).changes !== 1) throw new LeaseNotFoundError(id);
      return lease.ttl;
    });
  }

  async revokeLease(id: LeaseId): Promise<void> {
    const n = leaseNumber(checkLeaseId(id));
    this.write((w) => {
      if (!this.st.getLease.get(n)) throw new LeaseNotFoundError(id);
      this.revokeIn(w, n);
    });
  }

  async leaseInfo(id: LeaseId): Promise<LeaseInfo | undefined> {
    const n = leaseNumber(checkLeaseId(id));
    return this.guard(() => {
      const lease = this.st.getLease.get(n);
      if (!lease || lease.expires_at <= this.now()) return undefined;
      const keys = this.st.keysOfLease.all(n).map((r) => r.key.toString("utf8"));
      return { id, ttl: Math.ceil((lease.expires_at - this.now()) / 1000), grantedTtl: lease.ttl, keys };
    });
  }

  /** The lease if it exists and has not expired (the reaper revokes expired ones). */
  private requireLiveLease(n: number): { ttl: number; expires_at: number } {
    const lease = this.st.getLease.get(n);
    if (!lease || lease.expires_at <= this.now()) throw new LeaseNotFoundError(String(n));
    return lease;
  }

  /** Deletes a lease and its keys within the write `w` (one revision for them all). */
  private revokeIn(w: WriteState, n: number): void {
    for (const { key } of this.st.keysOfLease.all(n)) this.applyDelete(w, { start: key, single: true });
    this.st.deleteLease.run(n);
  }

  private reapExpiredLeases(): void {
    if (this.closed) return;
    try {
      for (const { id } of this.st.expiredLeases.all(this.now())) {
        // Re-checked inside the write: another process may have renewed or revoked it meanwhile.
        this.write((w) => {
          const lease = this.st.getLease.get(id);
          if (lease && lease.expires_at <= this.now()) this.revokeIn(w, id);
        });
      }
    } catch {
      // A busy database (another process holding the write lock) is retried on the next tick.
    }
  }

  // ---- watch -------------------------------------------------------------------------

  watch(range: KeyRange, options: WatchOptions = {}): Watch {
    const r = toByteRange(range);
    if (options.fromRevision !== undefined) checkRevision(options.fromRevision, "fromRevision");
    if (this.closed) throw new StoreClosedError();
    const start = options.fromRevision || this.currentRevision() + 1;
    const watch = new SqliteWatch(this.watchSource, r, start, options.prevKv ?? false, (w) => this.removeWatch(w));
    this.watches.add(watch);
    if (this.shared && !this.pollTimer) {
      this.pollTimer = setInterval(() => this.pollForeignWrites(), this.pollIntervalMs);
      this.pollTimer.unref();
    }
    return watch;
  }

  /** What a watch may read: the log, in one consistent snapshot per call. */
  private readonly watchSource = {
    read: (fromRev: number, maxRows: number) =>
      this.guard(() => this.tx(() => {
        const current = this.currentRevision();
        const compactRev = this.compactRevision();
        if (fromRev < compactRev) throw new CompactedError(fromRev, compactRev);
        // Watches woken by one write mostly ask for the same rows: read once, shared (the log up
        // to a revision never changes; compaction was checked above). 100 nodes' watches made
        // every write read its rows 100 times.
        const last = this.lastWatchRead;
        if (last && last.fromRev === fromRev && last.current === current && last.maxRows === maxRows) return last.result;
        let rows = this.st.changes.all(fromRev, current, maxRows);
        let upTo = current;
        if (rows.length === maxRows) {
          // Cut at a revision boundary: the last revision may be incomplete.
          const lastRev = rows[rows.length - 1]!.rev;
          const firstRev = rows[0]!.rev;
          if (lastRev === firstRev) rows = this.st.changesOfRev.all(firstRev);
          else rows = rows.filter((row) => row.rev < lastRev);
          upTo = rows[rows.length - 1]!.rev;
        }
        const result = { rows, upTo, more: upTo < current };
        this.lastWatchRead = { fromRev, current, maxRows, result };
        return result;
      }) as { rows: LogRow[]; upTo: number; more: boolean }),
  };

  /** The last read of the log for a watch (shared by watches asking the same). */
  private lastWatchRead: { fromRev: number; current: number; maxRows: number; result: { rows: LogRow[]; upTo: number; more: boolean } } | undefined;

  private removeWatch(w: SqliteWatch): void {
    this.watches.delete(w);
    if (this.watches.size === 0 && this.pollTimer) {
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
    }
  }

  private wakeWatches(): void {
    if (this.wakeScheduled || this.watches.size === 0) return;
    this.wakeScheduled = true;
    queueMicrotask(() => {
      this.wakeScheduled = false;
      for (const w of this.watches) w.wake();
    });
  }

  private pollForeignWrites(): void {
    if (this.closed) return;
    try {
      const seen = `${this.currentRevision()}:${this.compactRevision()}`; // a change of either wakes the watches
      if (seen !== this.lastSeen) {
        this.lastSeen = seen;
        this.wakeWatches();
      }
    } catch {
      // busy: try again on the next tick
    }
  }

  // ---- lifecycle ---------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.leaseTimer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    for (const w of [...this.watches]) w.fail(new StoreClosedError());
    this.db.close();
  }

  /** Runs a synchronous database step, turning raw SQLite failures into typed errors. */
  private guard<T>(fn: () => T): T {
    if (this.closed) throw new StoreClosedError();
    try {
      return fn();
    } catch (err) {
      if (isConstellationError(err)) throw err;
      const code = (err as { code?: string }).code ?? "";
      if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
        throw new StoreUnavailableError("the store is busy (another process holds its write lock); retry", err);
      }
      if (code.startsWith("SQLITE_FULL")) {
        throw new StoreUnavailableError(`the store's disk is full (${this.db.name}): nothing was written; free space on that disk and retry`, err);
      }
      if (code.startsWith("SQLITE_CORRUPT") || code.startsWith("SQLITE_NOTADB")) {
        throw new StoreCorruptError(`the store's database is damaged: ${(err as Error).message}`, err);
      }
      throw new StoreUnavailableError(`store operation failed: ${(err as Error).message}`, err);
    }
  }
}

/** The prev_* log columns for a key's state before a change. */
function prevColumns(prev: KvRow | undefined): [number, Buffer | null, number, number, number] {
  return prev ? [prev.mod_rev, prev.value, prev.create_rev, prev.version, prev.lease] : [0, null, 0, 0, 0];
}

function leaseNumber(id: LeaseId): number {
  const n = Number(id);
  if (!Number.isSafeInteger(n)) throw new LeaseNotFoundError(id); // beyond any ID this store issues
  return n;
}

/**
 * Wall-clock milliseconds that only move forward: the time of the store's opening plus the
 * monotonic time since. Leases expire by it, so a clock set forward does not expire every lease
 * at once (every node taken for dead), nor one set back keep them alive (etcd's leases too run
 * on a monotonic clock).
 */
function steadyClock(): () => number {
  const base = Date.now() - performance.now();
  return () => base + performance.now();
}
