/**
 * The SQLite layout, in the manner of k3s's kine but with etcd's full txn semantics:
 *
 *   meta   name → integer: 'revision' (the global revision), 'compact_revision', 'schema'
 *   kv     the current value of every live key (fast get/range at the current revision)
 *   log    one row per change (put or delete tombstone), `rev` = the revision that wrote it;
 *          rows of one txn share `rev` and keep the order they were written in (`id`).
 *          Range at a past revision and watch read here. Compaction drops rows below the
 *          compact revision that a newer row (at or below it) supersedes, and old tombstones.
 *   leases id → TTL and wall-clock expiry (ms); keys point at their lease from kv.lease.
 *
 * Keys are BLOBs so that ordering is bytewise (memcmp), exactly etcd's.
 */
import type Database from "better-sqlite3";
import type { KeyValue } from "../types.js";

export const SCHEMA_VERSION = 1;

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
  id INTEGER PRIMARY KEY,
  rev INTEGER NOT NULL,
  key BLOB NOT NULL,
  deleted INTEGER NOT NULL,
  value BLOB,
  create_rev INTEGER NOT NULL,
  version INTEGER NOT NULL,
  lease INTEGER NOT NULL,
  prev_rev INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_key_rev ON log(key, rev);
CREATE INDEX IF NOT EXISTS log_rev ON log(rev);
CREATE TABLE IF NOT EXISTS leases (
  id INTEGER PRIMARY KEY,
  ttl INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases(expires_at);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 1), ('compact_revision', 0), ('schema', ${SCHEMA_VERSION});
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
  id: number;
  rev: number;
  key: Buffer;
  deleted: number;
  value: Buffer | null;
  create_rev: number;
  version: number;
  lease: number;
  prev_rev: number;
}

/** Every statement the store runs, prepared once. */
export function prepareStatements(db: Database.Database) {
  return {
    getMeta: db.prepare<[string], { value: number }>("SELECT value FROM meta WHERE name = ?"),
    setMeta: db.prepare<[number, string]>("UPDATE meta SET value = ? WHERE name = ?"),

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
    countKvFrom: db.prepare<[Buffer], { n: number }>("SELECT count(*) AS n FROM kv WHERE key >= ?"),
    countKvBetween: db.prepare<[Buffer, Buffer], { n: number }>("SELECT count(*) AS n FROM kv WHERE key >= ? AND key < ?"),
    keysOfLease: db.prepare<[number], { key: Buffer }>("SELECT key FROM kv WHERE lease = ? ORDER BY key"),

    insertLog: db.prepare<[number, Buffer, number, Buffer | null, number, number, number, number]>(
      "INSERT INTO log (rev, key, deleted, value, create_rev, version, lease, prev_rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    logAt: db.prepare<[Buffer, number], LogRow>("SELECT * FROM log WHERE key = ? AND rev = ?"),
    /** The newest change of each key in [start, end) at or below a revision (live keys only). */
    rangeLogFrom: db.prepare<[{ start: Buffer; rev: number }], LogRow>(
      "SELECT l.* FROM log l JOIN (SELECT key, max(rev) AS r FROM log WHERE key >= @start AND rev <= @rev GROUP BY key) m " +
        "ON l.key = m.key AND l.rev = m.r WHERE l.deleted = 0 ORDER BY l.key",
    ),
    rangeLogBetween: db.prepare<[{ start: Buffer; end: Buffer; rev: number }], LogRow>(
      "SELECT l.* FROM log l JOIN (SELECT key, max(rev) AS r FROM log WHERE key >= @start AND key < @end AND rev <= @rev GROUP BY key) m " +
        "ON l.key = m.key AND l.rev = m.r WHERE l.deleted = 0 ORDER BY l.key",
    ),
    /** Changes in [fromRev, toRev] in write order (watch). */
    changes: db.prepare<[number, number, number], LogRow>(
      "SELECT * FROM log WHERE rev >= ? AND rev <= ? ORDER BY id LIMIT ?",
    ),
    changesOfRev: db.prepare<[number], LogRow>("SELECT * FROM log WHERE rev = ? ORDER BY id"),

    compactSuperseded: db.prepare<[{ rev: number }]>(
      "DELETE FROM log WHERE rev < @rev AND EXISTS " +
        "(SELECT 1 FROM log n WHERE n.key = log.key AND n.rev > log.rev AND n.rev <= @rev)",
    ),
    compactTombstones: db.prepare<[number]>("DELETE FROM log WHERE rev < ? AND deleted = 1"),

    insertLease: db.prepare<[number, number, number]>("INSERT OR IGNORE INTO leases (id, ttl, expires_at) VALUES (?, ?, ?)"),
    getLease: db.prepare<[number], { id: number; ttl: number; expires_at: number }>("SELECT * FROM leases WHERE id = ?"),
    renewLease: db.prepare<[number, number]>("UPDATE leases SET expires_at = ? WHERE id = ?"),
    deleteLease: db.prepare<[number]>("DELETE FROM leases WHERE id = ?"),
    expiredLeases: db.prepare<[number], { id: number }>("SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at LIMIT 64"),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;

export function kvFromRow(row: KvRow, keysOnly: boolean): KeyValue {
  const kv: KeyValue = {
    key: row.key.toString("utf8"),
    value: keysOnly ? "" : row.value.toString("utf8"),
    createRevision: row.create_rev,
    modRevision: row.mod_rev,
    version: row.version,
  };
  if (row.lease !== 0) kv.lease = String(row.lease);
  return kv;
}

export function kvFromLog(row: LogRow, keysOnly: boolean): KeyValue {
  const kv: KeyValue = {
    key: row.key.toString("utf8"),
    value: keysOnly || row.value === null ? "" : row.value.toString("utf8"),
    createRevision: row.create_rev,
    modRevision: row.rev,
    version: row.version,
  };
  if (row.lease !== 0) kv.lease = String(row.lease);
  return kv;
}
