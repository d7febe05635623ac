/**
 * Reading a star's logs: every kept line or the last N, across rotated files, with memory that
 * does not grow with what a star wrote (issue 8: a star flooding its logs and asking for them
 * many times at once took the control plane down).
 */
import assert from "node:assert/strict";
import { appendFile, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { open } from "node:fs/promises";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readLogs } from "../../src/runtime/logs.js";
import type { LogLine } from "../../src/model/status.js";

describe("log reading", () => {
  let dir: string;
  const read = async (d: string, tail?: number) => {
    const out: string[] = [];
    for await (const l of readLogs(d, tail === undefined ? {} : { tail }, () => true)) if (l.stream === "stdout") out.push(l.line);
    return out;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "constellation-logs-"));
    // Oldest first: .2, .1, then the current file; a line may span a rotation.
    await writeFile(join(dir, "stdout.log.2"), "a1\na2\n");
    await writeFile(join(dir, "stdout.log.1"), "b1\nb2");
    await writeFile(join(dir, "stdout.log"), "x\nc1\nc2\npartial");
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it("reads every kept line, or the last N, across rotations (a last line without its end is not yet a line)", async () => {
    assert.deepEqual(await read(dir), ["a1", "a2", "b1", "b2x", "c1", "c2"]);
    assert.deepEqual(await read(dir, 2), ["c1", "c2"]);
    assert.deepEqual(await read(dir, 3), ["b2x", "c1", "c2"]);
    assert.deepEqual(await read(dir, 5), ["a2", "b1", "b2x", "c1", "c2"]);
    assert.deepEqual(await read(dir, 100), ["a1", "a2", "b1", "b2x", "c1", "c2"]);
    assert.deepEqual(await read(dir, 0), []);
  });

  it("takes each line's time off its stamp; since skips older lines; a line without a stamp goes with the one before", async () => {
    const d = await mkdtemp(join(tmpdir(), "constellation-logs-t-"));
    try {
      await writeFile(join(d, "stdout.log.1"), "2026-11-28T10:00:00.000Z old\n2026-11-28T10:05:00.000Z middle\n");
      await writeFile(join(d, "stdout.log"), "2026-11-28T10:10:00.500Z new\nunstamped\n2026-11-28T10:10:00.500Zno space is text\n");
      await writeFile(join(d, "stderr.log"), "2026-11-28T10:07:00.000Z err\n");
      const all = async (since?: number) => {
        const out: Array<[string, string, string | undefined]> = [];
        for await (const l of readLogs(d, since === undefined ? {} : { since }, () => true)) out.push([l.stream, l.line, l.time]);
        return out;
      };
      assert.deepEqual(await all(), [
        ["stdout", "old", "2026-11-28T10:00:00.000Z"],
        ["stdout", "middle", "2026-11-28T10:05:00.000Z"],
        ["stdout", "new", "2026-11-28T10:10:00.500Z"],
        ["stdout", "unstamped", "2026-11-28T10:10:00.500Z"],
        ["stdout", "2026-11-28T10:10:00.500Zno space is text", "2026-11-28T10:10:00.500Z"],
        ["stderr", "err", "2026-11-28T10:07:00.000Z"],
      ]);
      const since = Date.parse("2026-11-28T10:05:00.000Z");
      assert.deepEqual((await all(since)).map(([s, l]) => `${s}:${l}`), ["stdout:middle", "stdout:new", "stdout:unstamped", "stdout:2026-11-28T10:10:00.500Zno space is text", "stderr:err"]);
      assert.deepEqual(await all(Date.parse("2027-01-01T00:00:00Z")), []);
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });

  it("a stamp-like text in a long line's later piece is the star's text, not a time", async () => {
    const d = await mkdtemp(join(tmpdir(), "constellation-logs-f-"));
    try {
      const long = "x".repeat(2 ** 20 - 25);
      await writeFile(join(d, "stdout.log"), `2026-11-28T10:00:00.000Z ${long}2001-01-01T00:00:00.000Z forged\n`);
      const out: LogLine[] = [];
      for await (const l of readLogs(d, {}, () => true)) out.push(l);
      assert.equal(out.length, 2);
      assert.deepEqual(out.map((l) => l.time), ["2026-11-28T10:00:00.000Z", "2026-11-28T10:00:00.000Z"]);
      assert.equal(out[1]!.line, "2001-01-01T00:00:00.000Z forged");
      const since: LogLine[] = [];
      for await (const l of readLogs(d, { since: Date.parse("2026-01-01T00:00:00Z") }, () => true)) since.push(l);
      assert.equal(since.length, 2, "nothing hidden by a forged time");
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });

  it("cuts a line without end into pieces of 1 MiB", async () => {
    const d = await mkdtemp(join(tmpdir(), "constellation-logs-"));
    await writeFile(join(d, "stdout.log"), `${"y".repeat(3 * 2 ** 20 + 5)}\nend\n`);
    const lines = await read(d);
    assert.deepEqual(lines.map((l) => l.length), [2 ** 20, 2 ** 20, 2 ** 20, 5, 3]);
    await rm(d, { recursive: true, force: true });
  });

  it("the last line of 64 MB of logs, many times at once, without holding the files in memory", async () => {
    const d = await mkdtemp(join(tmpdir(), "constellation-logs-"));
    const fh = await open(join(d, "stdout.log"), "w");
    const block = Buffer.from(`${"z".repeat(1023)}\n`.repeat(1024)); // 1 MiB of lines
    for (let i = 0; i < 64; i++) await fh.write(block);
    await fh.write("the last line\n");
    await fh.close();
    global.gc?.();
    const before = process.memoryUsage();
    const got = await Promise.all(Array.from({ length: 50 }, () => read(d, 1)));
    const after = process.memoryUsage();
    for (const g of got) assert.deepEqual(g, ["the last line"]);
    const grew = after.rss - before.rss;
    assert.ok(grew < 64 * 2 ** 20, `reading 50 tails grew the process by ${Math.round(grew / 2 ** 20)} MB`);
    await rm(d, { recursive: true, force: true });
  });

  it("a reader that goes mid-way (during the kept lines of stderr, or while following) leaves no file open", async () => {
    const d = await mkdtemp(join(tmpdir(), "constellation-logs-"));
    await writeFile(join(d, "stdout.log"), "o1\no2\n");
    await writeFile(join(d, "stderr.log"), "e1\ne2\n");
    const fds = () => readdirSync("/proc/self/fd").length;
    const before = fds();
    for (let i = 0; i < 10; i++) {
      for await (const l of readLogs(d, { follow: true }, () => false)) if (l.stream === "stderr") break;
      for await (const l of readLogs(d, { follow: true }, () => false)) if (l.line === "o1") break;
    }
    assert.equal(fds(), before, "every handle closed");
    await rm(d, { recursive: true, force: true });
  });

  it("following: a file rotated away entirely while the reader was away is still read to its end (the reader holds it open)", { timeout: 20_000 }, async () => {
    const d = await mkdtemp(join(tmpdir(), "constellation-logs-"));
    const log = join(d, "stdout.log");
    await writeFile(log, "1\n2\n");
    let done = false;
    const abort = new AbortController();
    const lines = readLogs(d, { follow: true, signal: abort.signal }, () => done)[Symbol.asyncIterator]();
    const next = async () => ((await lines.next()).value as LogLine).line;
    assert.deepEqual([await next(), await next()], ["1", "2"]);
    // While the reader is not looking: one more line, then two rotations keeping one file, so the
    // file it was reading is deleted (and a new file may be given its inode number at once).
    await appendFile(log, "3\n");
    await rename(log, `${log}.1`);
    await writeFile(log, "4\n");
    await rename(log, `${log}.1`);
    await writeFile(log, "5\n");
    assert.deepEqual([await next(), await next(), await next()], ["3", "4", "5"]);
    done = true;
    abort.abort();
    await lines.return?.(undefined);
    await rm(d, { recursive: true, force: true });
  });

  it("following: what was written since is read a chunk at a time, characters cut between chunks kept whole", async () => {
    const d = await mkdtemp(join(tmpdir(), "constellation-logs-"));
    // A two-byte character across the first 64 KiB boundary, in what is there and what comes.
    const line = `${"a".repeat(65_535)}é${"b".repeat(10)}`;
    await writeFile(join(d, "stdout.log"), `${line}\n`);
    assert.deepEqual(await read(d), [line]);
    let done = false;
    const abort = new AbortController();
    const got: string[] = [];
    const following = (async () => {
      for await (const l of readLogs(d, { follow: true, signal: abort.signal }, () => done)) {
        got.push(l.line);
        if (got.length === 1 + 300) break;
      }
    })();
    const fh = await open(join(d, "stdout.log"), "a");
    const more = Array.from({ length: 300 }, (_, i) => `${i}-${"é".repeat(40_000)}`); // 24 MB at once
    await fh.write(more.map((l) => `${l}\n`).join(""));
    await fh.close();
    await following;
    done = true;
    abort.abort();
    assert.equal(got[0], line);
    assert.equal(got.length, 301);
    assert.ok(got.slice(1).every((l, i) => l === more[i]), "every line whole");
    await rm(d, { recursive: true, force: true });
  });
});
