/**
 * Least privilege over real HTTP (issue 8): a star's token reads and manages only its own star
 * and its descendants, children get at most their parent's limits, some fields are an admin's
 * only, env values are hidden from every token but an admin's, tokens expire and are revoked,
 * and a node promises at most memoryOvercommit × its memory.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { KEYS, type StarRecord, starKey } from "../../src/model/records.js";
import { newToken, saveToken } from "../../src/controller/tokens.js";
import { connect } from "../../src/index.js";
import { PAGE_BYTES } from "../../src/api/server.js";
import { type ApiHarness, startApi } from "../helpers/api.js";
import { waitFor } from "../helpers/wait.js";

type View = { name: string; uid: string; owner?: { name: string }; spec: Record<string, unknown> & { env?: Record<string, string> }; status?: { state: string } };

const sleeper = (name: string, extra: Record<string, unknown> = {}) => ({ spec: { name, command: ["sleep", "60"], ...extra } });

/** A create through `token` that must be refused so: status, code, field, and the message's parts. */
async function refused(api: ApiHarness, token: string, body: unknown, expect: { status: number; code: string; field: string; messages: RegExp[] }): Promise<void> {
  const res = await api.request("POST", "/v1/stars", { token, body });
  assert.equal(res.status, expect.status, `${JSON.stringify(body)}: ${res.text}`);
  assert.equal(res.error().code, expect.code);
  assert.equal(res.error().field, expect.field);
  for (const m of expect.messages) assert.match(res.error().message, m);
}

