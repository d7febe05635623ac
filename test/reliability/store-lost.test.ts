/**
 * Recovery from facts, never from absence (issue 9, break 2): `up` on a data dir whose store was
 * deleted or emptied, while the node has stars' files, refuses to start (it used to end every
 * star and delete their files), says what happened and the way out; `--reset` is that way out,
 * said explicitly.
 */
import assert from "node:assert/strict";
import { rmSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { cli, kill9, makeDataDir, removeDataDir, up } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

describe("a lost store", { skip }, () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDataDir));

  for (const how of ["deleted", "emptied"] as const) {
    it(`${how}: up refuses, naming the way out, and the stars go on; --reset ends and removes them`, async () => {
      const dir = makeDataDir(`constellation-lost-${how}-`);
      dirs.push(dir);
      const data = join(dir, "data");
      let node = await up(data);
      const name = `keeper-${how}`;
      const made = await cli(data, ["create", "--name", name, "--", "sleep", "600"]);
      assert.equal(made.code, 0, made.stderr);
      const pid = Number(/pid (\d+)/.exec(made.stdout)?.[1]);
      assert.ok(pid > 0, made.stdout);
      await kill9(node);
      for (const f of ["store.db", "store.db-wal", "store.db-shm"]) {
        if (how === "deleted") rmSync(join(data, f), { force: true });
        else if (f === "store.db") truncateSync(join(data, f), 0);
        else rmSync(join(data, f), { force: true });
      }
      const refused = await cli(data, ["up", "--port", "0"]);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /the store .*store\.db is missing or empty, but this node has the files of 1 star: .*Restore store\.db .* or start with --adopt .* or with --reset/);
      assert.doesNotMatch(refused.stderr, /at .*\.js:\d+/, "no stack trace");
      process.kill(pid, 0); // still running
      // Refused again next time (the empty store the refusal left is still empty).
      assert.notEqual((await cli(data, ["up", "--port", "0"])).code, 0);
      process.kill(pid, 0);
      node = await up(data, ["--reset"]);
      try {
        await waitFor("the star ended", () => {
          try {
            process.kill(pid, 0);
            return undefined;
          } catch {
            return true;
          }
        });
      } finally {
        await kill9(node);
      }
    });
  }

  it("deleted: --adopt rebuilds the records from the node: a running star goes on (same pid, its token still works), a stopped one stays stopped", async () => {
    const dir = makeDataDir("constellation-lost-adopt-");
    dirs.push(dir);
    const data = join(dir, "data");
    let node = await up(data);
    try {
      // A star that asks the API for its own star every 200 ms and says how it went.
      const ask =
        "setInterval(async () => { try { const r = await fetch(process.env.CONSTELLATION_ENDPOINT + '/v1/stars/asker', " +
        "{ headers: { authorization: 'Bearer ' + process.env.CONSTELLATION_TOKEN } }); console.log('answer ' + r.status); } catch { console.log('answer none'); } }, 200)";
      const made = await cli(data, ["create", "--name", "asker", "--", process.execPath, "-e", ask]);
      assert.equal(made.code, 0, made.stderr);
      const pid = Number(/pid (\d+)/.exec(made.stdout)?.[1]);
      assert.equal((await cli(data, ["create", "--name", "resting", "--", "sleep", "600"])).code, 0);
      assert.equal((await cli(data, ["stop", "resting"])).code, 0);
      const answers = async () => (await cli(data, ["logs", "asker"])).stdout.trim().split("\n");
      await waitFor("the star reaches the API", async () => ((await answers()).includes("answer 200") ? true : undefined));

      await kill9(node);
      for (const f of ["store.db", "store.db-wal", "store.db-shm"]) rmSync(join(data, f), { force: true });
      assert.match((await cli(data, ["up", "--port", "0", "--adopt", "--reset"])).stderr, /--adopt keeps the node's stars and --reset removes them/);
      node = await up(data, ["--adopt"]);
      const list = JSON.parse((await cli(data, ["list", "--json"])).stdout) as Array<{ name: string; desired: string; status?: { state: string; pid?: number } }>;
      const asker = list.find((s) => s.name === "asker");
      assert.equal(asker?.status?.state, "running");
      assert.equal(asker?.status?.pid, pid, "the same process");
      assert.equal(asker?.desired, "running");
      const resting = list.find((s) => s.name === "resting");
      assert.equal(resting?.status?.state, "stopped");
      assert.equal(resting?.desired, "stopped");
      // Its token is known again (and the API on the port it knows): its next answers are 200.
      const seen = (await answers()).length;
      await waitFor("the star's token works again", async () => ((await answers()).slice(seen).includes("answer 200") ? true : undefined));
      const events = (await cli(data, ["events", "--json"])).stdout.trim().split("\n").map((l) => JSON.parse(l) as { kind: string }); // one per line
      assert.equal(events.filter((e) => e.kind === "star.adopted").length, 2);
      // Managed as any star: stop it, start the other.
      assert.equal((await cli(data, ["stop", "asker"])).code, 0);
      assert.throws(() => process.kill(pid, 0));
      assert.equal((await cli(data, ["start", "resting"])).code, 0);
    } finally {
      await cli(data, ["rm", "-f", "asker"]);
      await cli(data, ["rm", "-f", "resting"]);
      await kill9(node);
    }
  });
});
