/**
 * `constellation init` and `join` as a user runs them (the built CLI, real detached node
 * processes, on loopback): a controller, a node joined with a token, both in `nodes`; join
 * tokens made, listed and revoked; `init` again says what runs; bad input refused with a clear
 * message and a non-zero exit, leaving nothing. Every node process is ended even on failure.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { endNodeStars } from "../helpers/cgroups.js";
import { testDir } from "../helpers/dirs.js";
import { endProcess, waitFor } from "../helpers/wait.js";

const BIN = fileURLToPath(new URL("../../src/cli/constellation.mjs", import.meta.url));
const dev = process.getuid?.() === 0 ? [] : ["--dev"];

describe("constellation init and join (the CLI, detached nodes)", () => {
  let dir: string;
  const data = (n: string) => join(dir, n);
  const cli = (n: string, ...args: string[]) => spawnSync(process.execPath, [BIN, "--data", data(n), ...args], { encoding: "utf8", timeout: 60_000 });
  const ready = (n: string) => JSON.parse(readFileSync(join(data(n), "ready.json"), "utf8")) as { pid: number; address: string; node: string; cluster: string; role: string };

  before(async () => {
    dir = await testDir("constellation-init-");
  });
  after(async () => {
    // Every node this test started ends, its stars first.
    if (existsSync(join(data("n1"), "ready.json"))) cli("n1", "rm", "--all", "--yes", "-f");
    for (const n of ["n2", "n1"]) {
      try {
        await endProcess(ready(n).pid, `node ${n}`);
      } catch {
        // not started
      }
      await endNodeStars(data(n)); // (what its rm had not ended yet)
    }
    await rm(dir, { recursive: true, force: true });
  });

  it("makes a controller, prints how to add a machine; a node joins with that token; both are in `nodes`", async () => {
    const up = cli("n1", "init", "--cluster", "prod", "--node", "node-1", "--port", "0", "--cluster-port", "0", "--api-port", "0", "--gossip-port", "0", "--label", "zone=a", ...dev);
    assert.equal(up.status, 0, up.stderr);
    assert.match(up.stdout, /constellation is up {2}node node-1 of cluster prod \(controller\)/);
    const printed = /constellation join (\S+) --token (cjt1\.\S+)/.exec(up.stdout);
    assert.ok(printed, up.stdout);
    // The printed address is this host's; on loopback here (no traffic leaves the machine).
    const port = printed[1]!.split(":").at(-1)!;
    const badLabel = cli("n2", "join", `127.0.0.1:${port}`, "--node", "node-2", "--token", printed[2]!, "--label", "zone=a b", ...dev);
    assert.equal(badLabel.status, 2);
    assert.match(badLabel.stderr, /--label takes key=value .*got "zone=a b"/);
    for (const bad of ["", " 5 ", "1e3", "0x1F", "-1", "70000"]) {
      const r = cli("n2", "join", `127.0.0.1:${port}`, "--token", printed[2]!, "--gossip-port", bad, ...dev);
      assert.equal(r.status, 2, `--gossip-port "${bad}"`);
      assert.match(r.stderr, /--gossip-port takes a port number 0-65535/);
    }
    const joined = cli("n2", "join", `127.0.0.1:${port}`, "--node", "node-2", "--token", printed[2]!, "--label", "zone=b", "--label", "disk=ssd", "--gossip-port", "0", ...dev);
    assert.equal(joined.status, 0, joined.stderr);
    assert.match(joined.stdout, new RegExp(`node node-2 of cluster prod \\(joined to 127\\.0\\.0\\.1:${port}\\)`));
    const nodes = cli("n1", "nodes", "--json");
    const listed = JSON.parse(nodes.stdout) as Array<{ name: string; address?: string; version?: string; labels?: Record<string, string>; used?: { stars: number } }>;
    assert.deepEqual(listed.map((n) => n.name).sort(), ["node-1", "node-2"]);
    const n2 = listed.find((n) => n.name === "node-2")!;
    assert.deepEqual(n2.labels, { zone: "b", disk: "ssd" });
    assert.deepEqual(listed.find((n) => n.name === "node-1")!.labels, { zone: "a" });
    assert.match(n2.version ?? "", /^\d+\.\d+\.\d+/);
    assert.ok(n2.address, "an address");
    assert.equal(n2.used?.stars, 0);
    assert.match(cli("n1", "nodes").stdout, /NODE +STATE +GOSSIP +ADDRESS +STARS +CPU \(used\/total\) +MEMORY \(used\/total\) +LABELS +VERSION/);
    // Both gossip (the node joined the controller's member), and nodes shows it with the time of the change.
    await waitFor("node-2 alive by gossip", () => (/node-2 +ready +alive \d+[smhd] /.test(cli("n1", "nodes").stdout) ? true : undefined));
    const keys = cli("n1", "gossip", "key", "ls");
    assert.equal(keys.status, 0, keys.stderr);
    assert.match(keys.stdout, /KEY +IN USE\n[0-9a-f]{8} +yes \(seals\)/);
    assert.equal(ready("n2").role, "agent");
    // status: nodes by state, stars, and the controller with where to reach it.
    const status = cli("n1", "status");
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /nodes +2: 2 ready/);
    assert.match(status.stdout, new RegExp(`controller +node-1 +cluster \\S+:${port} +https https://\\S+:\\d+`));
    assert.match(up.stdout, /constellation login https:\/\/\S+ --ca-fingerprint [0-9a-f]{64} --token T/);
  });

  it("init again says what runs there; another cluster's name or another controller is refused", () => {
    const again = cli("n1", "init", "--cluster", "prod");
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /constellation is running {2}node node-1 of cluster prod/);
    const other = cli("n1", "init", "--cluster", "staging");
    assert.equal(other.status, 1);
    assert.match(other.stderr, /runs node node-1 of cluster prod, not staging: give another --data/);
    const elsewhere = cli("n2", "join", "127.0.0.1:1", "--token", "cjt1.x");
    assert.equal(elsewhere.status, 1);
    assert.match(elsewhere.stderr, /joined to 127\.0\.0\.1:\d+: give another --data to join 127\.0\.0\.1:1/);
  });

  it("join tokens: made with an expiry, listed without their secret, revoked; a revoked or bad one joins nothing", () => {
    const made = cli("n1", "token", "--join", "--ttl", "1h");
    assert.equal(made.status, 0, made.stderr);
    const token = made.stdout.trim();
    assert.match(token, /^cjt1\.[0-9a-f]{64}\.([0-9a-f]{12})\.[A-Za-z0-9_-]{43}$/);
    const id = token.split(".")[2]!;
    const listed = cli("n1", "token", "ls", "--join", "--json");
    const tokens = JSON.parse(listed.stdout) as Array<{ id: string; expiresAt: number; secretHash?: string }>;
    const mine = tokens.find((t) => t.id === id);
    assert.ok(mine && Math.abs(mine.expiresAt - (Date.now() + 3_600_000)) < 60_000, listed.stdout);
    assert.ok(tokens.every((t) => t.secretHash === undefined), "no secret's hash is shown");
    // The spelling: token create | list | revoke.
    const second = cli("n1", "token", "create", "--join", "--ttl", "2h");
    assert.equal(second.status, 0, second.stderr);
    const secondId = second.stdout.trim().split(".")[2]!;
    assert.ok((JSON.parse(cli("n1", "token", "list", "--join", "--json").stdout) as Array<{ id: string }>).some((t) => t.id === secondId));
    assert.equal(cli("n1", "token", "revoke", "--join", secondId).status, 0);
    const api = cli("n1", "token", "create", "--scope", "read", "--name", "viewer");
    assert.match(api.stdout, /^cst_/);
    assert.equal(cli("n1", "token", "rm", "--join", id).status, 0);
    const { address } = ready("n1");
    const port = address.split(":").at(-1)!;
    const refused = cli("n3", "join", `127.0.0.1:${port}`, "--node", "node-3", "--token", token, "--gossip-port", "0", ...dev);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /join token [0-9a-f]{12} was revoked: make a new one/);
    assert.equal(existsSync(join(data("n3"), "cluster")), false, "nothing of a refused join is kept");
    const garbage = cli("n4", "join", `127.0.0.1:${port}`, "--token", "not-a-token", ...dev);
    assert.equal(garbage.status, 1);
    assert.match(garbage.stderr, /the join token is not one: copy it whole/);
    const none = cli("n4", "join", `127.0.0.1:${port}`);
    assert.equal(none.status, 2);
    assert.match(none.stderr, /joining needs the token the controller made: --token T/);
    const unknown = cli("n1", "token", "rm", "--join", "000000000000");
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /no join token with id 000000000000/);
  });

  it("a star placed on the joined node runs there; its logs come through the controller's CLI", async () => {
    for (const name of ["p", "q"]) assert.equal(cli("n1", "create", "--name", name, "--", "sh", "-c", `echo "on $(hostname)"; exec sleep 600`).status, 0);
    const list = await waitFor("both running", () => {
      const l = JSON.parse(cli("n1", "list", "--json").stdout) as Array<{ name: string; node: string; status?: { state: string } }>;
      return l.length === 2 && l.every((s) => s.status?.state === "running") ? l : undefined;
    });
    const remote = list.find((s) => s.node === "node-2");
    assert.ok(remote, JSON.stringify(list));
    const logs = await waitFor("its line", () => cli("n1", "logs", remote.name).stdout.trim() || undefined);
    assert.equal(logs, `on ${remote.name}`);
  });
  it("status counts stars by state; drain (the CLI) moves the joined node's star away and places nothing new there; uncordon lets it take stars again", async () => {
    const status = cli("n1", "status");
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /stars +2: 2 running/);
    const before = JSON.parse(cli("n1", "list", "--json").stdout) as Array<{ name: string; node: string }>;
    const moved = before.find((s) => s.node === "node-2");
    assert.ok(moved, JSON.stringify(before));
    const drained = cli("n1", "drain", "node-2");
    assert.equal(drained.status, 0, drained.stderr);
    assert.match(drained.stdout, /draining/);
    await waitFor("its star moved to node-1 and running there", () => {
      const l = JSON.parse(cli("n1", "list", "--json").stdout) as Array<{ name: string; node: string; status?: { state: string } }>;
      const s = l.find((x) => x.name === moved.name);
      return s?.node === "node-1" && s.status?.state === "running" ? true : undefined;
    });
    assert.match(cli("n1", "nodes").stdout, /node-2\s+draining/);
    for (const name of ["r", "s"]) assert.equal(cli("n1", "create", "--name", name, "--", "sleep", "600").status, 0);
    const placed = JSON.parse(cli("n1", "list", "--json").stdout) as Array<{ name: string; node: string }>;
    assert.deepEqual(placed.filter((s) => s.node === "node-2"), [], "nothing placed on a drained node");
    assert.equal(cli("n1", "uncordon", "node-2").status, 0);
    assert.match(cli("n1", "nodes").stdout, /node-2\s+ready/);
    assert.equal(cli("n1", "create", "--name", "t", "--", "sleep", "600").status, 0);
    // The node with fewest stars takes the next one: node-2 (none) against node-1 (four).
    const t = (JSON.parse(cli("n1", "list", "--json").stdout) as Array<{ name: string; node: string }>).find((s) => s.name === "t");
    assert.equal(t?.node, "node-2");
  });
});