describe("star tokens: a star's own star and its descendants only", () => {
  let api: ApiHarness;
  let parentToken: string;
  let kidToken: string;

  before(async () => {
    api = await startApi();
    for (const [name, env] of [["parent", { SECRET: "s3cret" }], ["other", { OTHER_SECRET: "x" }]] as const) {
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper(name, { env }) })).status, 201);
    }
    parentToken = await api.starToken("parent");
    const kid = await api.request("POST", "/v1/stars", { token: parentToken, body: sleeper("kid", { env: { KID_SECRET: "k" } }) });
    assert.equal(kid.status, 201, kid.text);
    assert.deepEqual(kid.json<View>().owner?.name, "parent");
    assert.deepEqual(kid.json<View>().spec.env, { KID_SECRET: "<hidden>" }, "the create's answer hides env values too");
    kidToken = await api.starToken("kid");
    const grandkid = await api.request("POST", "/v1/stars", { token: kidToken, body: sleeper("grandkid") });
    assert.equal(grandkid.status, 201, grandkid.text);
  });
  after(() => api.close());

  /** The star `name` now is reported stopped and was never started (only an earlier star of the name ran, once). */
  const neverStarted = async (name: string) => {
    const uid = (await api.controller.get(name)).uid;
    await waitFor(`the new ${name} reported stopped`, async () => {
      const v = await api.controller.get(name);
      return v.uid === uid && v.status?.state === "stopped" ? true : undefined;
    });
    assert.equal(api.runtime.status(name), undefined, "never started");
    assert.equal(api.runtime.launches.filter((l) => l === name).length, 1, "only the first star ran");
  };

  const names = async (token: string) => (await api.request("GET", "/v1/stars", { token })).json<{ stars: View[] }>().stars.map((s) => s.name).sort();

  it("the record names its owner (name and uid); the agent gives each star a token naming it", async () => {
    const kid = JSON.parse((await api.store.get(starKey("kid")))!.value) as StarRecord;
    const parent = JSON.parse((await api.store.get(starKey("parent")))!.value) as StarRecord;
    assert.deepEqual(kid.owner, { name: "parent", uid: parent.uid });
    assert.equal(parent.owner, undefined, "an admin's star has no owner");
    const tokens = (await api.request("GET", "/v1/tokens")).json<{ tokens: Array<{ scope: string; star?: string }> }>().tokens;
    assert.deepEqual(tokens.filter((t) => t.scope === "star").map((t) => t.star).sort(), ["grandkid", "kid", "other", "parent"]);
  });

  it("lists only the subtree; the admin lists everything, with each star's parent", async () => {
    assert.deepEqual(await names(parentToken), ["grandkid", "kid", "parent"]);
    assert.deepEqual(await names(kidToken), ["grandkid", "kid"]);
    assert.deepEqual(await names(api.admin), ["grandkid", "kid", "other", "parent"]);
    const all = (await api.request("GET", "/v1/stars")).json<{ stars: View[] }>().stars;
    assert.deepEqual(Object.fromEntries(all.map((s) => [s.name, s.owner?.name ?? null])), { grandkid: "kid", kid: "parent", other: null, parent: null });
    // A star's token does not see who made its own star (that is outside what it may see).
    const seenByKid = (await api.request("GET", "/v1/stars/kid", { token: kidToken })).json<View>();
    assert.equal(seenByKid.owner, undefined);
    assert.equal((await api.request("GET", "/v1/status", { token: kidToken })).json<{ stars: { total: number } }>().stars.total, 2);
  });

  it("any other star is 404, as if it did not exist: get, start, stop, rm, logs, wait", async () => {
    const missing = (await api.request("GET", "/v1/stars/no-such-star", { token: kidToken })).error();
    for (const [method, path] of [
      ["GET", "/v1/stars/other"],
      ["GET", "/v1/stars/parent"],
      ["POST", "/v1/stars/other/start"],
      ["POST", "/v1/stars/other/stop"],
      ["DELETE", "/v1/stars/other?force=1"],
      ["GET", "/v1/stars/other/logs"],
      ["GET", "/v1/stars/other/wait?timeout_ms=100"],
    ] as const) {
      const res = await api.request(method, path, { token: kidToken });
      assert.equal(res.status, 404, `${method} ${path}: ${res.text}`);
      assert.equal(res.error().code, missing.code);
      assert.equal(res.error().message, missing.message.replace("no-such-star", /^\/v1\/stars\/([a-z]+)/.exec(path)![1]!), "the same answer as for a star that does not exist");
    }
    assert.equal((await api.request("GET", "/v1/stars/other")).json<View>().status?.state, "running", "nothing happened to it");
  });

  it("events: only the subtree's, listed and followed; tokens: forbidden", async () => {
    const events = (await api.request("GET", "/v1/events?limit=1000", { token: parentToken })).json<{ events: Array<{ star?: string; kind: string }> }>().events;
    assert.ok(events.length > 0);
    assert.deepEqual([...new Set(events.map((e) => e.star))].sort(), ["grandkid", "kid", "parent"]);
    assert.deepEqual((await api.request("GET", "/v1/events?star=other", { token: parentToken })).json<{ events: unknown[] }>().events, []);
    // Following: a new child's events come through, another star's do not.
    const client = connect({ endpoint: api.url, token: parentToken });
    const abort = new AbortController();
    const seen: string[] = [];
    const following = (async () => {
      for await (const e of client.followEvents({ signal: abort.signal })) {
        seen.push(`${e.star}:${e.kind}`);
        if (e.star === "late-kid" && e.kind === "star.assigned") break;
      }
    })();
    try {
      await api.request("POST", "/v1/stars", { body: sleeper("late-other") });
      await api.request("POST", "/v1/stars", { token: parentToken, body: sleeper("late-kid") });
      await following;
      assert.ok(seen.includes("late-kid:star.created"), seen.join());
      assert.ok(!seen.some((s) => s.startsWith("late-other") || s.startsWith("other")), seen.join());
    } finally {
      abort.abort();
      client.close();
    }
    // A name the subtree once had, made again by someone else, is not followed.
    const client2 = connect({ endpoint: api.url, token: parentToken });
    const reuse = (async () => {
      const out: string[] = [];
      for await (const e of client2.followEvents()) {
        out.push(`${e.star}:${e.kind}`);
        if (e.star === "marker-kid" && e.kind === "star.created") break;
      }
      return out;
    })();
    assert.equal((await api.request("POST", "/v1/stars", { token: parentToken, body: sleeper("reused") })).status, 201);
    assert.equal((await api.request("DELETE", "/v1/stars/reused?force=1", { token: parentToken })).status, 204);
    assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("reused") })).status, 201);
    assert.equal((await api.request("POST", "/v1/stars/reused/stop")).status, 200);
    assert.equal((await api.request("DELETE", "/v1/stars/reused?force=1")).status, 204);
    assert.equal((await api.request("POST", "/v1/stars", { token: parentToken, body: sleeper("marker-kid") })).status, 201);
    const afterReuse = await reuse;
    client2.close();
    const removedAt = afterReuse.indexOf("reused:star.removed");
    assert.ok(removedAt >= 0 && afterReuse.includes("reused:star.created"), afterReuse.join());
    assert.deepEqual(afterReuse.slice(removedAt + 1).filter((s) => s.startsWith("reused:")), [], "the other star of the name is not this token's");
    const listed = (await api.request("GET", "/v1/events?limit=1000", { token: parentToken })).json<{ events: Array<{ star?: string; kind: string }> }>().events;
    assert.ok(!listed.some((e) => e.star === "reused"), "a removed star's events are not listed either (it is not in the subtree any more)");
    for (const [method, path] of [["GET", "/v1/tokens"], ["POST", "/v1/tokens"], ["DELETE", "/v1/tokens/abcdef"]] as const) {
      const res = await api.request(method, path, { token: parentToken, ...(method === "POST" ? { body: { scope: "read" } } : {}) });
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.error().code, "API_FORBIDDEN");
    }
  });

  it("a name taken while its last star is still being removed shows none of that star's logs or usage", async () => {
    assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("secretive") })).status, 201);
    await waitFor("secretive to run", () => (api.runtime.status("secretive")?.state === "running" ? true : undefined));
    api.runtime.log("secretive", "SECRET=hunter2");
    let release!: () => void;
    api.runtime.removeGate = new Promise((r) => (release = r));
    try {
      assert.equal((await api.request("DELETE", "/v1/stars/secretive?force=1")).status, 204);
      const taken = await api.request("POST", "/v1/stars", { token: parentToken, body: { ...sleeper("secretive"), start: false } });
      assert.equal(taken.status, 201, taken.text);
      assert.ok(api.runtime.status("secretive"), "the old star's removal is still under way");
      const logs = await api.request("GET", "/v1/stars/secretive/logs?tail=50", { token: parentToken });
      assert.equal(logs.status, 200);
      assert.doesNotMatch(logs.text, /hunter2/);
      assert.equal(logs.text, "");
    } finally {
      release();
      api.runtime.removeGate = undefined;
    }
    // Once the old one is gone, the new one (made with start: false) is not started.
    await neverStarted("secretive");
  });

  it("a star removed and made again with start: false while its node was busy with it is not started", async () => {
    let release!: () => void;
    api.runtime.startGate = new Promise((r) => (release = r));
    try {
      assert.equal((await api.request("POST", "/v1/stars", { token: parentToken, body: sleeper("swapped") })).status, 201);
      await waitFor("its start under way", () => (api.runtime.startGate && api.runtime.status("swapped") === undefined ? true : undefined));
      assert.equal((await api.request("DELETE", "/v1/stars/swapped?force=1", { token: parentToken })).status, 204);
      assert.equal((await api.request("POST", "/v1/stars", { token: parentToken, body: { ...sleeper("swapped", { ram_mb: 64 }), start: false } })).status, 201);
    } finally {
      release();
      api.runtime.startGate = undefined;
    }
    await neverStarted("swapped");
  });

  it("env values are hidden from every token but an admin's: list, get, start, stop, wait", async () => {
    const read = (await api.request("POST", "/v1/tokens", { body: { scope: "read", name: "viewer" } })).json<{ token: string }>().token;
    for (const token of [read, parentToken]) {
      const listed = (await api.request("GET", "/v1/stars", { token })).json<{ stars: View[] }>().stars.find((s) => s.name === "parent")!;
      assert.deepEqual(listed.spec.env, { SECRET: "<hidden>" });
      assert.deepEqual((await api.request("GET", "/v1/stars/parent", { token })).json<View>().spec.env, { SECRET: "<hidden>" });
      assert.doesNotMatch((await api.request("GET", "/v1/stars", { token })).text, /s3cret/);
    }
    assert.deepEqual((await api.request("GET", "/v1/stars/parent")).json<View>().spec.env, { SECRET: "s3cret" }, "the admin sees values");
    for (const path of ["/v1/stars/kid/stop", "/v1/stars/kid/start"]) {
      const res = await api.request("POST", path, { token: parentToken });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json<View>().spec.env, { KID_SECRET: "<hidden>" });
    }
    const waited = await api.request("GET", "/v1/stars/kid/wait?for=running&timeout_ms=5000", { token: parentToken });
    assert.equal(waited.status, 200, waited.text);
    assert.deepEqual(waited.json<View>().spec.env, { KID_SECRET: "<hidden>" });
  });

  it("rm of a star whose descendant runs is refused, naming it; -f removes the whole subtree and its tokens", async () => {
    assert.equal((await api.request("POST", "/v1/stars/parent/stop", { token: parentToken })).status, 200);
    await api.request("GET", "/v1/stars/parent/wait?for=ended&timeout_ms=5000");
    const refused = await api.request("DELETE", "/v1/stars/parent");
    assert.equal(refused.status, 400);
    assert.match(refused.error().message, /star parent has a running descendant, kid \(made by parent\): stop it first \(constellation stop kid\), or remove parent with everything below it with -f/);
    assert.ok(await api.controller.find("kid"), "nothing was removed");
    const removed = await api.request("DELETE", "/v1/stars/parent?force=1");
    assert.equal(removed.status, 204, removed.text);
    assert.deepEqual(await names(api.admin), ["late-other", "other"]);
    await waitFor("the fake runtime to let them go", () => (["parent", "kid", "grandkid", "late-kid"].every((n) => !api.runtime.status(n)) ? true : undefined));
    assert.equal((await api.request("GET", "/v1/stars", { token: kidToken })).status, 401);
    await waitFor("their tokens to be dropped", async () => {
      const tokens = (await api.request("GET", "/v1/tokens")).json<{ tokens: Array<{ star?: string }> }>().tokens;
      return tokens.every((t) => t.star === undefined || t.star === "other" || t.star === "late-other") ? true : undefined;
    });
    // (Its agent drops a removed star's token; one not dropped yet is refused all the same.)
    const left = newToken();
    await saveToken(api.store, left, "star", "star:kid", { star: { name: "kid", uid: "the-removed-kid" } });
    const gone = await api.request("GET", "/v1/stars", { token: left });
    assert.equal(gone.status, 401);
    assert.match(gone.error().message, /belongs to star kid, which has been removed/);
  });

  it("a star made again under the name is not the owner of what the first one made; its old token is refused", async () => {
    await api.request("POST", "/v1/stars", { body: sleeper("phoenix") });
    const first = await api.starToken("phoenix");
    assert.equal((await api.request("POST", "/v1/stars", { token: first, body: sleeper("ash") })).status, 201);
    // Only phoenix's record goes (as if its removal raced): ash's owner is then gone.
    await api.store.delete({ key: starKey("phoenix") });
    await waitFor("the orphan to be removed", async () => ((await api.controller.find("ash")) ? undefined : true));
    const why = (await api.controller.events.list({ star: "ash" })).map((e) => e.message);
    assert.ok(why.includes("removed: the star that made it (phoenix) is gone"), why.join("; "));
    await api.request("POST", "/v1/stars", { body: sleeper("phoenix") });
    const second = await waitFor("a new token", async () => {
      const t = await api.starToken("phoenix");
      return t !== first ? t : undefined;
    });
    assert.equal((await api.request("GET", "/v1/stars", { token: first })).status, 401);
    assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("ash") })).status, 201, "an admin's ash");
    assert.deepEqual(await names(second), ["phoenix"], "the admin's ash is not the new phoenix's");
    assert.equal((await api.request("GET", "/v1/stars/ash", { token: second })).status, 404);
  });

  it("a child's create that races its owner's removal makes no orphan (the owner is checked in the same transaction)", async () => {
    await api.request("POST", "/v1/stars", { body: sleeper("racer") });
    const token = await api.starToken("racer");
    const creates = Array.from({ length: 10 }, (_, i) => api.request("POST", "/v1/stars", { token, body: sleeper(`racer-kid-${i}`) }));
    const removal = api.request("DELETE", "/v1/stars/racer?force=1");
    const answers = await Promise.all(creates);
    assert.equal((await removal).status, 204);
    assert.ok(answers.every((a) => a.status === 201 || a.status === 401), answers.map((a) => a.text).join("\n"));
    await waitFor("no star of racer's left", async () => ((await names(api.admin)).some((n) => n.startsWith("racer")) ? undefined : true));
  });
});

