/**
 * The SQLite layout: the current state plus an undo/redo log, with etcd's full txn semantics.
 *
 *   meta   name → integer: 'compact_revision', 'schema'
 *   kv     the current value of every live key (get/range at the current revision)
 *   log    one row per change, keyed (rev, seq): `rev` is the revision that wrote it, `seq` the
 *          order within a txn. A row holds the key's new state (a put) or a tombstone (a
 *          delete) AND the key's previous state (prev_*; prev_rev 0 = the key did not exist).
 *
 * Why this shape (measured, see docs/store.md):
 *   - a write touches two B-tree pages (kv and the log's tail), the least that gives both a
 *     fast current state and history; no counter row is rewritten: the store's revision is
 *     max(rev) (1 when empty), and compaction never removes the newest row;
 *   - watch = the log from a revision on, in (rev, seq) order; prevKv comes from the row;
 *   - range at a past revision R = the current state with the log rows after R undone, newest
 *     first (so its cost is the number of changes since R, which compaction bounds);
 *   - compaction to C = delete the log rows below C: one range delete on the primary key.
 *
 * Keys are BLOBs so that ordering is bytewise (memcmp), exactly etcd's.
 */
import type Database from "better-sqlite3";
import type { KeyValue } from "../types.js";

export const SCHEMA_VERSION = 2;

