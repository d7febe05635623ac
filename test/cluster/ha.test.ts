/**
 * A highly-available control plane (issue 12): three controllers on a three-member etcd this
 * test starts (mutual TLS: a controller without a client certificate is refused), each the
 * built CLI's detached `init --store etcd://… --store-ca … --server` (loopback), and a node
 * joined to one of them. Every controller serves the API; one leads the control loops.
 * The leader's process is killed with SIGKILL: the loops run again on another within 5 s, the
 * node reconnects to a live controller by itself, and no star is lost or run twice. An etcd
 * member killed during writes changes nothing a user sees. Every process is ended even on failure.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI, type ListedStar, cliReaders } from "../helpers/constellation.js";
import { KEYS, nodeKey } from "../../src/model/records.js";
import { openStore } from "../../src/store/open.js";
import { endNodeStars } from "../helpers/cgroups.js";
import { testDir } from "../helpers/dirs.js";
import { type EtcdCluster, startEtcd } from "../helpers/etcd-harness.js";
import { endProcess, waitFor } from "../helpers/wait.js";

const dev = process.getuid?.() === 0 ? [] : ["--dev"];
const PORTS = ["--port", "0", "--cluster-port", "0", "--api-port", "0", "--gossip-port", "0"];
const CONTROLLERS = ["c1", "c2", "c3"];

interface Status {
  nodes: Array<{ name: string; state: string }>;
  controllers: Array<{ node: string; address: string; leads: boolean }>;
}

describe("three controllers on etcd, the leader killed", { timeout: 300_000 }, () => {
  let dir: string;
  let etcd: EtcdCluster | undefined;
  const data = (n: string) => join(dir, n);
  const cli = (n: string, ...args: string[]) => spawnSync(process.execPath, [CLI, "--data", data(n), ...args], { encoding: "utf8", timeout: 60_000 });
  const pidOf = (n: string) => (JSON.parse(readFileSync(join(data(n), "ready.json"), "utf8")) as { pid: number }).pid;
  const killed = new Set<string>();
  const alive = () => CONTROLLERS.filter((c) => !killed.has(c));
  const { json, eventsOf } = cliReaders(cli);

  before(async () => {
    dir = await testDir("constellation-ha-");
    // Mutual TLS: etcd takes only clients with a certificate its CA signed.
    etcd = await startEtcd({ members: 3, tls: true });
  });
  after(async () => {
    const any = alive()[0];
    if (any && existsSync(join(data(any), "ready.json"))) cli(any, "rm", "--all", "--yes", "-f");
    for (const n of ["a1", ...CONTROLLERS]) {
      try {
        await endProcess(pidOf(n), `node ${n}`);
      } catch {
        // not started, or killed
      }
      await endNodeStars(data(n)); // (what its rm had not ended yet)
    }
    await etcd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("the first controller makes the cluster in etcd, the others join it through the store; one leads the loops; a node joins any", async () => {
    const store = `etcd://${etcd!.endpoints.map((e) => e.replace("https://", "")).join(",")}`;
    const tls = ["--store-ca", etcd!.tls!.ca, "--store-cert", etcd!.tls!.cert, "--store-key", etcd!.tls!.key];
    const bad = cli("c1", "init", "--server", ...PORTS);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--server needs the cluster's etcd: --store etcd:/);
    const badUrl = cli("c1", "init", "--store", "http://x:1", "--server", ...PORTS);
    assert.equal(badUrl.status, 2);
    assert.match(badUrl.stderr, /--store takes etcd:\/\/HOST:PORT/);
    const halfTls = cli("c1", "init", "--store", store, "--store-ca", etcd!.tls!.ca, "--store-cert", etcd!.tls!.cert, "--server", ...PORTS);
    assert.equal(halfTls.status, 2);
    assert.match(halfTls.stderr, /--store-cert and --store-key go together/);
    // No client certificate: etcd refuses the controller, which says so and registers nothing.
    const noCert = cli("c5", "init", "--store", store, "--store-ca", etcd!.tls!.ca, "--server", "--cluster", "ha", ...PORTS, ...dev);
    assert.notEqual(noCert.status, 0);
    assert.match(noCert.stderr, /etcd refused this controller's client certificate .*give --store-cert and --store-key/);
    // The first start on the empty store fails after making the cluster (a typo in its name, a
    // port in use): the store is left empty, and the next start names the cluster as it likes.
    const etcdPort = new URL(etcd!.endpoints[0]!).port;
    const typo = cli("c1", "init", "--store", store, ...tls, "--server", "--node", "c1", "--cluster", "prdo", "--port", "0", "--cluster-port", etcdPort, "--api-port", "0", "--gossip-port", "0", ...dev);
    assert.notEqual(typo.status, 0);
    assert.match(typo.stderr, /in use/);
    for (const c of CONTROLLERS) {
      const r = cli(c, "init", "--store", store, ...tls, "--server", "--node", c, ...(c === "c1" ? ["--cluster", "ha"] : []), ...PORTS, ...dev);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`node ${c} of cluster ha \\(controller\\)`), "each is a controller of the one cluster");
    }
    // Another name than the store's cluster is refused.
    const other = cli("c4", "init", "--store", store, ...tls, "--server", "--cluster", "other", ...PORTS, ...dev);
    assert.notEqual(other.status, 0);
    assert.match(other.stderr + other.stdout, /the store holds cluster ha, not other/);
    const status = await waitFor("three controllers, one leading", () => {
      const s = json<Status>("c2", "status");
      return s.controllers.length === 3 && s.controllers.filter((c) => c.leads).length === 1 ? s : undefined;
    });
    assert.deepEqual(status.controllers.map((c) => c.node).sort(), CONTROLLERS);
    const token = /constellation join (\S+) --token (\S+)/.exec(cli("c1", "init").stdout);
    assert.ok(token);
    const joined = cli("a1", "join", token[1]!, "--node", "a1", "--token", token[2]!, "--gossip-port", "0", ...dev);
    assert.equal(joined.status, 0, joined.stderr);
    // The node learns every controller (its heartbeats' answers) and keeps them.
    await waitFor("a1 to know the three controllers", () => {
      const f = join(data("a1"), "cluster", "controllers.json");
      return existsSync(f) && (JSON.parse(readFileSync(f, "utf8")) as string[]).length === 3 ? true : undefined;
    });
    // Stars are placed by the loops wherever the API is asked; here, all on a1.
    for (const c of CONTROLLERS) assert.equal(cli("c1", "cordon", c).status, 0);
    for (let k = 0; k < 3; k++) assert.equal(cli(CONTROLLERS[k]!, "create", "--name", `s${k}`, "--restart", "always", "--ram-mb", "32", "--", "sleep", "600").status, 0);
    await waitFor("s0..s2 running on a1", () => {
      const l = json<ListedStar[]>("c3", "list");
      return l.length === 3 && l.every((s) => s.node === "a1" && s.status?.state === "running") ? true : undefined;
    });
  });

  it("keys written by hand in etcd are ignored and said; a damaged CA is refused before a name is taken; a refused start keeps nothing", async () => {
    const store = await openStore({ backend: "etcd", endpoints: etcd!.endpoints, tls: { ca: readFileSync(etcd!.tls!.ca), cert: readFileSync(etcd!.tls!.cert), key: readFileSync(etcd!.tls!.key) } });
    const storeUrl = `etcd://${etcd!.endpoints.map((e) => e.replace("https://", "")).join(",")}`;
    const tls = ["--store-ca", etcd!.tls!.ca, "--store-cert", etcd!.tls!.cert, "--store-key", etcd!.tls!.key];
    try {
      // Garbage under the controllers' prefix and a claim with no lease under the election's.
      await store.put(`${KEYS.controllers}x`, "not json{");
      await store.put(`${KEYS.elections}controller/zzz`, "garbage");
      const s = json<Status>("c2", "status");
      assert.deepEqual(s.controllers.map((c) => c.node).sort(), CONTROLLERS, "the three controllers, the bad key left out");
      assert.equal(s.controllers.filter((c) => c.leads).length, 1);
      await waitFor("the bad key said in a controller's log", () => (readFileSync(join(data("c2"), "node.log"), "utf8").includes(`ignoring ${KEYS.controllers}x in the store`) ? true : undefined));
      await store.delete({ key: `${KEYS.elections}controller/zzz` });
      await store.delete({ key: `${KEYS.controllers}x` });
      // A damaged CA: a new controller is refused and takes no name; put back, the name is free.
      const good = (await store.get(KEYS.clusterCa))!.value;
      for (const bad of ["not json", JSON.stringify({ name: "ha", cert: "garbage", key: "garbage" })]) {
        await store.put(KEYS.clusterCa, bad);
        const r = cli("c6", "init", "--store", storeUrl, ...tls, "--server", "--node", "c6", ...PORTS, ...dev);
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /the cluster's CA in the store \(\/constellation\/cluster\/ca\) is not one: (not JSON|its cert is not a PEM certificate)\. It was written by hand or damaged/);
        assert.equal(await store.get(`${KEYS.nodeNames}c6`), undefined, "no name taken");
        assert.equal(existsSync(join(data("c6"), "store.json")), false, "nothing kept of the refused start");
      }
      await store.put(KEYS.clusterCa, JSON.stringify({ ...(JSON.parse(good) as object), name: 'Bad Name/../x"\ninjected' }));
      const badName = cli("c6", "init", "--store", storeUrl, ...tls, "--server", "--node", "c6", ...PORTS, ...dev);
      assert.match(badName.stderr, /is not one: its cluster name is not a DNS label/);
      await store.put(KEYS.clusterCa, good);
      // A registration with no lease (written by hand) would last for ever: not listed.
      await store.put(`${KEYS.controllers}ghost`, JSON.stringify({ node: "ghost", address: "127.0.0.1:9" }));
      assert.deepEqual(json<Status>("c2", "status").controllers.map((c) => c.node).sort(), CONTROLLERS);
      await store.delete({ key: `${KEYS.controllers}ghost` });
      // A start that fails after it was made a controller (its cluster port in use) takes it all back.
      const taken = (json<Status>("c1", "status").controllers.find((c) => c.node === "c1")!.address.split(":").at(-1))!;
      const busy = cli("c7", "init", "--store", storeUrl, ...tls, "--server", "--node", "c7", "--port", "0", "--cluster-port", taken, "--api-port", "0", "--gossip-port", "0", ...dev);
      assert.notEqual(busy.status, 0);
      assert.match(busy.stderr, /in use/);
      for (const key of [`${KEYS.nodeNames}c7`, nodeKey("c7"), `${KEYS.alive}c7`]) assert.equal(await store.get(key), undefined, `${key} left behind`);
      for (const f of ["cluster", "store.json", "admin.token"]) assert.equal(existsSync(join(data("c7"), f)), false, `${f} left in the data dir`);
      // The refused data dir is no controller of any store: another store's (members in another order) is not refused for it.
      const reordered = `etcd://${etcd!.endpoints.map((e) => e.replace("https://", "")).reverse().join(",")}`;
      const wrongName = cli("c6", "init", "--store", reordered, ...tls, "--server", "--cluster", "other", "--node", "c6", ...PORTS, ...dev);
      assert.match(wrongName.stderr, /the store holds cluster ha, not other/);
      assert.equal(await store.get(`${KEYS.nodeNames}c6`), undefined);
    } finally {
      await store.close();
    }
  });

  it("the leader's process killed: the loops run again on another within 5 s, the node reconnects, no star is lost or run twice", async () => {
    const before = json<ListedStar[]>("c2", "list");
    const leader = json<Status>("c2", "status").controllers.find((c) => c.leads)!.node;
    const survivor = CONTROLLERS.find((c) => c !== leader)!;
    const at = Date.now();
    process.kill(pidOf(leader), "SIGKILL");
    killed.add(leader);
    // The loops' proof: a star made now is placed (only the loops place stars).
    const made = cli(survivor, "create", "--name", "after", "--restart", "always", "--ram-mb", "32", "--", "sleep", "600");
    assert.equal(made.status, 0, made.stderr);
    // When the loops placed it: its event's time (this machine's clock, as the kill's).
    const placedAt = await waitFor("the new star placed", () => eventsOf(survivor, "after").find((e) => e.kind === "star.assigned")?.at, { timeoutMs: 15_000, intervalMs: 100 });
    const failover = placedAt - at;
    if (process.env.DEBUG_LOG) console.log(`killed ${leader}; the loops ran again on another after ${failover} ms`);
    assert.ok(failover < 5000, `the loops ran again ${failover} ms after the leader was killed`);
    const now = json<Status>(survivor, "status");
    assert.notEqual(now.controllers.find((c) => c.leads)?.node, leader, "another controller leads");
    // The node is connected to a live controller (the star placed on it runs), and nothing ran twice.
    await waitFor("after running on a1", () => (json<ListedStar>(survivor, "inspect", "after").status?.state === "running" ? true : undefined), { timeoutMs: 20_000 });
    const list = json<ListedStar[]>(survivor, "list");
    for (const s of before) {
      const n = list.find((x) => x.name === s.name);
      assert.equal(n?.status?.pid, s.status?.pid, `${s.name} runs on, the same process`);
      assert.equal(n?.node, "a1");
    }
    assert.deepEqual(readdirSync(join(data("a1"), "runtime", "stars")).sort(), ["after", "s0", "s1", "s2"], "one copy of each star on a1");
  });

  it("an etcd member killed during writes: the controllers keep serving from the quorum's side, nothing is lost", async () => {
    const c = alive()[0]!;
    const victim = (await etcd!.leaderIndex()) ?? 0;
    const writes: Array<Promise<ReturnType<typeof cli>>> = [];
    await etcd!.killMember(victim);
    for (let k = 0; k < 5; k++) writes.push(Promise.resolve(cli(c, "create", "--name", `w${k}`, "--restart", "always", "--ram-mb", "16", "--", "sleep", "600")));
    const done = await Promise.all(writes);
    for (const r of done) assert.equal(r.status, 0, r.stderr);
    await waitFor("w0..w4 running", () => {
      const l = json<ListedStar[]>(c, "list").filter((s) => s.name.startsWith("w"));
      return l.length === 5 && l.every((s) => s.status?.state === "running") ? true : undefined;
    }, { timeoutMs: 30_000 });
    await etcd!.restartMember(victim);
  });
});
