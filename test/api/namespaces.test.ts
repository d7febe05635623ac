/**
 * Namespaces and quotas over real HTTP (issue 13): stars and tokens belong to a namespace; a
 * namespace's token sees and touches only it (and not the cluster: nodes, tokens, quotas); a
 * star's token and its children stay in its star's namespace; a quota caps a namespace's cpu,
 * memory, disk and star count, and going over it is a clear error at create and start.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ApiHarness, startApi } from "../helpers/api.js";

const sleeper = (name: string, extra: Record<string, unknown> = {}) => ({ spec: { name, command: ["sleep", "60"], ...extra } });

describe("namespaces and quotas", () => {
  let api: ApiHarness;
  let teamA: string;
  let readA: string;

  before(async () => {
    api = await startApi();
    const mk = async (body: unknown) => {
      const res = await api.request("POST", "/v1/tokens", { body });
      assert.equal(res.status, 201, res.text);
      return res.json<{ token: string; namespace?: string }>();
    };
    const a = await mk({ scope: "admin", name: "team-a", namespace: "team-a" });
    assert.equal(a.namespace, "team-a");
    teamA = a.token;
    readA = (await mk({ scope: "read", name: "team-a-read", namespace: "team-a" })).token;
    assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("cluster-star") })).status, 201);
  });
  after(() => api.close());

  const names = async (token?: string) => (await api.request("GET", "/v1/stars", token ? { token } : {})).json<{ stars: Array<{ name: string }> }>().stars.map((s) => s.name).sort();

  it("a namespace's token makes stars in its namespace, and sees and touches only those", async () => {
    const made = await api.request("POST", "/v1/stars", { token: teamA, body: sleeper("a-web") });
    assert.equal(made.status, 201, made.text);
    assert.equal(made.json<{ namespace?: string }>().namespace, "team-a");
    // Asking for another namespace is refused, saying which one is its.
    const other = await api.request("POST", "/v1/stars", { token: teamA, body: sleeper("sneaky", { namespace: "default" }) });
    assert.equal(other.status, 403, other.text);
    assert.match(other.error().message, /namespace: this token's stars are made in namespace team-a; leave namespace out.*scope is admin of namespace team-a/);
    assert.deepEqual(await names(teamA), ["a-web"]);
    assert.deepEqual(await names(readA), ["a-web"]);
    assert.deepEqual(await names(), ["a-web", "cluster-star"], "the cluster's admin sees every namespace");
    // Another namespace's star is as if it did not exist: read, stop, remove, events.
    for (const [method, path] of [["GET", "/v1/stars/cluster-star"], ["POST", "/v1/stars/cluster-star/stop"], ["DELETE", "/v1/stars/cluster-star?force=1"]] as const) {
      const res = await api.request(method, path, { token: teamA });
      assert.equal(res.status, 404, `${method} ${path}: ${res.text}`);
    }
    const events = (await api.request("GET", "/v1/events", { token: teamA })).text;
    assert.ok(!events.includes("cluster-star") && events.includes("a-web"), events);
    assert.equal((await api.request("POST", "/v1/stars/a-web/stop", { token: teamA })).status, 200);
    // A read token of the namespace reads only.
    assert.equal((await api.request("POST", "/v1/stars/a-web/start", { token: readA })).status, 403);
  });

  it("a namespace's admin is no cluster admin: not nodes, tokens, quotas, nor fields that widen a star's reach", async () => {
    for (const [method, path, body] of [
      ["GET", "/v1/tokens", undefined],
      ["POST", "/v1/tokens", { scope: "admin" }],
      ["POST", "/v1/nodes/n1/cordon", undefined],
      ["PUT", "/v1/namespaces/team-a/quota", { stars: 1000 }],
      ["DELETE", "/v1/namespaces/team-a/quota", undefined],
    ] as const) {
      const res = await api.request(method, path, { token: teamA, ...(body ? { body } : {}) });
      assert.equal(res.status, 403, `${method} ${path}: ${res.text}`);
      assert.match(res.error().message, /this token's scope is admin of namespace team-a; this request needs an admin token of the whole cluster/);
    }
    const urgent = await api.request("POST", "/v1/stars", { token: teamA, body: sleeper("urgent", { priority: 51 }) });
    assert.equal(urgent.status, 403, urgent.text);
    assert.match(urgent.error().message, /priority: a namespace's stars have a priority of at most 50 \(the default\): only a cluster admin may ask for more/);
    const mounts = await api.request("POST", "/v1/stars", { token: teamA, body: sleeper("m", { mounts: [{ host: "/etc" }] }) });
    assert.equal(mounts.status, 403, mounts.text);
    assert.match(mounts.error().message, /only an admin token of the whole cluster may ask for that \(this token's scope is admin of namespace team-a\)/);
  });

  it("a star's token and the stars it makes stay in its star's namespace", async () => {
    const token = await api.starToken("a-web");
    const kid = await api.request("POST", "/v1/stars", { token, body: sleeper("a-kid") });
    assert.equal(kid.status, 201, kid.text);
    assert.equal(kid.json<{ namespace?: string }>().namespace, "team-a");
    const out = await api.request("POST", "/v1/stars", { token, body: sleeper("a-out", { namespace: "default" }) });
    assert.equal(out.status, 403, out.text);
    assert.deepEqual(await names(teamA), ["a-kid", "a-web"]);
  });

  it("a quota caps stars, cpu, memory and disk: over it is a 422 that says by how much; a stopped star holds none", async () => {
    const set = await api.request("PUT", "/v1/namespaces/team-b/quota", { body: { cpu_cores: 1, ram_mb: 512, stars: 3 } });
    assert.equal(set.status, 200, set.text);
    const create = (name: string, extra: Record<string, unknown>) => api.request("POST", "/v1/stars", { body: sleeper(name, { namespace: "team-b", ...extra }) });
    const noCpu = await create("b0", { ram_mb: 128 });
    assert.equal(noCpu.status, 422, noCpu.text);
    assert.equal(noCpu.error().code, "NAMESPACE_QUOTA_EXCEEDED");
    assert.match(noCpu.error().message, /namespace team-b has a cpu quota: give the star cpu_cores or cpu_percent/);
    assert.equal((await create("b1", { cpu_cores: 0.5, ram_mb: 256 })).status, 201);
    const overMem = await create("b2", { cpu_cores: 0.25, ram_mb: 512 });
    assert.equal(overMem.status, 422, overMem.text);
    assert.match(overMem.error().message, /^namespace team-b is at its quota of memory: 256 MiB of 512 MiB used, this star asks 512 MiB: stop or remove some of its stars, or ask an admin to raise its quota \(constellation quota set team-b \.\.\.\)$/);
    const overCpu = await create("b2", { cpu_cores: 0.75, ram_mb: 128 });
    assert.match(overCpu.error().message, /quota of cpu: 0\.5 cores of 1 core used, this star asks 0\.75 cores/);
    // Made stopped, a star counts as a star only; started, it must fit.
    const stopped = await api.request("POST", "/v1/stars", { body: { ...sleeper("b3", { namespace: "team-b", cpu_cores: 0.75, ram_mb: 128 }), start: false } });
    assert.equal(stopped.status, 201, stopped.text);
    const start = await api.request("POST", "/v1/stars/b3/start");
    assert.equal(start.status, 422, start.text);
    assert.match(start.error().message, /quota of cpu/);
    assert.equal((await create("b4", { cpu_cores: 0.1, ram_mb: 64 })).status, 201);
    const fourth = await create("b5", { cpu_cores: 0.1, ram_mb: 64 });
    assert.match(fourth.error().message, /quota of stars: 3 of 3 used/);
    // What it holds, as listed; other namespaces are not held to it.
    const spaces = (await api.request("GET", "/v1/namespaces")).json<{ namespaces: Array<{ name: string; used: Record<string, number>; quota?: Record<string, number> }> }>().namespaces;
    const b = spaces.find((n) => n.name === "team-b")!;
    assert.deepEqual(b.used, { stars: 3, cpu_cores: 0.6, ram_mb: 320, disk_mb: 0 });
    assert.deepEqual(b.quota, { cpu_cores: 1, ram_mb: 512, stars: 3 });
    assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("elsewhere", { ram_mb: 512 }) })).status, 201);
    // A namespace's token lists its own namespace only.
    assert.deepEqual((await api.request("GET", "/v1/namespaces", { token: teamA })).json<{ namespaces: Array<{ name: string }> }>().namespaces.map((n) => n.name), ["team-a"]);
    // Lifted: anything goes again.
    assert.equal((await api.request("DELETE", "/v1/namespaces/team-b/quota")).status, 204);
    assert.equal((await api.request("POST", "/v1/stars/b3/start")).status, 200);
  });

  it("bad input: a quota with nothing or a negative, a namespace that is not a DNS label", async () => {
    const empty = await api.request("PUT", "/v1/namespaces/x/quota", { body: {} });
    assert.equal(empty.status, 400);
    assert.match(empty.error().message, /give at least one of cpu_cores, ram_mb, disk_mb, stars/);
    const neg = await api.request("PUT", "/v1/namespaces/x/quota", { body: { ram_mb: -5 } });
    assert.equal(neg.status, 400);
    assert.match(neg.error().message, /ram_mb must be more than 0/);
    const badNs = await api.request("PUT", "/v1/namespaces/Team_X/quota", { body: { stars: 1 } });
    assert.equal(badNs.status, 400);
    assert.match(badNs.error().message, /a namespace is a DNS label/);
    const badStar = await api.request("POST", "/v1/stars", { body: sleeper("n1", { namespace: "Team_X" }) });
    assert.equal(badStar.status, 400);
    assert.match(badStar.error().message, /namespace must be a DNS label/);
    const badToken = await api.request("POST", "/v1/tokens", { body: { scope: "read", namespace: "a b" } });
    assert.equal(badToken.status, 400);
    const noQuota = await api.request("DELETE", "/v1/namespaces/nothing-here/quota");
    assert.equal(noQuota.status, 400);
    assert.match(noQuota.error().message, /namespace nothing-here has no quota/);
  });
});