export const DDL = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
  key BLOB PRIMARY KEY,
  value BLOB NOT NULL,
  create_rev INTEGER NOT NULL,
  mod_rev INTEGER NOT NULL,
  version INTEGER NOT NULL,
  lease INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS log (
  rev INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  key BLOB NOT NULL,
  deleted INTEGER NOT NULL,
  value BLOB,
  create_rev INTEGER NOT NULL,
  version INTEGER NOT NULL,
  lease INTEGER NOT NULL,
  prev_rev INTEGER NOT NULL,
  prev_value BLOB,
  prev_create_rev INTEGER NOT NULL,
  prev_version INTEGER NOT NULL,
  prev_lease INTEGER NOT NULL,
  PRIMARY KEY (rev, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
  id INTEGER PRIMARY KEY,
  ttl INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases(expires_at);
INSERT OR IGNORE INTO meta (name, value) VALUES ('compact_revision', 0), ('schema', ${SCHEMA_VERSION});
`;

export interface KvRow {
  key: Buffer;
  value: Buffer;
  create_rev: number;
  mod_rev: number;
  version: number;
  lease: number;
}

export interface LogRow {
  rev: number;
  seq: number;
  key: Buffer;
  deleted: number;
  value: Buffer | null;
  create_rev: number;
  version: number;
  lease: number;
  prev_rev: number;
  prev_value: Buffer | null;
  prev_create_rev: number;
  prev_version: number;
  prev_lease: number;
}

/** Every statement the store runs, prepared once. */
export function prepareStatements(db: Database.Database) {
  return {
    getMeta: db.prepare<[string], { value: number }>("SELECT value FROM meta WHERE name = ?"),
    setMeta: db.prepare<[number, string]>("UPDATE meta SET value = ? WHERE name = ?"),
    revision: db.prepare<[], { rev: number }>("SELECT coalesce(max(rev), 1) AS rev FROM log"),

    getKv: db.prepare<[Buffer], KvRow>("SELECT * FROM kv WHERE key = ?"),
    upsertKv: db.prepare<[Buffer, Buffer, number, number, number, number]>(
      "INSERT INTO kv (key, value, create_rev, mod_rev, version, lease) VALUES (?, ?, ?, ?, ?, ?) " +
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev, " +
        "version = excluded.version, lease = excluded.lease, create_rev = excluded.create_rev",
    ),
    deleteKv: db.prepare<[Buffer]>("DELETE FROM kv WHERE key = ?"),
    rangeKvFrom: db.prepare<[Buffer, number], KvRow>("SELECT * FROM kv WHERE key >= ? ORDER BY key LIMIT ?"),
    rangeKvBetween: db.prepare<[Buffer, Buffer, number], KvRow>(
      "SELECT * FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
    ),
    // Keys only: the values (maybe large) are not even read.
    rangeKeysFrom: db.prepare<[Buffer, number], KvRow>("SELECT key, NULL AS value, create_rev, mod_rev, version, lease FROM kv WHERE key >= ? ORDER BY key LIMIT ?"),
    rangeKeysBetween: db.prepare<[Buffer, Buffer, number], KvRow>(
      "SELECT key, NULL AS value, create_rev, mod_rev, version, lease FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
    ),
    // Changed since a revision (minModRevision): bounded by the key range (an index range), filtered by mod_rev.
    rangeKeysSinceFrom: db.prepare<[Buffer, number], KvRow>("SELECT key, NULL AS value, create_rev, mod_rev, version, lease FROM kv WHERE key >= ? AND mod_rev >= ? ORDER BY key"),
    rangeKeysSinceBetween: db.prepare<[Buffer, Buffer, number], KvRow>(
      "SELECT key, NULL AS value, create_rev, mod_rev, version, lease FROM kv WHERE key >= ? AND key < ? AND mod_rev >= ? ORDER BY key",
    ),
    rangeKvSinceFrom: db.prepare<[Buffer, number], KvRow>("SELECT * FROM kv WHERE key >= ? AND mod_rev >= ? ORDER BY key"),
    rangeKvSinceBetween: db.prepare<[Buffer, Buffer, number], KvRow>("SELECT * FROM kv WHERE key >= ? AND key < ? AND mod_rev >= ? ORDER BY key"),
    countKvFrom: db.prepare<[Buffer], { n: number }>("SELECT count(*) AS n FROM kv WHERE key >= ?"),
    countKvBetween: db.prepare<[Buffer, Buffer], { n: number }>("SELECT count(*) AS n FROM kv WHERE key >= ? AND key < ?"),
    // "lease != 0" lets SQLite use the partial index kv_lease.
    keysOfLease: db.prepare<[number], { key: Buffer }>("SELECT key FROM kv WHERE lease = ? AND lease != 0 ORDER BY key"),

    insertLog: db.prepare<
      [number, number, Buffer, number, Buffer | null, number, number, number, number, Buffer | null, number, number, number]
    >(
      "INSERT INTO log (rev, seq, key, deleted, value, create_rev, version, lease, " +
        "prev_rev, prev_value, prev_create_rev, prev_version, prev_lease) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    /** Changes in [fromRev, toRev] in write order (watch). */
    changes: db.prepare<[number, number, number], LogRow>(
      "SELECT * FROM log WHERE rev >= ? AND rev <= ? ORDER BY rev, seq LIMIT ?",
    ),
    changesOfRev: db.prepare<[number], LogRow>("SELECT * FROM log WHERE rev = ? ORDER BY seq"),
    /** Changes after a revision to keys >= start, newest first (undo for range at a past revision). */
    undoFrom: db.prepare<[number, Buffer], LogRow>(
      "SELECT * FROM log WHERE rev > ? AND key >= ? ORDER BY rev DESC, seq DESC",
    ),
    undoBetween: db.prepare<[number, Buffer, Buffer], LogRow>(
      "SELECT * FROM log WHERE rev > ? AND key >= ? AND key < ? ORDER BY rev DESC, seq DESC",
    ),
    compact: db.prepare<[number]>("DELETE FROM log WHERE rev < ?"),

    insertLease: db.prepare<[number, number, number]>("INSERT OR IGNORE INTO leases (id, ttl, expires_at) VALUES (?, ?, ?)"),
    getLease: db.prepare<[number], { id: number; ttl: number; expires_at: number }>("SELECT * FROM leases WHERE id = ?"),
    renewLease: db.prepare<[number, number, number]>("UPDATE leases SET expires_at = ? WHERE id = ? AND expires_at > ?"),
    deleteLease: db.prepare<[number]>("DELETE FROM leases WHERE id = ?"),
    expiredLeases: db.prepare<[number], { id: number }>("SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at LIMIT 64"),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;

export function kvFromRow(row: KvRow, keysOnly: boolean): KeyValue {
  return makeKv(row.key, keysOnly ? null : row.value, row.create_rev, row.mod_rev, row.version, row.lease);
}

/** The key's state written by a log row (a tombstone for a delete). */
export function kvFromLog(row: LogRow): KeyValue {
  return makeKv(row.key, row.value, row.create_rev, row.rev, row.version, row.lease);
}

/** The key's state before a log row, or undefined if it did not exist. */
export function prevKvFromLog(row: LogRow): KeyValue | undefined {
  if (row.prev_rev === 0) return undefined;
  return makeKv(row.key, row.prev_value, row.prev_create_rev, row.prev_rev, row.prev_version, row.prev_lease);
}

function makeKv(key: Buffer, value: Buffer | null, createRev: number, modRev: number, version: number, lease: number): KeyValue {
  const kv: KeyValue = {
    key: key.toString("utf8"),
    value: value === null ? "" : value.toString("utf8"),
    createRevision: createRev,
    modRevision: modRev,
    version,
  };
  if (lease !== 0) kv.lease = String(lease);
  return kv;
}
