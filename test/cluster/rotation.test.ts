/**
 * Certificates renewed before they expire, without a restart (issue 11): a controller whose
 * certificates live 6 s renews its own and its node's at two thirds of their lives; the node
 * stays up throughout; after the first ones expired, the
 * node restarted connects with its renewed one, to the controller's renewed one.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { identityOf } from "../../src/cluster/tls/ca.js";
import { type AgentNode, startAgentNode } from "../../src/server/agent-node.js";
import { type SingleNode, startSingleNode } from "../../src/server/single-node.js";
import { type Constellation, connect } from "../../src/sdk/client.js";
import { testDir } from "../helpers/dirs.js";
import { waitFor } from "../helpers/wait.js";

const LIFE_S = 6;

describe("certificate rotation", () => {
  let dir: string;
  let ctl: SingleNode;
  let node2: AgentNode | undefined;
  let c: Constellation;
  const serial = (node: string) => identityOf(readFileSync(join(dir, node, "cluster", "node.crt"), "utf8"))!.serial;

  before(async () => {
    dir = await testDir("constellation-rotation-");
    ctl = await startSingleNode({ dataDir: join(dir, "node-1"), port: 0, devMode: process.getuid?.() !== 0, nodeName: "node-1", cluster: { name: "rot", port: 0, apiPort: 0, gossipPort: 0, host: "127.0.0.1", addresses: ["127.0.0.1"], certValidDays: LIFE_S / 86_400, nodeTtlSeconds: 2, log: () => undefined } });
    c = connect({ endpoint: ctl.url, token: ctl.token });
  });
  after(async () => {
    await node2?.close();
    await ctl?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("renews every certificate at two thirds of its life, keeps the node up; a restart after they expired connects with the new ones", async () => {
    const { token } = await ctl.cluster!.joinToken();
    node2 = await startAgentNode({ gossipPort: 0, dataDir: join(dir, "node-2"), nodeName: "node-2", join: { address: `127.0.0.1:${ctl.cluster!.port}`, token }, addresses: ["127.0.0.1"], log: () => undefined });
    const first = { node1: serial("node-1"), node2: serial("node-2") };
    const expires = identityOf(readFileSync(join(dir, "node-2", "cluster", "node.crt"), "utf8"))!.notAfter;
    // Two renewals each, while the node stays up.
    let renewals = 0;
    let last = first.node2;
    await waitFor("two renewals of node-2's certificate", async () => {
      assert.equal((await c.status()).nodes.find((n) => n.name === "node-2")?.state, "up");
      if (serial("node-2") !== last) {
        last = serial("node-2");
        renewals++;
      }
      return renewals >= 2 ? true : undefined;
    }, { timeoutMs: 30_000 });
    assert.notEqual(serial("node-1"), first.node1, "the controller renewed its own");
    await waitFor("the first certificates expired", () => (Date.now() > expires + 500 ? true : undefined));
    // Restarted, the node connects with what it holds now, to the controller's current one.
    await node2.close();
    node2 = await startAgentNode({ gossipPort: 0, dataDir: join(dir, "node-2"), log: () => undefined });
    await waitFor("connected again", () => node2!.connected() || undefined);
    assert.equal((await c.status()).nodes.find((n) => n.name === "node-2")?.state, "up");
  });
});
