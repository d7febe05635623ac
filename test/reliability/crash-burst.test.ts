/**
 * kill -9 of `up` at random points of a burst of creates, 20 times (issue 9, break 4): stars
 * caught mid-start came back `failed: killed by SIGKILL` (some had been running and were killed
 * by the recovery) and nothing retried them. After each crash and restart: every acknowledged
 * star is present once and running, each with one copy (one init in its group), and no process
 * runs in a group of the node that no running star accounts for.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { type Constellation, type StarInfo, connect } from "../../src/index.js";
import { initsAmong, nodeGroups } from "../helpers/cgroups.js";
import { type UpFixture, kill9, up, upWithClient } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

const ROUNDS = 20;
const PER_ROUND = 10;

describe("kill -9 during a burst of creates", { skip }, () => {
  let f: UpFixture | undefined;
  after(async () => {
    await f?.close();
  });

  it(`${ROUNDS} rounds: every acknowledged star present once, running, one copy; nothing runs unrecorded`, async () => {
    f = await upWithClient("constellation-burst-");
    const acked = new Set<string>();
    for (let round = 0; round < ROUNDS; round++) {
      // The crash comes once k of the round's creates are acknowledged (k random, 0: at once).
      const k = Math.floor(Math.random() * PER_ROUND);
      let n = 0;
      let crash!: () => void;
      const crashPoint = new Promise<void>((r) => (crash = r));
      if (k === 0) crash();
      const creates = Array.from({ length: PER_ROUND }, (_, i) => `r${round}-s${i}`).map((name) =>
        f!.sdk.create({ name, command: ["sleep", "600"] }).then(
          () => {
            acked.add(name);
            if (++n === k) crash();
          },
          () => undefined, // cut off by the crash: it may or may not exist, but never twice
        ),
      );
      await Promise.race([crashPoint, Promise.all(creates)]);
      await kill9(f.node);
      await Promise.all(creates);
      f.sdk.close();
      f.node = await up(f.node.dataDir);
      f.sdk = connect({ dataDir: f.node.dataDir });

      const sdk: Constellation = f.sdk;
      let seen: StarInfo[] = [];
      const stars: StarInfo[] = await waitFor(
        `round ${round}: every star running`,
        async (): Promise<StarInfo[] | undefined> => {
          seen = await sdk.list();
          return seen.every((s) => s.status?.state === "running" && s.status.pid) ? seen : undefined;
        },
        { timeoutMs: 30_000 },
      ).catch((err: Error) => {
        const stuck = seen.filter((s) => s.status?.state !== "running").map((s) => ({ name: s.name, desired: s.desired, node: s.node, status: s.status }));
        throw new Error(`${err.message}: ${JSON.stringify(stuck)}`);
      });
      const names = stars.map((s) => s.name);
      assert.equal(new Set(names).size, names.length, "a star listed twice");
      for (const name of acked) assert.ok(names.includes(name), `round ${round}: acknowledged ${name} is missing`);
      const groups = nodeGroups(f.node.dataDir);
      for (const s of stars) {
        assert.equal(initsAmong(groups.get(s.name) ?? []).length, 1, `round ${round}: ${s.name} should run once, its group holds ${JSON.stringify(groups.get(s.name))}`);
      }
      for (const [group, pids] of groups) {
        if (pids.length > 0) assert.ok(names.includes(group), `round ${round}: processes ${pids.join(", ")} in group ${group}, which no star has`);
      }
    }
    assert.ok(acked.size > 0);
  });
});
