/**
 * Deployments across hosts (issue 13): three hosts in network namespaces (test/helpers/hosts.ts)
 * running the built `constellation`. A deployment of 12 stars spreads 4/4/4; an HTTP server's
 * replicas each get a port of their own and answer from their hosts; a rolling update with
 * max_unavailable 1 never has more than one replica down at any sampled moment; a broken version
 * rolls back by itself; a killed host's stars are placed again and the deployments are whole.
 * Everything is torn down even when a test fails.
 */
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI } from "../helpers/constellation.js";
import { removeNodeGroups } from "../helpers/cgroups.js";
import { testDir } from "../helpers/dirs.js";
import { Hosts, hostsSupported } from "../helpers/hosts.js";
import { waitFor } from "../helpers/wait.js";

const skip = hostsSupported();

const WEB = `import { createServer } from "node:http";
if (process.env.CRASH) { console.error("crashing on purpose"); process.exit(1); }
createServer((req, res) => res.end(\`v\${process.env.V ?? "1"}\`)).listen(Number(process.env.PORT_HTTP), "0.0.0.0");
`;

interface StarRow {
  name: string;
  node: string;
  deployment?: { name: string; revision: number };
  status?: { state: string; ready: boolean; ports?: Record<string, number> };
}

describe("deployments on three hosts", { skip, timeout: 300_000 }, () => {
  let hosts: Hosts | undefined;
  let dir: string;
  const data = (i: number) => join(dir, `h${i}`);
  const cli = (i: number, ...args: string[]) => hosts!.run(i, [process.execPath, CLI, "--data", data(i), ...args], { timeoutMs: 120_000 });
  const ctl = (...args: string[]) => cli(0, ...args);
  const stars = (deployment: string) => (JSON.parse(ctl("list", "--json").stdout) as StarRow[]).filter((s) => s.deployment?.name === deployment);
  const rollout = (name: string) => JSON.parse(ctl("rollout", "status", name, "--no-follow", "--json").stdout) as { revision: number; rollout: { state: string }; history: Array<{ cause: string }> };
  /** What each replica of `web` answers, asked from host h1 over the bridge. */
  const answers = () => {
    const urls = stars("web").map((s) => `http://${hosts!.address(Number(s.node.slice(1)))}:${s.status!.ports!.http}/`);
    const r = hosts!.run(1, [process.execPath, "-e", `Promise.all(${JSON.stringify(urls)}.map((u) => fetch(u).then((r) => r.text(), (e) => "down " + e.cause?.code))).then((a) => console.log(JSON.stringify(a)))`]);
    return (JSON.parse(r.stdout) as string[]).sort();
  };

  before(async () => {
    dir = await testDir("constellation-deploy-hosts-");
    await mkdir(join(dir, "app"), { mode: 0o755 });
    writeFileSync(join(dir, "app", "web.mjs"), WEB, { mode: 0o644 });
    hosts = await Hosts.create(3);
    const up = ctl("init", "--cluster", "prod", "--node", "h0", "--port", "0");
    assert.equal(up.status, 0, up.stderr);
    const join0 = /constellation join (\S+) --token (\S+)/.exec(up.stdout);
    assert.ok(join0, up.stdout);
    for (const i of [1, 2]) assert.equal(cli(i, "join", join0[1]!, "--node", `h${i}`, "--token", join0[2]!).status, 0);
  });
  after(async () => {
    try {
      if (existsSync(join(data(0), "ready.json"))) {
        for (const d of ["spread12", "web"]) ctl("deployments", "rm", d);
        ctl("rm", "--all", "--yes", "-f");
      }
    } finally {
      hosts?.destroy();
      await waitFor("the hosts' cgroups removed", () => ([0, 1, 2].map((i) => removeNodeGroups(data(i))).every(Boolean) ? true : undefined)).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a deployment of 12 stars spreads 4/4/4 over three hosts", () => {
    const r = ctl("deploy", "--name", "spread12", "--instances", "12", "--ram-mb", "16", "--", "sleep", "600");
    assert.equal(r.status, 0, r.stderr);
    const per = new Map<string, number>();
    for (const s of stars("spread12")) per.set(s.node, (per.get(s.node) ?? 0) + 1);
    assert.deepEqual([...per].sort(), [["h0", 4], ["h1", 4], ["h2", 4]]);
  });

  it("an HTTP server's replicas each get a port and answer; a rolling update never has more than max_unavailable down; a broken version rolls back", async () => {
    const web = join(dir, "app", "web.mjs");
    const deploy = (...extra: string[]) => ctl("deploy", web, "--instances", "3", "--port", "http", "--health", "http:http/", "--ram-mb", "64", "--max-surge", "0", "--max-unavailable", "1", ...extra);
    const first = deploy();
    assert.equal(first.status, 0, first.stderr);
    assert.deepEqual(answers(), ["v1", "v1", "v1"]);
    // Its code travelled as an artifact: each host fetched it from the controller by its hash.
    const spec = (JSON.parse(ctl("inspect", stars("web")[0]!.name, "--json").stdout) as { spec: { artifact?: string } }).spec;
    const hex = /^sha256:([0-9a-f]{64})$/.exec(spec.artifact ?? "")?.[1];
    assert.ok(hex, JSON.stringify(spec));
    for (const s of stars("web")) assert.ok(existsSync(join(data(Number(s.node.slice(1))), "artifacts", hex, "main.mjs")), `${s.node} holds the code`);
    // Each replica has its port (on its own host: two on one host would still differ).
    const ports = stars("web").map((s) => `${s.node}:${s.status!.ports!.http}`);
    assert.equal(new Set(ports).size, 3, ports.join());

    // The update, sampled as it goes: at most one of three replicas not ready at any moment.
    // (min_ready_ms: each new replica counts a second after it is ready, so the samples see the steps.)
    const started = deploy("--env", "V=2", "--min-ready-ms", "1000", "--no-wait");
    assert.equal(started.status, 0, started.stderr);
    let worst = 3;
    let samples = 0;
    await waitFor("revision 2 complete", () => {
      const ready = stars("web").filter((s) => s.status?.state === "running" && s.status.ready).length;
      worst = Math.min(worst, ready);
      samples++;
      const r = rollout("web");
      return r.revision === 2 && r.rollout.state === "complete" ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 0 });
    assert.ok(samples >= 3, `${samples} samples`);
    assert.ok(worst >= 2, `at most max_unavailable (1) down: ${3 - worst} were`);
    assert.deepEqual(answers(), ["v2", "v2", "v2"]);

    // A broken version: rolled back by itself, v2 answering all along.
    const broken = deploy("--env", "V=3", "--env", "CRASH=1", "--min-ready-ms", "1000");
    assert.equal(broken.status, 1, broken.stdout);
    assert.match(broken.stderr, /revision 3 failed and was rolled back \(rollback to 2: /);
    await waitFor("the rollback complete", () => {
      const r = rollout("web");
      return r.revision === 4 && r.rollout.state === "complete" ? true : undefined;
    }, { timeoutMs: 60_000 });
    assert.deepEqual(answers(), ["v2", "v2", "v2"]);
  });

  it("killing a host places its stars again: the deployments are whole", async () => {
    const onH2 = [...stars("spread12"), ...stars("web")].filter((s) => s.node === "h2").map((s) => s.name);
    assert.ok(onH2.length >= 4, onH2.join());
    hosts!.kill(2);
    await waitFor("both deployments whole on h0 and h1", () => {
      const all = [...stars("spread12"), ...stars("web")];
      const running = all.filter((s) => s.node !== "h2" && s.status?.state === "running" && s.status.ready);
      return running.length === 15 ? true : undefined;
    }, { timeoutMs: 90_000 });
    assert.deepEqual(answers(), ["v2", "v2", "v2"]);
    const per = new Map<string, number>();
    for (const s of stars("spread12")) per.set(s.node, (per.get(s.node) ?? 0) + 1);
    assert.deepEqual([...per].sort(), [["h0", 6], ["h1", 6]], "spread over the hosts left");
  });
});