describe("a child gets at most its parent's limits", () => {
  let api: ApiHarness;
  let capped: string;
  let plain: string;
  const limits = { cpu_percent: 50, ram_mb: 256, disk_mb: 100, pids: 64, nofile: 512, log_max_mb: 2, log_max_files: 2 };

  before(async () => {
    api = await startApi();
    await api.request("POST", "/v1/stars", { body: sleeper("capped", limits) });
    await api.request("POST", "/v1/stars", { body: sleeper("plain") });
    [capped, plain] = [await api.starToken("capped"), await api.starToken("plain")];
  });
  after(() => api.close());

  it("asking for more than the parent has, field by field: 422 naming the field and what the parent has; nothing created", async () => {
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ cpu_percent: 60 }, "cpu_percent", /cpu_percent asks for 60 % of a core, but its parent star capped has 50 % of a core/],
      [{ cpu_cores: 0.6 }, "cpu_cores", /cpu_cores asks for 0.6 cores, but its parent star capped has 0.5 cores/],
      [{ ram_mb: 300 }, "ram_mb", /ram_mb asks for 300 MB, but its parent star capped has 256 MB/],
      [{ ram_gb: 1 }, "ram_gb", /ram_gb asks for 1024 MB, but its parent star capped has 256 MB/],
      [{ disk_mb: 200 }, "disk_mb", /disk_mb asks for 200 MB, but its parent star capped has 100 MB/],
      [{ pids: 65 }, "pids", /pids asks for 65 processes, but its parent star capped has 64 processes/],
      [{ nofile: 1024 }, "nofile", /nofile asks for 1024 open files, but its parent star capped has 512 open files/],
      [{ log_max_mb: 3 }, "log_max_mb", /log_max_mb asks for 12 MB of logs, but its parent star capped has 8 MB of logs/],
      [{ log_max_files: 3 }, "log_max_files", /log_max_files asks for 12 MB of logs/],
    ];
    for (const [ask, field, message] of cases) {
      await refused(api, capped, sleeper("greedy", ask), { status: 422, code: "STAR_OVER_PARENT_LIMIT", field, messages: [message, /leave \S+ out to get the parent's/] });
    }
    // The node's default is what a parent without ram_mb has.
    const overDefault = await api.request("POST", "/v1/stars", { token: plain, body: sleeper("greedy", { ram_mb: 1024 }) });
    assert.equal(overDefault.status, 422);
    assert.match(overDefault.error().message, /parent star plain has 512 MB \(the node's default\)/);
    assert.equal(await api.controller.find("greedy"), undefined);
  });

  it("what the child leaves out it inherits from its parent (written into its spec); less is kept", async () => {
    const res = await api.request("POST", "/v1/stars", { token: capped, body: sleeper("heir") });
    assert.equal(res.status, 201, res.text);
    const spec = res.json<View>().spec;
    assert.deepEqual({ cpu_percent: spec.cpu_percent, ram_mb: spec.ram_mb, disk_mb: spec.disk_mb, pids: spec.pids, nofile: spec.nofile, log_max_mb: spec.log_max_mb, log_max_files: spec.log_max_files }, limits);
    const modest = await api.request("POST", "/v1/stars", { token: capped, body: sleeper("modest", { cpu_cores: 0.25, ram_gb: 0.125, log_max_files: 1 }) });
    assert.equal(modest.status, 201, modest.text);
    const m = modest.json<View>().spec;
    assert.deepEqual([m.cpu_cores, m.cpu_percent, m.ram_gb, m.ram_mb, m.log_max_files, m.log_max_mb], [0.25, undefined, 0.125, undefined, 1, 2]);
    // A parent without limits of its own: the child gets the node's defaults, not a copy.
    const free = await api.request("POST", "/v1/stars", { token: plain, body: sleeper("free") });
    assert.equal(free.status, 201);
    assert.equal(free.json<View>().spec.ram_mb, undefined);
    // And as the node runs it: the inherited limits.
    await waitFor("heir to run", () => (api.runtime.status("heir")?.state === "running" ? true : undefined));
    assert.equal(api.runtime.status("heir")!.limits.memoryBytes, 256 * 2 ** 20);
    assert.equal(api.runtime.status("heir")!.limits.pids, 64);
  });

  it("fuzz: a star's creates get 201 or a 4xx naming what is wrong, never a 500; a refused one leaves nothing", async () => {
    const value = fc.oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null));
    const spec = fc.record(
      {
        name: fc.constantFrom("fz1", "fz2", "Bad"),
        command: fc.constant(["sleep", "60"]),
        cpu_percent: fc.oneof(fc.integer({ min: -1, max: 120 }), value),
        cpu_cores: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), value),
        ram_mb: fc.oneof(fc.integer({ min: -1, max: 600 }), value),
        ram_gb: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), value),
        disk_mb: fc.oneof(fc.integer({ min: 0, max: 200 }), value),
        pids: fc.oneof(fc.integer({ min: 0, max: 100 }), value),
        nofile: fc.oneof(fc.integer({ min: 0, max: 1000 }), value),
        log_max_mb: fc.oneof(fc.integer({ min: 0, max: 4 }), value),
        log_max_files: fc.oneof(fc.integer({ min: 0, max: 4 }), value),
        seccomp: fc.oneof(fc.constantFrom("default", "unconfined"), value),
        mounts: fc.oneof(fc.constant([]), fc.constant([{ host: "/etc" }]), value),
        root: fc.oneof(fc.constant("/srv"), value),
        runtime: fc.oneof(fc.constantFrom("process", "isolate"), value),
      },
      { requiredKeys: ["name", "command"] },
    );
    await fc.assert(
      fc.asyncProperty(spec, fc.constantFrom(capped, plain), async (s, token) => {
        const res = await api.request("POST", "/v1/stars", { token, body: { spec: s, start: false } });
        assert.ok(res.status === 201 || (res.status >= 400 && res.status < 500), `${res.status} for ${JSON.stringify(s)}: ${res.text}`);
        if (res.status === 201) {
          assert.equal((await api.request("DELETE", `/v1/stars/${s.name}`)).status, 204);
        } else {
          assert.ok(res.error().code.length > 0 && res.error().message.length > 10);
          if (s.name !== "Bad") assert.equal(await api.controller.find(s.name), undefined);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("fields only an admin may set: 403 naming the field and what to do; nothing created", async () => {
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ seccomp: "unconfined" }, "seccomp", /seccomp "unconfined" turns off the system call filter; leave seccomp out/],
      [{ mounts: [{ host: "/etc" }] }, "mounts", /mounts show more of the host to the star; leave mounts out/],
      [{ root: "/srv/rootfs" }, "root", /root runs the star in a root filesystem/],
      [{ runtime: "isolate" }, "runtime", /runtime "isolate" .* no boundary between stars/],
      [{ restart: "always", backoff_ms: 0, max_backoff_ms: 0 }, "backoff_ms", /backoff_ms under 100 restarts a crashing star too fast; ask for at least 100/],
      [{ restart: "always", max_backoff_ms: 1000 }, "max_backoff_ms", /max_backoff_ms under 10000 keeps a crashing star restarting fast for ever/],
      [{ health: { type: "exec", command: ["true"], interval_ms: 50 } }, "health.interval_ms", /health checks more often than every 1000 ms write too often/],
    ];
    for (const [ask, field, message] of cases) {
      await refused(api, plain, sleeper("sneaky", ask), { status: 403, code: "API_FORBIDDEN", field, messages: [message, /only an admin token of the whole cluster may ask for that \(this token's scope is star\)/] });
    }
    assert.equal(await api.controller.find("sneaky"), undefined);
    // The same for an admin: allowed (seccomp "default" and an empty mounts list are anyone's).
    assert.equal((await api.request("POST", "/v1/stars", { token: plain, body: sleeper("fine", { seccomp: "default", mounts: [] }) })).status, 201);
    assert.equal((await api.request("POST", "/v1/stars", { body: { ...sleeper("admins", { seccomp: "unconfined" }), start: false } })).status, 201);
  });
});

describe("tokens: scopes, expiry, listing, revocation", () => {
  let api: ApiHarness;
  before(async () => {
    api = await startApi();
  });
  after(() => api.close());

  it("an admin makes narrower tokens; they are listed by id (never the token) and revoked", async () => {
    const made = await api.request("POST", "/v1/tokens", { body: { scope: "read", name: "dashboard", ttl_s: 3600 } });
    assert.equal(made.status, 201, made.text);
    const t = made.json<{ token: string; id: string; scope: string; expiresAt: number }>();
    assert.match(t.id, /^[0-9a-f]{12}$/);
    assert.ok(Math.abs(t.expiresAt - (Date.now() + 3_600_000)) < 10_000);
    const listed = await api.request("GET", "/v1/tokens");
    assert.doesNotMatch(listed.text, new RegExp(t.token));
    assert.doesNotMatch(listed.text, /[0-9a-f]{40}/, "not the whole hash either");
    const row = listed.json<{ tokens: Array<Record<string, unknown>> }>().tokens.find((x) => x.id === t.id);
    assert.deepEqual(Object.keys(row!).sort(), ["createdAt", "expiresAt", "id", "name", "scope"]);
    assert.equal(row!.name, "dashboard");
    assert.equal((await api.request("GET", "/v1/stars", { token: t.token })).status, 200);
    assert.equal((await api.request("POST", "/v1/stars", { token: t.token, body: sleeper("nope") })).status, 403);
    assert.equal((await api.request("GET", "/v1/tokens", { token: t.token })).status, 403, "a read token may not list tokens");

    assert.equal((await api.request("DELETE", `/v1/tokens/${t.id.slice(0, 8)}`)).status, 204, "a unique prefix will do");
    const revoked = await api.request("GET", "/v1/stars", { token: t.token });
    assert.equal(revoked.status, 401);
    const again = await api.request("DELETE", `/v1/tokens/${t.id}`);
    assert.equal(again.status, 404);
    assert.equal(again.error().code, "TOKEN_NOT_FOUND");
    assert.match(again.error().message, /no token with id .*constellation token ls/);
  });

  it("an expired token is refused with a message that says so", async () => {
    const { token } = (await api.request("POST", "/v1/tokens", { body: { scope: "admin", name: "brief", ttl_s: 1 } })).json<{ token: string }>();
    assert.equal((await api.request("GET", "/v1/stars", { token })).status, 200);
    const refused = await waitFor("the token to expire", async () => {
      const res = await api.request("GET", "/v1/stars", { token });
      return res.status === 401 ? res : undefined;
    }, { timeoutMs: 5000, intervalMs: 100 });
    assert.equal(refused.error().code, "API_UNAUTHORIZED");
    assert.match(refused.error().message, /this token expired at \d{4}-\d\d-\d\dT.*: ask an admin for a new one/);
  });

  it("bad input: 4xx naming the field, never a 500", async () => {
    const bodies: Array<[unknown, string]> = [
      [{ scope: "star" }, "scope"],
      [{ scope: "root" }, "scope"],
      [{}, "scope"],
      [{ scope: "read", ttl_s: 0 }, "ttl_s"],
      [{ scope: "read", ttl_s: -5 }, "ttl_s"],
      [{ scope: "read", ttl_s: 1.5 }, "ttl_s"],
      [{ scope: "read", ttl_s: "1h" }, "ttl_s"],
      [{ scope: "read", ttl_s: 10 * 365 * 86_400 + 1 }, "ttl_s"],
      [{ scope: "read", name: "" }, "name"],
      [{ scope: "read", extra: 1 }, ""],
    ];
    for (const [body, field] of bodies) {
      const res = await api.request("POST", "/v1/tokens", { body });
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.error().field ?? "", field, res.text);
      assert.ok(res.error().message.length > 10);
    }
    for (const id of ["xyz", "ab", "a".repeat(65), "%20"]) {
      const res = await api.request("DELETE", `/v1/tokens/${id}`);
      assert.equal(res.status, 400, `${id}: ${res.text}`);
      assert.match(res.error().message, /a token id is 4 to 64 hex digits/);
    }
    // Two ids that start alike: the prefix is ambiguous.
    for (const tail of ["1", "2"]) await api.store.put(`${KEYS.tokens}abcd${tail.repeat(60)}`, JSON.stringify({ scope: "read", name: "twin", createdAt: 0 }));
    const ambiguous = await api.request("DELETE", "/v1/tokens/abcd");
    assert.equal(ambiguous.status, 400);
    assert.match(ambiguous.error().message, /2 tokens have ids starting with abcd: give more of the id/);
    assert.equal((await api.request("DELETE", "/v1/tokens/abcd1")).status, 204);
    assert.equal((await api.request("GET", "/v1/tokens?x=1")).status, 400);
  });

  it("the SDK: createToken with a ttl, tokens(), revokeToken()", async () => {
    const c = connect({ endpoint: api.url, token: api.admin });
    try {
      const t = await c.createToken("read", "sdk", { ttlSeconds: 60 });
      assert.ok(t.expiresAt! > Date.now());
      assert.ok((await c.tokens()).some((x) => x.id === t.id && x.name === "sdk"));
      await c.revokeToken(t.id);
      assert.ok(!(await c.tokens()).some((x) => x.id === t.id));
      await assert.rejects(c.revokeToken(t.id), (e: { code?: string; status?: number }) => e.code === "TOKEN_NOT_FOUND" && e.status === 404);
    } finally {
      c.close();
    }
  });
});

describe("memory overcommit: a node promises at most memoryOvercommit × its memory", () => {
  it("creates stars until refused (422 naming ram_mb, used and left); stopped and ended stars do not count; start checks too", async () => {
    const api = await startApi({ memoryBytes: 4096 * 2 ** 20 });
    try {
      for (let i = 0; i < 4; i++) assert.equal((await api.request("POST", "/v1/stars", { body: sleeper(`m${i}`, { ram_mb: 1000 }) })).status, 201);
      const refused = await api.request("POST", "/v1/stars", { body: sleeper("m4", { ram_mb: 1000 }) });
      assert.equal(refused.status, 422, refused.text);
      assert.equal(refused.error().code, "NODE_MEMORY_FULL");
      assert.equal(refused.error().field, "ram_mb");
      assert.match(refused.error().message, /ram_mb asks for 1000 MB, but node n1 has 4000 of 4096 MB promised to the stars that should run there \(96 MB left\): stop or remove a star, or ask for less/);
      // The node's default counts for a star that asks for nothing.
      const byDefault = await api.request("POST", "/v1/stars", { body: sleeper("m-default") });
      assert.equal(byDefault.status, 422);
      assert.match(byDefault.error().message, /ram_mb asks for 512 MB/);
      // Created stopped: nothing promised yet; starting it is checked.
      assert.equal((await api.request("POST", "/v1/stars", { body: { ...sleeper("parked", { ram_mb: 1000 }), start: false } })).status, 201);
      const start = await api.request("POST", "/v1/stars/parked/start");
      assert.equal(start.status, 422);
      assert.equal(start.error().code, "NODE_MEMORY_FULL");
      assert.equal((await api.controller.find("parked"))!.desired, "stopped", "refused: still stopped");
      // Stop one: its memory is free for another.
      assert.equal((await api.request("POST", "/v1/stars/m0/stop")).status, 200);
      assert.equal((await api.request("POST", "/v1/stars/parked/start")).status, 200);
      // A star that ended by itself holds nothing either.
      await waitFor("m1 to run", () => (api.runtime.status("m1")?.state === "running" ? true : undefined));
      api.runtime.exit("m1");
      await waitFor("m1's end reported", async () => ((await api.controller.get("m1")).status?.state === "exited" ? true : undefined));
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("m5", { ram_mb: 1000 }) })).status, 201);
      // ...until started again.
      assert.equal((await api.request("POST", "/v1/stars/m1/start")).status, 422);
    } finally {
      await api.close();
    }
  });

  it("a star in its stop grace still holds its memory; rm ends it at once; a child's grace is at most its parent's", async () => {
    const api = await startApi({ memoryBytes: 1024 * 2 ** 20 });
    try {
      api.runtime.ignoreTerm.add("slow");
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("slow", { ram_mb: 600, stop_grace_ms: 600_000 }) })).status, 201);
      await waitFor("slow to run", async () => ((await api.controller.get("slow")).status?.state === "running" ? true : undefined));
      assert.equal((await api.request("POST", "/v1/stars/slow/stop")).status, 200);
      await waitFor("the stop acted on", async () => ((await api.controller.get("slow")).observedGeneration === (await api.controller.get("slow")).generation ? true : undefined));
      assert.equal(api.runtime.status("slow")?.state, "running", "it ignores SIGTERM: still in its grace");
      const refused = await api.request("POST", "/v1/stars", { body: sleeper("next", { ram_mb: 600 }) });
      assert.equal(refused.status, 422, "its memory is still taken");
      // Removed: no wait for the grace (the remove does not queue behind the stop).
      const t0 = Date.now();
      assert.equal((await api.request("DELETE", "/v1/stars/slow?force=1")).status, 204);
      await waitFor("slow gone from its node", () => (api.runtime.status("slow") === undefined ? true : undefined), { timeoutMs: 5000 });
      assert.ok(Date.now() - t0 < 5000);
      await waitFor("its memory free", async () => ((await api.request("POST", "/v1/stars", { body: sleeper("next", { ram_mb: 600 }) })).status === 201 ? true : undefined));
      // A child cannot outlast its parent's stop by a longer grace.
      assert.equal((await api.request("DELETE", "/v1/stars/next?force=1")).status, 204);
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("p", { ram_mb: 100 }) })).status, 201);
      const token = await api.starToken("p");
      const long = await api.request("POST", "/v1/stars", { token, body: sleeper("p-kid", { stop_grace_ms: 3_600_000 }) });
      assert.equal(long.status, 422, long.text);
      assert.equal(long.error().field, "stop_grace_ms");
      const kid = await api.request("POST", "/v1/stars", { token, body: sleeper("p-kid") });
      assert.equal(kid.status, 201, kid.text);
      assert.equal(kid.json<View>().spec.stop_grace_ms, undefined, "the default grace: the parent's too");
    } finally {
      await api.close();
    }
  });

  it("a star's token is not told the node's totals", async () => {
    const api = await startApi({ memoryBytes: 1024 * 2 ** 20 });
    try {
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("big", { ram_mb: 900 }) })).status, 201);
      const token = await api.starToken("big");
      const refused = await api.request("POST", "/v1/stars", { token, body: sleeper("big-kid", { ram_mb: 200 }) });
      assert.equal(refused.status, 422);
      assert.equal(refused.error().code, "NODE_MEMORY_FULL");
      assert.match(refused.error().message, /ram_mb asks for 200 MB, more than node n1 has left to promise/);
      assert.doesNotMatch(refused.error().message, /900|1024|124/);
    } finally {
      await api.close();
    }
  });

  it("with memoryOvercommit 1.5, and concurrent creates: exactly as many as fit", async () => {
    const api = await startApi({ memoryBytes: 2048 * 2 ** 20, limits: { memoryOvercommit: 1.5 } });
    try {
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => api.request("POST", "/v1/stars", { body: sleeper(`c${i}`, { ram_mb: 1024 }) })));
      assert.deepEqual(answers.map((a) => a.status).sort(), [201, 201, 201, 422, 422, 422, 422, 422]);
      assert.match(answers.find((a) => a.status === 422)!.error().message, /3072 of 3072 MB promised .* \(0 MB left\)/);
      const node = (await api.request("GET", "/v1/status")).json<{ nodes: Array<{ limits: { memoryOvercommit: number } }> }>().nodes[0]!;
      assert.equal(node.limits.memoryOvercommit, 1.5, "the node record carries its limits");
    } finally {
      await api.close();
    }
  });
});

