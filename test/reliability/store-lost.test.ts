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
      assert.match(refused.stderr, /the store .*store\.db is missing or empty, but this node has the files of 1 star: .*Restore store\.db .* or start with --reset/);
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
});
