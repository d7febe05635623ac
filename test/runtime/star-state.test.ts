/**
 * The process runtime's state table (runtime.db): one owner at a time. A second owner in another
 * process is refused (SQLite's lock); a second open in the same process is refused before it can
 * touch the file (closing any descriptor of it would drop this process's lock).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { StarStateDb } from "../../src/runtime/process/star-state.js";

describe("runtime.db", () => {
  it("is 0600, keeps rows, and has one owner: a second open here or in another process is refused", async () => {
    const dir = await mkdtemp(join(tmpdir(), "constellation-statedb-"));
    try {
      const db = StarStateDb.open(dir);
      const saved = { version: 1 as const, spec: { name: "a" }, status: { id: "a" }, history: { starts: [] }, stopRequested: false };
      db.save("a", saved as never);
      assert.equal(statSync(join(dir, "runtime.db")).mode & 0o777, 0o600);
      assert.throws(() => StarStateDb.open(dir), /already open in this process/);
      // Another process cannot take the database while we hold it.
      const other = spawnSync(
        process.execPath,
        ["-e", `const D = require("better-sqlite3"); const db = new D(process.argv[1], { timeout: 200 }); try { db.prepare("INSERT INTO stars VALUES ('b', '{}')").run(); console.log("wrote"); } catch (e) { console.log(e.code); }`, join(dir, "runtime.db")],
        { encoding: "utf8", cwd: process.cwd() },
      );
      assert.equal(other.stdout.trim(), "SQLITE_BUSY");
      db.save("a", { ...saved, stopRequested: true } as never);
      assert.deepEqual(db.all().map((r) => [r.id, r.saved.stopRequested]), [["a", true]]);
      db.close();
      const again = StarStateDb.open(dir);
      assert.deepEqual(again.all().map((r) => r.id), ["a"]);
      again.delete("a");
      assert.deepEqual(again.all(), []);
      again.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