describe("quotas: what a tree of stars may hold", () => {
  it("at most so many stars below an admin's star, and so many bytes of specs; the admin is not held to it", async () => {
    const api = await startApi({ quotas: { stars: 3, specBytes: 4000 } });
    try {
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("root") })).status, 201);
      const rootToken = await api.starToken("root");
      assert.equal((await api.request("POST", "/v1/stars", { token: rootToken, body: sleeper("t-kid") })).status, 201);
      const kidToken = await api.starToken("t-kid");
      // Counted over the whole tree, whichever star of it asks.
      assert.equal((await api.request("POST", "/v1/stars", { token: kidToken, body: sleeper("t-grandkid") })).status, 201);
      for (const token of [rootToken, kidToken]) {
        const full = await api.request("POST", "/v1/stars", { token, body: sleeper("t-more") });
        assert.equal(full.status, 422, full.text);
        assert.equal(full.error().code, "STAR_QUOTA_EXCEEDED");
        assert.match(full.error().message, /the stars made from root number 3, the most a tree of stars may hold \(3\): remove some first/);
      }
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("admin-star") })).status, 201, "an admin's own stars are not in the tree");
      // One gone: room for one more, but not for a spec that is too big.
      assert.equal((await api.request("DELETE", "/v1/stars/t-grandkid?force=1", { token: kidToken })).status, 204);
      const big = await api.request("POST", "/v1/stars", { token: rootToken, body: sleeper("t-big", { env: { X: "x".repeat(4000) } }) });
      assert.equal(big.status, 422);
      assert.match(big.error().message, /would take \d+ bytes, more than a tree of stars may hold \(4000\)/);
      assert.equal((await api.request("POST", "/v1/stars", { token: rootToken, body: sleeper("t-more") })).status, 201);
      assert.equal((await api.request("GET", "/v1/stars")).json<{ stars: View[] }>().stars.length, 4);
    } finally {
      await api.close();
    }
  });
});

