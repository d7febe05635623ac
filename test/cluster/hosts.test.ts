/**
 * A cluster of three hosts on this machine, each in a network namespace of its own joined by a
 * veth pair to a bridge this test makes (test/helpers/hosts.ts), each running the built
 * `constellation` as a user would (issue 11): they join with a token and see each other; stars
 * run on remote hosts; a host killed with SIGKILL is declared dead when its lease expires (the
 * default TTL, 10 s) and its stars that may restart run again on the survivors; a host cut off
 * by its link is handled the same, and once the link is back its old copies end within 5 s
 * (fencing by assignment). Everything is torn down even when a test fails.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI } from "../helpers/constellation.js";
import { removeNodeGroups } from "../helpers/cgroups.js";
import { testDir } from "../helpers/dirs.js";
import { Hosts, hostsSupported } from "../helpers/hosts.js";
import { waitFor } from "../helpers/wait.js";

const skip = hostsSupported();

interface StarRow {
  name: string;
  node: string;
  status?: { state: string; pid?: number };
}

describe("three hosts in network namespaces", { skip, timeout: 300_000 }, () => {
  let hosts: Hosts | undefined;
  let dir: string;
  const data = (i: number) => join(dir, `h${i}`);
  /** The CLI in host i, with host i's data dir. */
  const cli = (i: number, ...args: string[]) => hosts!.run(i, [process.execPath, CLI, "--data", data(i), ...args]);
  const ctl = (...args: string[]) => cli(0, ...args);
  const stars = () => JSON.parse(ctl("list", "--json").stdout) as StarRow[];
  const nodeState = (name: string) => (JSON.parse(ctl("nodes", "--json").stdout) as Array<{ name: string; state?: string }>).find((n) => n.name === name)?.state;

  let ctlStarted = 0;
  before(async () => {
    dir = await testDir("constellation-hosts-");
    hosts = await Hosts.create(3);
  });
  after(async () => {
    try {
      if (existsSync(join(data(0), "ready.json"))) ctl("rm", "--all", "--yes", "-f");
    } finally {
      hosts?.destroy(); // every process in every host, the namespaces, the bridge
      await waitFor("the hosts' cgroups removed", () => ([0, 1, 2].map((i) => removeNodeGroups(data(i))).every(Boolean) ? true : undefined)).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("three hosts join with a token and see each other", () => {
    ctlStarted = Date.now();
    const up = ctl("init", "--cluster", "prod", "--node", "h0", "--port", "0");
    assert.equal(up.status, 0, up.stderr);
    const join0 = /constellation join (\S+) --token (\S+)/.exec(up.stdout);
    assert.ok(join0, up.stdout);
    assert.equal(join0[1], `${hosts!.address(0)}:7946`, "the join command names the host's address on the bridge");
    for (const i of [1, 2]) {
      const r = cli(i, "join", join0[1]!, "--node", `h${i}`, "--token", join0[2]!);
      assert.equal(r.status, 0, r.stderr);
    }
    const nodes = JSON.parse(ctl("nodes", "--json").stdout) as Array<{ name: string; state: string }>;
    assert.deepEqual(nodes.map((n) => `${n.name}:${n.state}`).sort(), ["h0:up", "h1:up", "h2:up"]);
  });

  it("stars are placed on every host and run there; logs, inspect and stop work from the controller", async () => {
    for (let k = 0; k < 6; k++) {
      const r = ctl("create", "--name", `s${k}`, "--restart", "always", "--ram-mb", "32", "--", "sh", "-c", `echo "s${k} on $(hostname)"; exec sleep 600`);
      assert.equal(r.status, 0, r.stderr);
    }
    const running = await waitFor("all running", () => {
      const l = stars();
      return l.length === 6 && l.every((s) => s.status?.state === "running") ? l : undefined;
    });
    assert.deepEqual([...new Set(running.map((s) => s.node))].sort(), ["h0", "h1", "h2"], "each host runs some");
    const remote = running.find((s) => s.node === "h2")!;
    // Its process is in host h2's namespace.
    assert.ok(hosts!.pids(2).includes(remote.status!.pid!), "the star's process runs in h2");
    assert.equal((await waitFor("its log", () => ctl("logs", remote.name).stdout.trim() || undefined)), `${remote.name} on ${remote.name}`);
    const inspect = JSON.parse(ctl("inspect", remote.name, "--json").stdout) as { node: string };
    assert.equal(inspect.node, "h2");
    assert.equal(ctl("stop", remote.name).status, 0);
    assert.equal(ctl("start", remote.name).status, 0);
  });

  it("another host's CLI logs in to the controller's HTTPS API (its CA pinned by fingerprint); logs -f, inspect and stop work from there", async () => {
    const up = ctl("init", "--cluster", "prod");
    const login = /constellation login (https:\/\/\S+) --ca-fingerprint ([0-9a-f]{64})/.exec(up.stdout);
    assert.ok(login, up.stdout);
    assert.match(login[1]!, new RegExp(`^https://${hosts!.address(0).replace(/\./g, "\\.")}:7443$`), "the HTTPS API's address is the host's on the bridge");
    const token = /cst_\S+/.exec(ctl("token", "--scope", "admin", "--ttl", "1h").stdout)?.[0];
    assert.ok(token);
    // Host h1's user: no controller in its data dir, so the CLI uses its login.
    const home = join(dir, "home1");
    const env = { PATH: process.env.PATH, HOME: home };
    const remote = (...args: string[]) => hosts!.run(1, [process.execPath, CLI, ...args], { env });
    const before = remote("nodes");
    assert.notEqual(before.status, 0);
    assert.match(before.stderr, /constellation login https:\/\/HOST:7443/);
    const wrong = remote("login", login[1]!, "--ca-fingerprint", "0".repeat(64), "--token", token);
    assert.notEqual(wrong.status, 0);
    assert.match(wrong.stderr, /does not present the CA 0{64}.*nothing was saved/);
    const badToken = remote("login", login[1]!, "--ca-fingerprint", login[2]!, "--token", "cst_nope");
    assert.notEqual(badToken.status, 0);
    assert.equal(existsSync(join(home, ".config", "constellation", "login.json")), false, "a refused login saves nothing");
    const ok = remote("login", login[1]!, "--ca-fingerprint", login[2]!, "--token", token);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /logged in .* 3 nodes/);
    assert.equal(remote("create", "--name", "far", "--restart", "never", "--ram-mb", "32", "--", "sh", "-c", "echo one; sleep 1; echo two").status, 0);
    const followed = remote("logs", "-f", "far");
    assert.equal(followed.status, 0, followed.stderr);
    assert.deepEqual(followed.stdout.trim().split("\n"), ["one", "two"]);
    const inspected = JSON.parse(remote("inspect", "far", "--json").stdout) as { name: string; node: string };
    assert.equal(inspected.name, "far");
    const sleeper = stars().find((s) => s.status?.state === "running" && s.node !== "h1")!;
    assert.equal(remote("stop", sleeper.name).status, 0);
    assert.equal(JSON.parse(ctl("inspect", sleeper.name, "--json").stdout).desired, "stopped");
    assert.equal(remote("start", sleeper.name).status, 0);
    assert.equal(remote("rm", "far").status, 0);
    // A star on a joined host gets the controller's HTTPS API, a token of its own and the CA:
    // its SDK (here plain node:https, as the SDK does it) reaches the API from that host.
    const probe = `const https = require("node:https"); const e = new URL(process.env.CONSTELLATION_ENDPOINT);
https.get({ host: e.hostname, port: e.port, path: "/v1/status", ca: process.env.CONSTELLATION_CA, headers: { authorization: "Bearer " + process.env.CONSTELLATION_TOKEN } },
  (r) => { let b = ""; r.on("data", (d) => (b += d)); r.on("end", () => console.log(e.protocol, r.statusCode, JSON.parse(b).stars.total > 0)); }).on("error", (err) => console.log("error", err.code));`;
    for (let k = 0; k < 3; k++) assert.equal(ctl("create", "--name", `sdk${k}`, "--restart", "never", "--ram-mb", "64", "--", process.execPath, "-e", probe).status, 0);
    const placed = await waitFor("the probes to end", () => {
      const l = stars().filter((s) => s.name.startsWith("sdk"));
      return l.length === 3 && l.every((s) => s.status?.state === "exited" || s.status?.state === "failed") ? l : undefined;
    }, { timeoutMs: 30_000 });
    const far = placed.filter((s) => s.node !== "h0");
    assert.ok(far.length > 0, "some probe ran on a joined host");
    for (const s of far) assert.equal(ctl("logs", s.name).stdout.trim(), "https: 200 true", `${s.name} on ${s.node}`);
    for (const s of placed) ctl("rm", s.name);
  });

  it("a host killed with SIGKILL is declared dead when its lease expires; its stars run again on the others", async () => {
    const on2 = stars().filter((s) => s.node === "h2").map((s) => s.name);
    assert.ok(on2.length > 0);
    const killed = Date.now();
    hosts!.kill(2); // the node and its stars: the host lost its power
    await waitFor("h2 down", () => (nodeState("h2") === "down" ? true : undefined), { timeoutMs: 60_000 });
    // The TTL is 10 s (and the controller judges no node for twice that after its own start).
    const bound = Math.max(killed + 12_000, ctlStarted + 22_000);
    assert.ok(Date.now() <= bound, `declared dead ${(Date.now() - killed) / 1000} s after the kill`);
    await waitFor("h2's stars running elsewhere", () => {
      const l = stars().filter((s) => on2.includes(s.name));
      return l.every((s) => s.node !== "h2" && s.status?.state === "running") ? true : undefined;
    }, { timeoutMs: 30_000 });
  });

  it("a host cut off by its link is re-placed; when the link is back, its old copies end within 5 s", async () => {
    const on1 = stars().filter((s) => s.node === "h1").map((s) => s.name);
    assert.ok(on1.length > 0);
    const pidsBefore = hosts!.pids(1).length;
    hosts!.cut(1);
    try {
      await waitFor("h1 down", () => (nodeState("h1") === "down" ? true : undefined), { timeoutMs: 30_000 });
      await waitFor("h1's stars running on h0", () => {
        const l = stars().filter((s) => on1.includes(s.name));
        return l.every((s) => s.node === "h0" && s.status?.state === "running") ? true : undefined;
      }, { timeoutMs: 30_000 });
      // Cut off, h1 still runs its copies (two copies now: the default, availability).
      assert.ok(on1.every((n) => existsSync(join(data(1), "runtime", "stars", n))), "h1 keeps its copies while cut off");
    } finally {
      hosts!.heal(1);
    }
    const healed = Date.now();
    await waitFor("h1's old copies ended", () => (on1.every((n) => !existsSync(join(data(1), "runtime", "stars", n))) ? true : undefined), { timeoutMs: 30_000 });
    assert.ok(Date.now() - healed < 5000, `ended ${Date.now() - healed} ms after the link was back`);
    assert.ok(hosts!.pids(1).length < pidsBefore, "their processes are gone");
    await waitFor("h1 up again", () => (nodeState("h1") === "up" ? true : undefined), { timeoutMs: 30_000 });
    assert.equal(JSON.parse(readFileSync(join(data(1), "cluster", "cluster.json"), "utf8")).node, "h1");
  });

  it("a link that loses 30 % of its packets slows the cluster but does not break it: no node taken for dead, stars still placed", async () => {
    hosts!.drop(1, 30);
    try {
      const until = Date.now() + 12_000; // longer than the TTL
      const r = ctl("create", "--name", "lossy", "--ram-mb", "32", "--", "sh", "-c", "echo lossy; exec sleep 600");
      assert.equal(r.status, 0, r.stderr);
      while (Date.now() < until) {
        assert.equal(nodeState("h1"), "up", "h1 stays up through the loss");
        await new Promise((done) => setTimeout(done, 1000));
      }
      await waitFor("lossy running", () => (stars().find((s) => s.name === "lossy")?.status?.state === "running" ? true : undefined), { timeoutMs: 30_000 });
    } finally {
      hosts!.drop(1, 0);
    }
  });

  it("an exclusive star through a partition: its cut-off host stops it before it runs elsewhere — never two copies", async () => {
    const marker = "601.5"; // its sleep, told apart from every other star's
    const r = ctl("create", "--name", "once", "--exclusive", "--restart", "always", "--stop-grace-ms", "1000", "--ram-mb", "32", "--", "sleep", marker);
    assert.equal(r.status, 0, r.stderr);
    const first = await waitFor("once running", () => {
      const s = stars().find((x) => x.name === "once");
      return s?.status?.state === "running" ? s : undefined;
    });
    assert.equal(first.node, "h1", "placed on the host with fewest stars (h0 holds the moved ones, h2 is dead)");
    /** The hosts where a copy runs now (by its process in each host's namespace). */
    const copies = () =>
      [0, 1].filter((i) =>
        hosts!.pids(i).some((pid) => {
          try {
            return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(marker);
          } catch {
            return false;
          }
        }),
      );
    let most = 0;
    const watcher = setInterval(() => (most = Math.max(most, copies().length)), 50);
    try {
      hosts!.cut(1);
      const stopped = await waitFor("h1 to stop its copy", () => (copies().length === 0 ? Date.now() : undefined), { timeoutMs: 30_000 });
      await waitFor("once running on h0", () => {
        const s = stars().find((x) => x.name === "once");
        return s?.node === "h0" && s.status?.state === "running" && copies().join() === "0" ? true : undefined;
      }, { timeoutMs: 60_000 });
      assert.ok(Date.now() - stopped >= 0);
      hosts!.heal(1);
      await waitFor("h1 up again", () => (nodeState("h1") === "up" ? true : undefined), { timeoutMs: 30_000 });
      await new Promise((done) => setTimeout(done, 2000)); // h1 back: it must not start its old copy
      assert.deepEqual(copies(), [0]);
    } finally {
      clearInterval(watcher);
      hosts!.heal(1);
    }
    assert.equal(most, 1, "two copies never ran at once");
  });
});
