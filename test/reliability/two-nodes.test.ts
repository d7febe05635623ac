/**
 * Two constellations on one host with the same star names (issue 9, break 5): node B's
 * `create --name web` used to change node A's `web` limit, B's `rm -f web` killed A's, and stars
 * of both got uid 2,000,000. Each node's groups and users are now its own (node.json).
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { alive, starCgroupFile, uidOf } from "../helpers/cgroups.js";
import { type UpFixture, cli, upWithClient } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

describe("two nodes on one host", { skip }, () => {
  const nodes: UpFixture[] = [];
  after(async () => {
    for (const f of nodes) await f.close();
  });

  it("same star names: limits, removal and users stay each node's own", async () => {
    const a = await upWithClient("constellation-node-a-");
    nodes.push(a);
    const b = await upWithClient("constellation-node-b-");
    nodes.push(b);
    const made = await cli(a.node.dataDir, ["create", "--name", "web", "--ram-mb", "64", "--", "sleep", "600"]);
    assert.equal(made.code, 0, made.stderr);
    const aPid = (await a.sdk.star("web").wait({ for: "running" })).status!.pid!;
    const madeB = await cli(b.node.dataDir, ["create", "--name", "web", "--ram-mb", "128", "--", "sleep", "600"]);
    assert.equal(madeB.code, 0, madeB.stderr);
    const bPid = (await b.sdk.star("web").wait({ for: "running" })).status!.pid!;

    assert.equal(starCgroupFile(a.node.dataDir, "web", "memory", "memory.limit_in_bytes"), String(64 * 2 ** 20), "A's limit is A's");
    assert.equal(starCgroupFile(b.node.dataDir, "web", "memory", "memory.limit_in_bytes"), String(128 * 2 ** 20));
    const [aUid, bUid] = [uidOf(aPid)!, uidOf(bPid)!];
    assert.ok(aUid >= 2_000_000 && bUid >= 2_000_000);
    assert.notEqual(aUid, bUid, "stars of two nodes share a user");

    const rm = await cli(b.node.dataDir, ["rm", "-f", "web"]);
    assert.equal(rm.code, 0, rm.stderr);
    await waitFor("B's web gone", () => (!alive(bPid) ? true : undefined));
    assert.ok(alive(aPid), "B's rm -f web killed A's web");
    assert.equal((await a.sdk.star("web").info()).status?.state, "running");
    assert.equal(starCgroupFile(a.node.dataDir, "web", "memory", "memory.limit_in_bytes"), String(64 * 2 ** 20));
  });
});