describe("the node's own shortage is not the star's failure", () => {
  it("a start that fails for lack of files on the node is put off and tried again, never reported failed", async () => {
    const api = await startApi();
    try {
      api.runtime.shortNextLaunch.set("unlucky", "EMFILE");
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("unlucky") })).status, 201);
      // Meanwhile the node says it is degraded, and why.
      type Status = { nodes: Array<{ degraded?: { reason: string } }> };
      const degraded = await waitFor("the node degraded", async () => (await api.request("GET", "/v1/status")).json<Status>().nodes[0]?.degraded);
      assert.equal(degraded.reason, "short of resources (EMFILE): 1 star start put off");
      await waitFor("it runs in the end", async () => ((await api.controller.get("unlucky")).status?.state === "running" ? true : undefined), { timeoutMs: 15_000 });
      await waitFor("the node ready again", async () => ((await api.request("GET", "/v1/status")).json<Status>().nodes[0]?.degraded === undefined ? true : undefined));
      const events = (await api.request("GET", "/v1/events?star=unlucky&limit=100")).json<{ events: Array<{ kind: string; message: string }> }>().events;
      assert.ok(events.some((e) => e.kind === "star.start-delayed" && /short of resources \(EMFILE\); trying again in \d+ ms/.test(e.message)), JSON.stringify(events));
      assert.ok(!events.some((e) => e.kind === "star.start-failed"), "never failed");
      assert.ok(!events.some((e) => e.kind === "star.state" && /failed/.test(e.message)), "never shown failed");
    } finally {
      await api.close();
    }
  });

  it("the node is ready again when a put-off star is stopped, or fails for its own reasons; a stopped one is shown stopped", async () => {
    const api = await startApi();
    type Status = { nodes: Array<{ degraded?: { reason: string } }> };
    const degraded = async () => (await api.request("GET", "/v1/status")).json<Status>().nodes[0]?.degraded;
    try {
      api.runtime.shortNextLaunch.set("halted", "ENOSPC");
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("halted") })).status, 201);
      await waitFor("the node degraded", degraded);
      const waiting = await waitFor("shown waiting for its start", async () => ((await api.controller.get("halted")).status?.state === "pending" ? (await api.controller.get("halted")).status : undefined));
      assert.match(waiting.reason ?? "", /start put off: this node is short of resources \(ENOSPC\)/);
      assert.equal((await api.request("POST", "/v1/stars/halted/stop")).status, 200);
      await waitFor("the node ready", async () => ((await degraded()) === undefined ? true : undefined));
      await waitFor("the star shown stopped", async () => ((await api.controller.get("halted")).status?.state === "stopped" ? true : undefined));

      api.runtime.shortNextLaunch.set("doomed", "EMFILE");
      api.runtime.failNextLaunch.set("doomed", "exec: no such program");
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("doomed") })).status, 201);
      await waitFor("the star failed for its own reason", async () => ((await api.controller.get("doomed")).status?.state === "failed" ? true : undefined), { timeoutMs: 15_000 });
      assert.equal(await degraded(), undefined, "the node is ready");
    } finally {
      await api.close();
    }
  });
});

