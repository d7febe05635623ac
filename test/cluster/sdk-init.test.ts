/**
 * The SDK's `constellation.init(...)` (issue 11), as the seed's programs call it: it starts this
 * machine's node of a cluster (detached, as `constellation init` does) or finds the one that
 * runs; called twice it is the same node; a data dir of another cluster is a clear error; with
 * `join_nodes` and a token it joins, trying the listed controllers in turn.
 */
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { connect, constellation } from "../../src/index.js";
import { testDir } from "../helpers/dirs.js";
import { endProcess } from "../helpers/wait.js";

const dev = process.getuid?.() !== 0;

describe("constellation.init", () => {
  let dir: string;
  const pids: number[] = [];
  before(async () => {
    dir = await testDir("constellation-sdkinit-");
  });
  after(async () => {
    for (const pid of pids.reverse()) await endProcess(pid, "the node");
    await rm(dir, { recursive: true, force: true });
  });

  it("starts the controller, finds it again, refuses another cluster's name; a second node joins through the listed controllers", async () => {
    const a = join(dir, "a");
    const first = await constellation.init({ cluster_name: "sdk", node_name: "s1", data_dir: a, port: 0, cluster_port: 0, api_port: 0, gossip_port: 0, dev });
    pids.push(first.pid);
    assert.equal(first.role, "controller");
    assert.equal(first.already, false);
    const again = await constellation.init({ cluster_name: "sdk", node_name: "s1", data_dir: a });
    assert.equal(again.already, true);
    assert.equal(again.pid, first.pid);
    await assert.rejects(constellation.init({ cluster_name: "other", data_dir: a }), /runs node s1 of cluster sdk, not other/);
    await assert.rejects(constellation.init({ cluster_name: "sdk", node_name: "s9", data_dir: a }), /runs node s1 of cluster sdk, not s9/);

    const admin = connect({ dataDir: a });
    const { token } = await admin.createJoinToken({ ttlSeconds: 600 });
    const port = first.address.split(":").at(-1)!;
    const second = await constellation.init({ cluster_name: "sdk", node_name: "s2", data_dir: join(dir, "b"), join_nodes: ["127.0.0.1:1", `127.0.0.1:${port}`], token, gossip_port: 0, dev });
    pids.push(second.pid);
    assert.equal(second.role, "agent");
    assert.equal(second.address, `127.0.0.1:${port}`);
    assert.deepEqual((await admin.status()).nodes.map((n) => n.name).sort(), ["s1", "s2"]);
    admin.close();
  });
});
