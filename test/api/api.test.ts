/**
 * The HTTP API in one process (controller + agent on the fake runtime + an in-memory store),
 * over real HTTP: bad input of every kind gets a 4xx naming the field and the fix,
 * never a 500, and never leaves a half-created star. Fuzzed with fast-check.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { Agent } from "../../src/agent/agent.js";
import { AgentService } from "../../src/controller/agent-service.js";
import { newToken, saveToken } from "../../src/controller/tokens.js";
import { type Api, BODY_LIMIT, buildApi } from "../../src/api/server.js";
import { Controller } from "../../src/controller/controller.js";
import { FakeRuntime } from "../../src/runtime/fake/fake-runtime.js";
import { openStore } from "../../src/store/open.js";
import type { Store } from "../../src/store/types.js";
import { connect } from "../../src/index.js";
import { waitFor } from "../helpers/wait.js";

describe("HTTP API: bad input", () => {
  let dir: string;
  let store: Store;
  let controller: Controller;
  let agent: Agent;
  let app: Api;
  let url: string;
  let admin: string;
  let script: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "constellation-api-"));
    script = join(dir, "ok.mjs");
    await writeFile(script, "console.log('ok');\n");
    store = await openStore({ backend: "sqlite", path: ":memory:" });
    controller = new Controller({ store });
    const runtime = new FakeRuntime({ cpuCores: 4, memoryBytes: 8 * 2 ** 30 });
    agent = new Agent({ link: new AgentService(store, "n1"), node: { name: "n1", cpuCores: 4, memoryBytes: 8 * 2 ** 30, runtimes: ["process"], limitsEnforced: true, startedAt: Date.now() }, runtimes: { process: runtime } });
    await agent.start();
    controller.start();
    app = await buildApi({ store, controller, node: agent });
    url = await app.listen({ port: 0, host: "127.0.0.1" });
    admin = newToken();
    await saveToken(store, admin, "admin", "test");
  });
  after(async () => {
    await app.close();
    await agent.stop();
    await controller.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A request over real HTTP; the reply's status, body text and parsed JSON. */
  const request = async (method: string, path: string, body?: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${admin}`, ...headers }, ...(body === undefined ? {} : { body }) });
    const text = await res.text();
    return { statusCode: res.status, body: text, json: () => JSON.parse(text) as unknown };
  };
  const post = (body: string | object, headers: Record<string, string> = {}) =>
    request("POST", "/v1/stars", typeof body === "string" ? body : JSON.stringify(body), { "content-type": "application/json", ...headers });
  const error = (res: { json: () => unknown }) => (res.json() as { error: { code: string; message: string; field?: string } }).error;

  it("each kind of bad request: 4xx, a code, and a message that names the field and the fix", async () => {
    const cases: Array<[string | object, number, string, RegExp]> = [
      ["{not json", 400, "API_BAD_REQUEST", /the body is not valid JSON/],
      [{ spec: "x" }, 400, "API_BAD_REQUEST", /spec must be an object/],
      [{ spec: { name: "a", command: ["true"] }, extra: 1 }, 400, "API_BAD_REQUEST", /unknown body field extra/],
      [{ spec: { name: "a", command: "true" } }, 400, "RUNTIME_INVALID_SPEC", /command/],
      [{ spec: { name: "a", command: ["true"], bogus: 1 } }, 400, "RUNTIME_INVALID_SPEC", /bogus/],
      [{ spec: { name: "Not_A_Label", command: ["true"] } }, 400, "RUNTIME_INVALID_SPEC", /name must be a DNS label/],
      [{ spec: { name: "a", command: ["true"], ram_mb: -1 } }, 400, "RUNTIME_INVALID_SPEC", /ram_mb/],
      [{ spec: { name: "a", command: ["true"], ram_gb: 100_000 } }, 422, "RUNTIME_CAPACITY_EXCEEDED", /ram_gb asks for .* ask for less/],
      [{ spec: { name: "a", script: join(dir, "missing.js") } }, 400, "RUNTIME_SCRIPT_ERROR", /missing\.js: no such file/],
      [{ spec: { name: "a", command: ["true"] }, start: "yes" }, 400, "API_BAD_REQUEST", /start/],
    ];
    for (const [body, status, code, message] of cases) {
      const res = await post(body);
      assert.equal(res.statusCode, status, `${JSON.stringify(body)} → ${res.body}`);
      assert.equal(error(res).code, code, res.body);
      assert.match(error(res).message, message);
    }
    const tooBig = await post({ spec: { name: "a", command: ["true"], env: { X: "y".repeat(BODY_LIMIT) } } });
    assert.equal(tooBig.statusCode, 413);
    assert.equal(error(tooBig).code, "API_TOO_LARGE");
    // A body full of bad arguments: a short answer, at once.
    const t0 = performance.now();
    const flood = await post(`{"spec":{"name":"a","command":["true"],"args":[${Array.from({ length: 500_000 }, () => "0").join(",")}]}}`);
    assert.equal(flood.statusCode, 400);
    assert.ok(flood.body.length < 1000, `a short error, got ${flood.body.length} bytes`);
    assert.match(error(flood).message, /args must have at most 16384 items/);
    assert.ok(performance.now() - t0 < 1000, `answered in ${Math.round(performance.now() - t0)} ms`);
    const wrongType = await post("name=a", { "content-type": "application/x-www-form-urlencoded" });
    assert.equal(wrongType.statusCode, 415);
    assert.equal((await controller.list()).length, 0, "nothing was created");

    const ok = await post({ spec: { name: "dup", command: ["true"] } });
    assert.equal(ok.statusCode, 201, ok.body);
    const dup = await post({ spec: { name: "dup", command: ["true"] } });
    assert.equal(dup.statusCode, 409);
    assert.match(error(dup).message, /exists already: pick another name, or remove it first/);

    // A script path naming a FIFO (whose open would wait for a writer) is refused at once.
    const fifo = join(dir, "fifo.ts");
    spawnSync("mkfifo", [fifo]);
    const fifoRes = await post({ spec: { name: "fifo", script: fifo } });
    assert.equal(fifoRes.statusCode, 400);
    assert.match(error(fifoRes).message, /is not a regular file/);

    for (const [method, path, status] of [
      ["GET", "/v1/stars/nope", 404],
      ["GET", "/v1/stars/Bad_Name", 400],
      ["POST", "/v1/stars/nope/stop", 404],
      ["DELETE", "/v1/stars/nope", 404],
      ["GET", "/v1/stars/dup/logs?tail=-1", 400],
      ["GET", "/v1/stars/dup/logs?whatever=1", 400],
      ["GET", "/v1/stars/dup/wait?for=never", 400],
      ["GET", "/v1/events?limit=abc", 400],
      ["GET", "/v1/no-such-route", 404],
      ["GET", "/v1/stars/%ZZ", 400],
    ] as const) {
      const res = await request(method, path);
      assert.equal(res.statusCode, status, `${method} ${path} → ${res.body}`);
      assert.ok(error(res).message.length > 10);
    }
  });

  it("fuzz: any body gets 201 or a 4xx JSON error, never a 500; a star exists only after a 201", async () => {
    const value = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }));
    const spec = fc.record(
      {
        name: fc.oneof(fc.constantFrom("f1", "f2", "f3", "Bad", ""), fc.string({ maxLength: 70 })),
        command: fc.oneof(fc.constant(["true"]), fc.array(fc.string(), { maxLength: 3 }), value),
        script: fc.oneof(fc.constant(script), fc.string(), value),
        cpu_percent: fc.oneof(fc.integer({ min: -10, max: 200_000 }), value),
        ram_mb: fc.oneof(fc.integer({ min: -10, max: 10_000_000 }), value),
        env: fc.oneof(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 })), value),
        restart: fc.oneof(fc.constantFrom("never", "always", "sometimes"), value),
      },
      { requiredKeys: [] },
    );
    const body = fc.oneof(
      fc.record({ spec, start: fc.oneof(fc.boolean(), value) }, { requiredKeys: ["spec"] }),
      fc.record({ spec: value }),
      fc.string().map((s) => `{"spec":${s}`),
      fc.json(),
    );
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const before = new Set((await controller.list()).map((s) => s.name));
        const res = await post(b as object);
        assert.ok(res.statusCode === 201 || (res.statusCode >= 400 && res.statusCode < 500), `${res.statusCode} for ${JSON.stringify(b)}: ${res.body}`);
        const after = (await controller.list()).map((s) => s.name).filter((n) => !before.has(n));
        if (res.statusCode === 201) {
          assert.deepEqual(after, [(res.json() as { name: string }).name]);
          await controller.remove(after[0]!, { force: true });
        } else {
          assert.ok(typeof error(res).code === "string" && error(res).message.length > 0);
          assert.deepEqual(after, [], "a refused create leaves nothing behind");
        }
      }),
      { numRuns: 300 },
    );
  });

  it("a star's token may name only scripts everyone can read (root must not read a file for it)", async () => {
    // A star's token, as its agent makes it (the star it belongs to must exist).
    assert.equal((await post({ spec: { name: "token-holder", command: ["true"] }, start: false })).statusCode, 201);
    const holder = (await controller.find("token-holder"))!;
    const star = newToken();
    await saveToken(store, star, "star", "star:token-holder", { star: { name: holder.name, uid: holder.uid } });
    const secret = join(dir, "secret");
    await mkdir(secret, { mode: 0o700 });
    await writeFile(join(secret, "s.ts"), "console.log('secret');\n", { mode: 0o600 });
    const refused = await post({ spec: { name: "leak", script: join(secret, "s.ts") } }, { authorization: `Bearer ${star}` });
    assert.equal(refused.statusCode, 400);
    assert.match(error(refused).message, /a star's token may only name scripts its stars can read/);
    await chmod(dir, 0o755);
    await chmod(script, 0o644);
    const allowed = await post({ spec: { name: "ok-from-star", script } }, { authorization: `Bearer ${star}` });
    assert.equal(allowed.statusCode, 201, allowed.body);
    await controller.remove("ok-from-star", { force: true });
    const tokenMint = await request("POST", "/v1/tokens", JSON.stringify({ scope: "admin" }), { authorization: `Bearer ${star}`, "content-type": "application/json" });
    assert.equal(tokenMint.statusCode, 403);
    await controller.remove("token-holder");
  });

  it("stop and wait return for a star that never ran (created stopped)", async () => {
    assert.equal((await post({ spec: { name: "parked", command: ["true"] }, start: false })).statusCode, 201);
    const stop = await request("POST", "/v1/stars/parked/stop");
    assert.equal(stop.statusCode, 200);
    const waited = await request("GET", "/v1/stars/parked/wait?for=ended&timeout_ms=5000");
    assert.equal(waited.statusCode, 200, waited.body);
    assert.equal((waited.json() as { status: { state: string } }).status.state, "stopped");
    await controller.remove("parked");
    await waitFor("its report to go", async () => ((await store.get("/constellation/status/parked")) ? undefined : true));
  });

  it("concurrent creates of one .ts script share one transpile (no clash in the cache)", async () => {
    const ts = join(dir, `shared-${Date.now()}.ts`);
    await writeFile(ts, "const n: number = 1;\nconsole.log(n);\n");
    const res = await Promise.all(Array.from({ length: 10 }, (_, i) => post({ spec: { name: `ts-${i}`, script: ts } })));
    assert.deepEqual(res.map((r) => r.statusCode), Array(10).fill(201), res.map((r) => r.body).join("\n"));
    for (let i = 0; i < 10; i++) await controller.remove(`ts-${i}`, { force: true });
  });

  it("events: listed oldest first, followed as they happen (SDK over real HTTP)", async () => {
    const client = connect({ endpoint: url, token: admin });
    const abort = new AbortController();
    try {
      const seen: string[] = [];
      const following = (async () => {
        for await (const e of client.followEvents({ star: "evented", signal: abort.signal })) {
          seen.push(e.kind);
          if (seen.includes("star.removed")) break;
        }
      })();
      // No wait for the stream to open: it lists what exists, then watches from that revision on.
      await client.create({ name: "evented", command: ["sleep", "1"] });
      await waitFor("it to run", async () => ((await client.star("evented").status())?.state === "running" ? true : undefined));
      await client.star("evented").remove({ force: true });
      await following;
      assert.deepEqual(seen.slice(0, 2), ["star.created", "star.assigned"]);
      assert.ok(seen.includes("star.state"));
      const listed = await client.events({ star: "evented" });
      assert.deepEqual(listed.map((e) => e.seq), [...listed.map((e) => e.seq)].sort((a, b) => a - b));
      assert.equal(listed[0]!.kind, "star.created");
    } finally {
      abort.abort();
      client.close();
    }
  });

  it("limits in resources: {...} are the star's limits, stored and shown in one spelling", async () => {
    const res = await post({ spec: { name: "res", command: ["sleep", "1"], env: { INPUT_FILE: "/data/raw/a.csv" }, resources: { cpu_cores: 0.5, ram_mb: 64 } } });
    assert.equal(res.statusCode, 201, res.body);
    const view = res.json() as { spec: Record<string, unknown>; status?: { limits?: { cpuMillis?: number; memoryBytes?: number } } };
    assert.deepEqual([view.spec.cpu_cores, view.spec.ram_mb, view.spec.resources], [0.5, 64, undefined]);
    const limits = await waitFor("it to run with its limits", async () => (await controller.get("res")).status?.limits);
    assert.deepEqual([limits.cpuMillis, limits.memoryBytes], [500, 64 * 2 ** 20]);
    const twice = await post({ spec: { name: "res2", command: ["true"], ram_mb: 64, resources: { ram_mb: 32 } } });
    assert.equal(twice.statusCode, 400);
    assert.match(error(twice).message, /ram_mb is given twice: at the top and in resources; give it once/);
    await controller.remove("res", { force: true });
  });

  it("the agent runs what the controller recorded, and removes what it deleted", async () => {
    const res = await post({ spec: { name: "runs", command: ["sleep", "1"] } });
    assert.equal(res.statusCode, 201);
    await waitFor("the fake runtime to run it", async () => ((await controller.get("runs")).status?.state === "running" ? true : undefined));
    await controller.remove("runs", { force: true });
    await waitFor("its report to be gone", async () => ((await store.get("/constellation/status/runs")) ? undefined : true));
  });
});