describe("lists a page at a time, with the fields asked for", () => {
  it("limit/after/next page by name; fields leave the rest out; the SDK reads every page; bad fields are a 400", async () => {
    const api = await startApi();
    try {
      for (let i = 0; i < 510; i++) await api.controller.create({ name: `p${String(i).padStart(3, "0")}`, command: ["sleep", "60"], env: { BIG: "x".repeat(100) } }, { start: false });
      const first = (await api.request("GET", "/v1/stars?limit=3")).json<{ stars: View[]; next?: string }>();
      assert.deepEqual(first.stars.map((s) => s.name), ["p000", "p001", "p002"]);
      assert.equal(first.next, "p002");
      const second = (await api.request("GET", `/v1/stars?limit=3&after=${first.next}`)).json<{ stars: View[]; next?: string }>();
      assert.deepEqual(second.stars.map((s) => s.name), ["p003", "p004", "p005"]);
      const last = (await api.request("GET", "/v1/stars?after=p507")).json<{ stars: View[]; next?: string }>();
      assert.deepEqual(last.stars.map((s) => s.name), ["p508", "p509"]);
      assert.equal(last.next, undefined, "the last page says no more");
      const light = await api.request("GET", "/v1/stars?limit=2&fields=status,desired");
      for (const s of light.json<{ stars: Array<Record<string, unknown>> }>().stars) {
        assert.ok(Object.keys(s).every((k) => ["name", "status", "desired"].includes(k)), Object.keys(s).join());
        assert.equal(s.desired, "stopped");
      }
      assert.doesNotMatch(light.text, /xxxx/, "no specs");
      const bad = await api.request("GET", "/v1/stars?fields=spec,secret");
      assert.equal(bad.status, 400);
      assert.match(bad.error().message, /fields are a comma-separated list of name, uid, spec/);
      assert.equal((await api.request("GET", "/v1/stars?limit=501")).status, 400);
      const client = connect({ endpoint: api.url, token: api.admin });
      try {
        assert.equal((await client.list()).length, 510, "every page");
        const names = (await client.list({ fields: ["desired"] })).map((s) => s.name);
        assert.equal(new Set(names).size, 510);
      } finally {
        client.close();
      }
    } finally {
      await api.close();
    }
  });

  it("a page also ends at PAGE_BYTES of stars, so a list of big specs costs a few MB a page; the SDK still reads them all", async () => {
    const api = await startApi();
    try {
      const big = { A: "x".repeat(130_000), B: "x".repeat(130_000), C: "x".repeat(130_000) };
      for (let i = 0; i < 14; i++) await api.controller.create({ name: `big${String(i).padStart(2, "0")}`, command: ["sleep", "60"], env: big }, { start: false });
      const first = await api.request("GET", "/v1/stars");
      const page = first.json<{ stars: View[]; next?: string }>();
      assert.ok(page.stars.length < 14 && page.stars.length >= 10, `${page.stars.length} stars in the first page`);
      assert.equal(page.next, page.stars.at(-1)!.name);
      assert.ok(first.text.length <= PAGE_BYTES + 500_000, `${first.text.length} bytes`);
      const client = connect({ endpoint: api.url, token: api.admin });
      try {
        assert.equal((await client.list()).length, 14);
      } finally {
        client.close();
      }
    } finally {
      await api.close();
    }
  });
});

