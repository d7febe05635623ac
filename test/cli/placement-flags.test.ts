/** create's placement flags: --strategy, --spread-by, --constraint and --affinity, parsed as a user writes them. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { placementRule } from "../../src/cli/stars.js";
import { cli, upWithClient } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";

const BIN = fileURLToPath(new URL("../../src/cli/constellation.mjs", import.meta.url));

describe("placement flags", () => {
  it("each form of a rule", () => {
    assert.deepEqual(placementRule("zone=a", "--constraint"), { attribute: "zone", operator: "=", value: "a" });
    assert.deepEqual(placementRule("zone != a", "--constraint"), { attribute: "zone", operator: "!=", value: "a" });
    assert.deepEqual(placementRule("zone in a, b", "--constraint"), { attribute: "zone", operator: "in", value: ["a", "b"] });
    assert.deepEqual(placementRule("zone not_in a,b", "--constraint"), { attribute: "zone", operator: "not_in", value: ["a", "b"] });
    assert.deepEqual(placementRule("disk~^ss", "--constraint"), { attribute: "disk", operator: "regexp", value: "^ss" });
    assert.deepEqual(placementRule("node.version version >=0.2 <1", "--constraint"), { attribute: "node.version", operator: "version", value: ">=0.2 <1" });
    assert.deepEqual(placementRule("disk=ssd@50", "--affinity"), { attribute: "disk", operator: "=", value: "ssd", weight: 50 });
    assert.deepEqual(placementRule("zone=a@-20", "--affinity"), { attribute: "zone", operator: "=", value: "a", weight: -20 });
    // A value with spaces, =, : or a word that is an operator is the value.
    assert.deepEqual(placementRule("desc=built in house", "--constraint"), { attribute: "desc", operator: "=", value: "built in house" });
    assert.deepEqual(placementRule("motd=see version 2", "--constraint"), { attribute: "motd", operator: "=", value: "see version 2" });
    assert.deepEqual(placementRule("time=12:30@10", "--affinity"), { attribute: "time", operator: "=", value: "12:30", weight: 10 });
  });

  it("a rule that is none, or an affinity without its weight, is a one-line error with exit code 2", () => {
    for (const [flag, rule, said] of [
      ["--constraint", "zone", /--constraint takes ATTR=VALUE, .*; got "zone"/],
      ["--affinity", "disk=ssd", /--affinity takes RULE@WEIGHT/],
      ["--affinity", "time=12:30", /--affinity takes RULE@WEIGHT/],
      ["--constraint", "zone==a", /write one = \(ATTR=VALUE\), not ==/],
    ] as const) {
      const r = spawnSync(process.execPath, [BIN, "create", "--name", "x", flag, rule, "--", "true"], { encoding: "utf8" });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, said);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
  });

  it("on a node: a constraint it meets runs the star; one no node meets leaves it pending, and inspect says why; priorities push aside", { skip: process.platform !== "linux" }, async () => {
    const f = await upWithClient("constellation-placement-", process.getuid?.() === 0 ? [] : ["--dev"]);
    try {
      const [me] = JSON.parse((await cli(f.node.dataDir, ["nodes", "--json"])).stdout) as Array<{ name: string }>;
      const ok = await cli(f.node.dataDir, ["create", "--name", "here", "--ram-mb", "32", "--constraint", `node.name=${me!.name}`, "--strategy", "binpack", "--", "sleep", "60"]);
      assert.equal(ok.code, 0, ok.stderr);
      const no = await cli(f.node.dataDir, ["create", "--name", "nowhere", "--ram-mb", "32", "--constraint", "zone=mars", "--no-wait", "--", "sleep", "60"]);
      assert.equal(no.code, 0, no.stderr);
      const said = await waitFor("inspect to say why", async () => {
        const r = await cli(f.node.dataDir, ["inspect", "nowhere"]);
        return /not placed: 1 node excluded by constraint zone=mars/.test(r.stdout) ? r.stdout : undefined;
      });
      assert.match(said, /pending \(wanted: running\)/);
      assert.match((await cli(f.node.dataDir, ["list"])).stdout, /nowhere\s+pending \(1 node excluded by constraint zone=mars\)/);
      // Priorities: a star with no room stops one of lower priority, which then waits.
      const memoryMb = Math.floor((me as unknown as { memoryBytes: number }).memoryBytes / 2 ** 20);
      const big = String(Math.floor(memoryMb * 0.6));
      const low = await cli(f.node.dataDir, ["create", "--name", "low", "--ram-mb", big, "--priority", "10", "--", "sleep", "60"]);
      assert.equal(low.code, 0, low.stderr);
      const high = await cli(f.node.dataDir, ["create", "--name", "high", "--ram-mb", big, "--priority", "90", "--", "sleep", "60"]);
      assert.equal(high.code, 0, high.stderr);
      assert.match(high.stdout, /running/);
      const lowSays = await waitFor("low stopped and pending, saying by what", async () => {
        const r = await cli(f.node.dataDir, ["inspect", "low", "--json"]);
        const v = JSON.parse(r.stdout) as { state: string; pending?: { reason: string } };
        return v.state !== "running" && v.pending ? v.pending.reason : undefined;
      });
      assert.match(lowSays, new RegExp(`^preempted on node ${me!.name} by star high \\(priority 90 over 10\\)`));
      const bad = await cli(f.node.dataDir, ["create", "--name", "bad", "--priority", "101", "--", "true"]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /priority is 0\.\.100/);
    } finally {
      await f.close();
    }
  });
});
