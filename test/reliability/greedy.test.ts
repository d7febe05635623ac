/**
 * The node under stars and clients that take what they can (issue 9): health probes of servers
 * that trickle their answers (break 1: a socket leaked per probe, until `up` ran out of files),
 * a greedy list client (break 7: 20 lists at once took `up` from 181 MB to 1.34 GB; 500 waits
 * from one read token slowed creates to seconds), and specs the node cannot run (break 8: 201,
 * then a failure). Each against a real `up`, through its API.
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { type Constellation, connect } from "../../src/index.js";
import { type UpFixture, upWithClient } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const peakRssMb = (pid: number) => Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) / 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A server that sends its headers at once, then a byte of body every 500 ms, forever. */
const TRICKLE =
  "require('node:http').createServer((q, s) => { s.writeHead(200, { 'content-length': '1000000' }); s.flushHeaders(); " +
  "const t = setInterval(() => s.write('x'), 500); s.on('close', () => clearInterval(t)); }).listen(Number(process.argv[1]), '127.0.0.1')";

describe("the node under greedy stars and clients", { skip, concurrency: false }, () => {
  let f: UpFixture;
  let pid: number;
  before(async () => {
    f = await upWithClient("constellation-greedy-");
    pid = f.node.child.pid!;
  });
  after(async () => {
    await f?.close();
  });

  it("break 1: 10 stars whose servers trickle their answers, probed 5 times a second: the node holds no socket per probe, the stars stay ready", async () => {
    const names = Array.from({ length: 10 }, (_, i) => `trickle-${i}`);
    for (const [i, name] of names.entries()) {
      const port = 19_300 + i;
      await f.sdk.create({
        name,
        command: [process.execPath, "-e", TRICKLE, String(port)],
        health: { type: "http", port, path: "/", interval_ms: 200, timeout_ms: 1000, failure_threshold: 3 },
      });
    }
    await waitFor("every trickling star ready", async () => ((await f.sdk.list()).filter((s) => names.includes(s.name) && s.status?.ready).length === 10 ? true : undefined), { timeoutMs: 20_000 });
    const base = fds(pid);
    // A window of 6 s (about 300 probes): the old probe kept each one's socket open.
    let most = base;
    const until = Date.now() + 6000;
    while (Date.now() < until) {
      most = Math.max(most, fds(pid));
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(most <= base + 40, `up's open files went from ${base} to ${most}`);
    for (const s of await f.sdk.list()) if (names.includes(s.name)) assert.equal(s.status?.state, "running", s.name);
    for (const name of names) await f.sdk.star(name).remove({ force: true });
  });

  it("break 7: 20 lists at once of 30 stars with ~0.4 MB specs each, by a read token, cost a few pages; 500 waits from it leave creates fast", async () => {
    const env = { A: "x".repeat(130_000), B: "y".repeat(130_000), C: "z".repeat(130_000) };
    for (let i = 0; i < 30; i++) await f.sdk.create({ name: `fat-${i}`, command: ["sleep", "60"], env }, { start: false });
    const { token } = await f.sdk.createToken("read", "greedy");
    const greedy: Constellation = connect({ endpoint: f.node.url, token });
    try {
      const before = peakRssMb(pid);
      const lists = await Promise.all(Array.from({ length: 20 }, () => greedy.list().catch((e: Error) => e)));
      const done = lists.filter((l) => Array.isArray(l));
      assert.ok(done.length >= 16, `most lists were served (${done.length})`);
      for (const l of done) assert.equal((l as unknown[]).length, 30, "every star, over pages");
      const grew = peakRssMb(pid) - before;
      assert.ok(grew < 400, `up's peak memory grew ${grew.toFixed(0)} MB`);

      // 500 waits at once from the read token for a star that will not end: it holds 8 at most,
      // the rest are refused at once.
      await f.sdk.create({ name: "held", command: ["sleep", "600"] });
      const stop = new AbortController();
      const waits = Array.from({ length: 500 }, () =>
        fetch(`${f.node.url}/v1/stars/held/wait?for=ended&timeout_ms=60000`, { headers: { authorization: `Bearer ${token}` }, signal: stop.signal }).then(
          (r) => r.status,
          () => 0,
        ),
      );
      await waitFor("the waits refused", async () => {
        const settled = await Promise.all(waits.map((w) => Promise.race([w, Promise.resolve(-1)])));
        return settled.filter((s) => s === 429).length >= 492 ? true : undefined;
      });
      const times: number[] = [];
      for (let i = 0; i < 15; i++) {
        const t0 = performance.now();
        await f.sdk.create({ name: `quick-${i}`, command: ["true"] }, { start: false });
        times.push(performance.now() - t0);
      }
      assert.ok(median(times) < 250, `creates took ${median(times).toFixed(1)} ms (median) beside the waits`);
      stop.abort();
      const statuses = await Promise.all(waits);
      assert.equal(statuses.filter((s) => s === 429).length, 492, "8 held, the rest refused");
      await f.sdk.star("held").remove({ force: true });
    } finally {
      greedy.close();
    }
    for (let i = 0; i < 30; i++) await f.sdk.star(`fat-${i}`).remove({ force: true });
    for (let i = 0; i < 15; i++) await f.sdk.star(`quick-${i}`).remove({ force: true });
  });

  it("break 8: specs the node cannot run are refused at create with the field and the limit, and nothing is recorded", async () => {
    const refuse = async (name: string, spec: Record<string, unknown>, field: RegExp) => {
      const err = await f.sdk.create({ name, ...spec } as never).then(
        () => undefined,
        (e: Error & { status?: number }) => e,
      );
      assert.ok(err, `${name} was accepted`);
      assert.equal(err.status, 400, `${name}: ${err.message}`);
      assert.match(err.message, field, name);
      await assert.rejects(f.sdk.star(name).info(), /no star|not found/i, `${name} recorded`);
    };
    await refuse("long-argv", { command: ["true", ...Array.from({ length: 200_000 }, () => "a")] }, /command.*at most 16384/);
    await refuse("tmp-cwd", { command: ["true"], cwd: "/tmp/work" }, /cwd.*\/tmp/);
    await refuse("tiny-ram", { command: ["true"], ram_mb: 1e-300 }, /ram_mb.*4/);
    await refuse("many-env", { command: ["true"], env: Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [`V${i}`, "1"])) }, /env.*1000/);
  });
});