describe("a star's events are its own, not those of earlier stars of its name", () => {
  it("inspect and events?star= show the current star's; all=1 every star's of the name", async () => {
    const api = await startApi();
    try {
      api.runtime.failNextLaunch.set("again", "exec: no such program");
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("again") })).status, 201);
      await waitFor("the first one failed", async () => ((await api.controller.get("again")).status?.state === "failed" ? true : undefined));
      assert.equal((await api.request("DELETE", "/v1/stars/again?force=1")).status, 204);
      assert.equal((await api.request("POST", "/v1/stars", { body: sleeper("again") })).status, 201);
      await waitFor("the second one runs", async () => ((await api.controller.get("again")).status?.state === "running" ? true : undefined));
      type E = { kind: string; uid?: string; message: string };
      const now = (await api.controller.get("again")).uid;
      const inspected = (await api.request("GET", "/v1/stars/again")).json<{ events: E[] }>().events;
      assert.ok(inspected.length > 0 && inspected.every((e) => e.uid === now), JSON.stringify(inspected));
      assert.ok(!inspected.some((e) => /failed/.test(e.message)), "an old failure shown as current");
      const named = (await api.request("GET", "/v1/events?star=again")).json<{ events: E[] }>().events;
      assert.ok(named.every((e) => e.uid === now));
      const all = (await api.request("GET", "/v1/events?star=again&all=1")).json<{ events: E[] }>().events;
      assert.ok(all.some((e) => e.uid !== now) && all.some((e) => /failed/.test(e.message)), "all=1 keeps the history");
    } finally {
      await api.close();
    }
  });
});
