/**
 * Deployments over real HTTP with the deployment loop and an agent (fake runtime): deploy makes
 * its stars and keeps their count, the same deploy again changes nothing, a changed template
 * rolls out within max_surge / max_unavailable, a new star that fails rolls back by itself,
 * scale and undo, a quota over the whole count, and bad input.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DeploymentView } from "../../src/model/deployment.js";
import { type ApiHarness, startApi } from "../helpers/api.js";
import { waitFor } from "../helpers/wait.js";

type Stars = { stars: Array<{ name: string; deployment?: { name: string; revision: number; hash: string }; spec: { env?: Record<string, string> }; status?: { state: string } }> };

describe("deployments", () => {
  let api: ApiHarness;
  before(async () => {
    api = await startApi({ memoryBytes: 64 * 2 ** 30 });
  });
  after(() => api.close());

  const deploy = (spec: Record<string, unknown>, extra: Record<string, unknown> = {}) => api.request("POST", "/v1/deployments", { body: { spec, ...extra } });
  const view = async (name: string) => (await api.request("GET", `/v1/deployments/${name}`)).json<DeploymentView & { events: Array<{ kind: string; message: string }> }>();
  const starsOf = async (name: string) => (await api.request("GET", "/v1/stars")).json<Stars>().stars.filter((s) => s.deployment?.name === name);
  const complete = (name: string, revision: number) =>
    waitFor(`${name} revision ${revision} complete`, async () => {
      const v = await view(name);
      return v.revision === revision && v.rollout.state === "complete" ? v : undefined;
    });

  it("deploy makes the stars, the same deploy again is a no-op, a change rolls out with at most one star over the count and none under", async () => {
    const spec = { name: "web", instances: 3, command: ["server"], ram_mb: 64, env: { V: "1" } };
    const made = await deploy(spec);
    assert.equal(made.status, 201, made.text);
    assert.deepEqual([made.json<{ changed: boolean }>().changed, made.json<{ revision: number }>().revision], [true, 1]);
    const v1 = await complete("web", 1);
    assert.deepEqual(v1.status, { stars: 3, updated: 3, ready: 3, available: 3 });
    assert.equal(v1.rollout.message, "3 of 3 stars of revision 1 available");
    const first = (await starsOf("web")).map((s) => s.name).sort();
    assert.ok(first.every((n) => /^web-[a-z0-9]{5}$/.test(n)), first.join());
    // The stars restart by default (a deployment keeps its count).
    assert.equal((await api.controller.get(first[0]!)).spec.restart, "always");

    const again = await deploy(spec);
    assert.equal(again.status, 200);
    assert.deepEqual([again.json<{ changed: boolean }>().changed, again.json<{ revision: number }>().revision], [false, 1]);

    // A new template: revision 2, rolled out — never more than 4 stars, never fewer than 3 running.
    let most = 0;
    let fewest = Infinity;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const stars = await starsOf("web");
        most = Math.max(most, stars.length);
        fewest = Math.min(fewest, stars.filter((s) => s.status?.state === "running").length);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    assert.equal((await deploy({ ...spec, env: { V: "2" } })).json<{ revision: number }>().revision, 2);
    const v2 = await complete("web", 2);
    sampling = false;
    await sampler;
    assert.ok(most <= 4, `at most count + max_surge stars: ${most}`);
    assert.ok(fewest >= 3, `at least count − max_unavailable running: ${fewest}`);
    const now = await starsOf("web");
    assert.equal(now.length, 3);
    assert.ok(now.every((s) => s.spec.env?.V === "2" && s.deployment?.revision === 2));
    assert.ok(now.every((s) => !first.includes(s.name)), "every star replaced");
    assert.deepEqual(v2.history.map((r) => [r.revision, r.cause]), [[1, "deploy"], [2, "deploy"]]);
    assert.ok(v2.events.some((e) => e.kind === "deployment.rollout" && /revision 2 complete/.test(e.message)), JSON.stringify(v2.events));
  });

  it("keeps its count: a star removed or failed for good is replaced", async () => {
    const [one] = await starsOf("web");
    assert.equal((await api.request("DELETE", `/v1/stars/${one!.name}?force=1`)).status, 204);
    await waitFor("three stars again", async () => ((await starsOf("web")).filter((s) => s.status?.state === "running").length === 3 && !(await starsOf("web")).some((s) => s.name === one!.name) ? true : undefined));
  });

  it("scale within the instances, undo to an earlier template", async () => {
    const scaled = await api.request("POST", "/v1/deployments/web/scale", { body: { instances: 5 } });
    assert.equal(scaled.status, 200, scaled.text);
    await waitFor("five running", async () => ((await starsOf("web")).filter((s) => s.status?.state === "running").length === 5 ? true : undefined));
    await api.request("POST", "/v1/deployments/web/scale", { body: { instances: 2 } });
    await waitFor("two", async () => ((await starsOf("web")).length === 2 ? true : undefined));
    const undo = await api.request("POST", "/v1/deployments/web/undo", { body: {} });
    assert.equal(undo.status, 200, undo.text);
    const v = await complete("web", 3);
    assert.equal(v.history.at(-1)!.cause, "undo to 1");
    assert.ok((await starsOf("web")).every((s) => s.spec.env?.V === "1"));
    const bad = await api.request("POST", "/v1/deployments/web/undo", { body: { revision: 99 } });
    assert.equal(bad.status, 400);
    assert.match(bad.error().message, /keeps revisions 1, 2, 3; 99 is not one of them/);
  });

  it("a new template whose star fails rolls back by itself; the old stars never stopped", async () => {
    // (min_ready_ms: a new star counts only after 3 s, so it fails while the rollout still waits on it.)
    const spec = { name: "api", instances: 2, command: ["server"], ram_mb: 64, restart: "never", env: { V: "good" }, update: { min_ready_ms: 3000 } };
    await deploy(spec);
    await waitFor("api revision 1 complete", async () => ((await view("api")).rollout.state === "complete" ? true : undefined), { timeoutMs: 20_000 });
    const good = (await starsOf("api")).map((s) => s.name).sort();
    await deploy({ ...spec, env: { V: "bad" } });
    const bad = await waitFor("a star of revision 2 running", async () => (await starsOf("api")).find((s) => s.deployment?.revision === 2 && s.status?.state === "running")?.name);
    api.runtime.exit(bad, { exitCode: 3 });
    const v = await complete("api", 3);
    assert.match(v.history.at(-1)!.cause, /^rollback to 1: star api-\w+ of revision 2 failed: exited with code 3/);
    assert.deepEqual((await starsOf("api")).map((s) => s.name).sort(), good, "the good stars are the ones that ran all along");
    assert.ok(v.events.some((e) => e.kind === "deployment.rollback" && /revision 2 failed/.test(e.message)), JSON.stringify(v.events));
  });

  it("a deployment whose stars do not all fit says so once, and tries again calmly (no storm of writes)", async () => {
    const made = await deploy({ name: "huge", instances: 5, command: ["x"], ram_gb: 20 });
    assert.equal(made.status, 201, made.text);
    const v = await waitFor("huge says it cannot make a star", async () => {
      const d = await view("huge");
      return d.rollout.message.startsWith("cannot make a star") ? d : undefined;
    });
    assert.match(v.rollout.message, /ram_gb asks for 20480 MB/);
    const rev = await api.store.revision();
    await new Promise((r) => setTimeout(r, 3000)); // (measuring a quiet period: nothing to poll for)
    const writes = (await api.store.revision()) - rev;
    assert.ok(writes < 20, `${writes} store writes in 3 s while it waits`);
    const said = (await view("huge")).events.filter((e) => e.message.includes("cannot make a star"));
    assert.equal(said.length, 1, JSON.stringify(said));
    assert.equal((await api.request("DELETE", "/v1/deployments/huge")).status, 204);
  });

  it("a quota over the whole count, min/max instances, and bad input: a clear error, nothing written", async () => {
    assert.equal((await api.request("PUT", "/v1/namespaces/small/quota", { body: { ram_mb: 256 } })).status, 200);
    const over = await deploy({ name: "big", namespace: "small", instances: 5, command: ["x"], ram_mb: 64 });
    assert.equal(over.status, 422, over.text);
    assert.match(over.error().message, /namespace small is at its quota of memory: 0 MiB of 256 MiB used, this deployment \(5 stars\) asks 320 MiB/);
    assert.equal((await api.request("GET", "/v1/deployments/big")).status, 404, "nothing written");

    const ranged = await deploy({ name: "pool", instances: { min: 2, max: 4 }, command: ["x"], ram_mb: 32, auto_scale: { metric: "rps", target: 1000 } });
    assert.equal(ranged.status, 201, ranged.text);
    assert.equal(ranged.json<{ deployment: DeploymentView }>().deployment.count, 2);
    const outside = await api.request("POST", "/v1/deployments/pool/scale", { body: { instances: 9 } });
    assert.equal(outside.status, 400);
    assert.match(outside.error().message, /runs 2 to 4 stars \(its instances\); 9 is outside/);

    for (const [spec, said] of [
      [{ name: "x", instances: -1, command: ["a"] }, /instances/],
      [{ name: "x", instances: { min: 5, max: 2 }, command: ["a"] }, /instances\.min: instances\.min \(5\) must be at most instances\.max \(2\)/],
      [{ name: "x", command: ["a"], update: { max_surge: 0, max_unavailable: 0 } }, /max_surge and max_unavailable may not both be 0/],
      [{ name: "x", command: ["a"], ports: { http: 70000 } }, /ports\.http: a port is 1\.\.65535/],
      [{ name: "x" }, /script: give exactly one of script/],
      [{ name: "Bad_Name", command: ["a"] }, /name: name must be a DNS label/],
      [{ name: "x", command: ["a"], colour: "blue" }, /unknown field colour/],
      [{ name: "x", command: ["a"], auto_scale: { metric: "rps", target: -1 } }, /auto_scale\.target: target must be more than 0/],
    ] as const) {
      const r = await deploy(spec as Record<string, unknown>);
      assert.equal(r.status, 400, `${JSON.stringify(spec)}: ${r.text}`);
      assert.match(r.error().message, said);
    }
    assert.equal((await api.request("GET", "/v1/deployments/x")).status, 404);
    // A dry run checks and writes nothing.
    const dry = await deploy({ name: "dry", command: ["a"] }, { dry_run: true });
    assert.equal(dry.status, 200, dry.text);
    assert.equal((await api.request("GET", "/v1/deployments/dry")).status, 404);
  });

  it("a read token sees a deployment's env names, not their values", async () => {
    const read = (await api.request("POST", "/v1/tokens", { body: { scope: "read" } })).json<{ token: string }>().token;
    assert.equal((await deploy({ name: "secretive", command: ["x"], ram_mb: 32, env: { SECRET: "hunter2" } })).status, 201);
    for (const path of ["/v1/deployments", "/v1/deployments/secretive"]) {
      const text = (await api.request("GET", path, { token: read })).text;
      assert.ok(!text.includes("hunter2") && text.includes('"SECRET":"<hidden>"'), `${path}: ${text.slice(0, 300)}`);
    }
    assert.ok((await api.request("GET", "/v1/deployments/secretive")).text.includes("hunter2"), "the admin sees it");
    assert.equal((await api.request("DELETE", "/v1/deployments/secretive")).status, 204);
  });

  it("removing a deployment removes its stars; namespaces see their own", async () => {
    const team = (await api.request("POST", "/v1/tokens", { body: { scope: "admin", namespace: "team" } })).json<{ token: string }>().token;
    const mine = await api.request("POST", "/v1/deployments", { token: team, body: { spec: { name: "mine", instances: 1, command: ["x"], ram_mb: 32 } } });
    assert.equal(mine.status, 201, mine.text);
    assert.deepEqual((await api.request("GET", "/v1/deployments", { token: team })).json<{ deployments: Array<{ name: string }> }>().deployments.map((d) => d.name), ["mine"]);
    assert.equal((await api.request("GET", "/v1/deployments/web", { token: team })).status, 404);
    await waitFor("pool's stars", async () => ((await starsOf("pool")).length === 2 ? true : undefined));
    assert.equal((await api.request("DELETE", "/v1/deployments/pool")).status, 204);
    await waitFor("pool's stars gone", async () => ((await starsOf("pool")).length === 0 ? true : undefined));
    assert.equal((await api.request("DELETE", "/v1/deployments/pool")).status, 404);
  });
});
