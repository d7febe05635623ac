/**
 * SQLite-specific guarantees: acknowledged writes survive kill -9 of the writer; automatic
 * compaction keeps the file bounded; the file can be shared by processes.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { Sqlite } from "../../src/store/sqlite/driver.js";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import { CompactedError, StoreClosedError, StoreCorruptError, StoreUnavailableError } from "../../src/model/errors.js";
import { collect, waitFor } from "../helpers/wait.js";

const WRITER = fileURLToPath(new URL("./sqlite-writer.js", import.meta.url));

describe("sqlite store: durability and compaction", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "constellation-durable-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("every acknowledged write survives kill -9 of the writing process, mid-stream", async () => {
    const path = join(dir, "kill9.db");
    const child = spawn(process.execPath, [WRITER, path], { stdio: ["ignore", "pipe", "inherit"] });
    let lastAck = -1;
    let lastRev = 0;
    let buf = "";
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const line of lines) {
        const [, i, rev] = line.split(" ");
        lastAck = Number(i);
        lastRev = Number(rev);
      }
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      await waitFor("the writer to acknowledge 3000 writes", () => lastAck >= 3000 || undefined, { timeoutMs: 30_000 });
    } finally {
      child.kill("SIGKILL"); // also when the wait failed: never leave the writer running
      await exited;
    }
    const acked = lastAck; // every line read before the kill was acknowledged before it
    const store = new SqliteStore({ path });
    try {
      assert.ok((await store.revision()) >= lastRev, "the store's revision is at least the last acknowledged one");
      // The newest acknowledged value of each of the 300 keys is there (or a newer one).
      for (let k = 0; k < 300; k++) {
        const newestAcked = acked - ((((acked - k) % 300) + 300) % 300);
        const kv = await store.get(`durable/${k}`);
        assert.ok(kv, `durable/${k} exists`);
        const stored = Number(kv.value.slice("value-".length));
        assert.ok(stored >= newestAcked, `durable/${k} holds value-${stored}, acknowledged value-${newestAcked}`);
      }
    } finally {
      await store.close();
    }
    const db = new Sqlite(path, { readonly: true });
    assert.equal((db.pragma("integrity_check") as Array<{ integrity_check: string }>)[0]?.integrity_check, "ok");
    db.close();
  });

  it("automatic compaction keeps history bounded while watches still resume inside it", async () => {
    const path = join(dir, "compact.db");
    const store = new SqliteStore({ path, retainRevisions: 1000 });
    try {
      const value = "x".repeat(200);
      for (let i = 0; i < 20_000; i++) await store.put(`k/${i % 100}`, value);
      const rev = await store.revision();
      await store.close();
      const db = new Sqlite(path, { readonly: true });
      const logRows = (db.prepare("SELECT count(*) AS n FROM log").get() as { n: number }).n;
      db.close();
      assert.ok(logRows <= 1000 + 100 + 100, `log holds ${logRows} rows after 20,000 writes with 1,000 retained`);
      assert.ok(statSync(path).size < 8 * 1024 * 1024, `file is ${statSync(path).size} bytes`);
      const again = new SqliteStore({ path, retainRevisions: 1000 });
      try {
        await assert.rejects(again.range({ prefix: "k/" }, { revision: rev - 1500 }), CompactedError);
        const past = await again.range({ prefix: "k/" }, { revision: rev - 500 });
        assert.equal(past.count, 100);
        const old = again.watch({ prefix: "k/" }, { fromRevision: rev - 1500 });
        await assert.rejects(collect(old, () => false), CompactedError);
        const inside = again.watch({ prefix: "k/" }, { fromRevision: rev - 500 });
        const batches = await collect(inside, (b) => b.length >= 501);
        inside.close();
        assert.deepEqual(batches.map((b) => b.revision), Array.from({ length: 501 }, (_, i) => rev - 500 + i));
      } finally {
        await again.close();
      }
    } finally {
      await store.close();
    }
  });

  it("a store file owned by another process is refused at open with a typed error", async () => {
    const path = join(dir, "owned.db");
    const owner = new SqliteStore({ path });
    try {
      await owner.put("k", "v");
      assert.throws(() => new SqliteStore({ path }), (err: unknown) => {
        assert.ok(err instanceof StoreUnavailableError);
        assert.match(err.message, /in use by another process/);
        return true;
      });
      assert.equal((await owner.get("k"))?.value, "v");
    } finally {
      await owner.close();
    }
    const reopened = new SqliteStore({ path });
    assert.equal((await reopened.get("k"))?.value, "v");
    await reopened.close();
  });

  it("closing the store ends a watch that is being read with StoreClosedError", async () => {
    const store = new SqliteStore({ path: join(dir, "closing.db") });
    const watch = store.watch({ prefix: "" });
    const reading = collect(watch, () => false);
    await store.put("a", "1");
    await store.close();
    await assert.rejects(reading, StoreClosedError);
  });

  it("a file that is not a store is refused with a typed error", async () => {
    const path = join(dir, "not-a-db");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(path, "this is not sqlite ".repeat(100));
    assert.throws(() => new SqliteStore({ path }), StoreCorruptError);
  });
});
