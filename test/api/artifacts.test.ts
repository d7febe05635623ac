/**
 * Artifacts over real HTTP (issue 13, code without images): a star's bundled code uploaded a
 * chunk at a time and committed under its SHA-256 — it exists only once its bytes are checked
 * against the id; the same code is stored once; bad ids, chunks and commits are clear 4xx and
 * leave nothing behind.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { ARTIFACT_CHUNK_BYTES } from "../../src/model/artifact.js";
import { KEYS } from "../../src/model/records.js";
import { AgentService } from "../../src/controller/agent-service.js";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { resolveProgram } from "../../src/runtime/script.js";
import { parseStarSpec } from "../../src/model/spec.js";
import { testDirSync } from "../helpers/dirs.js";
import { type ApiHarness, startApi } from "../helpers/api.js";
import { waitFor } from "../helpers/wait.js";

describe("artifacts", () => {
  let api: ApiHarness;
  before(async () => {
    api = await startApi();
  });
  after(() => api.close());

  const upload = async (bytes: Buffer, hex = createHash("sha256").update(bytes).digest("hex")) => {
    const chunks = Math.ceil(bytes.length / ARTIFACT_CHUNK_BYTES);
    for (let i = 0; i < chunks; i++) {
      const r = await api.request("PUT", `/v1/artifacts/${hex}/chunks/${i}`, { body: { data: bytes.subarray(i * ARTIFACT_CHUNK_BYTES, (i + 1) * ARTIFACT_CHUNK_BYTES).toString("base64") } });
      assert.equal(r.status, 204, r.text);
    }
    return { hex, commit: () => api.request("POST", `/v1/artifacts/${hex}`, { body: { size: bytes.length, chunks } }) };
  };

  it("uploaded in chunks, committed once its hash is checked; the same code again is stored once", async () => {
    const bytes = randomBytes(ARTIFACT_CHUNK_BYTES * 2 + 1234);
    const { hex, commit } = await upload(bytes);
    assert.equal((await api.request("GET", `/v1/artifacts/${hex}`)).status, 404, "not there before its commit");
    const made = await commit();
    assert.equal(made.status, 201, made.text);
    assert.deepEqual(made.json<{ id: string; size: number; chunks: number }>().id, `sha256:${hex}`);
    const got = (await api.request("GET", `/v1/artifacts/${hex}`)).json<{ size: number; chunks: number }>();
    assert.deepEqual([got.size, got.chunks], [bytes.length, 3]);
    assert.equal((await commit()).status, 200, "again: already there");
    // Read back chunk by chunk, as a node will: the same bytes.
    const back = Buffer.concat(await Promise.all([0, 1, 2].map((i) => api.controller.artifacts.chunk(hex, i))));
    assert.ok(back.equals(bytes));
  });

  it("bytes that are not the id's: refused, nothing exists, the chunks are dropped", async () => {
    const bytes = randomBytes(1000);
    const wrong = createHash("sha256").update("something else").digest("hex");
    const { commit } = await upload(bytes, wrong);
    const r = await commit();
    assert.equal(r.status, 400, r.text);
    assert.match(r.error().message, new RegExp(`the uploaded bytes \\(1000 bytes, sha256 [0-9a-f]{64}\\) are not artifact ${wrong} \\(1000 bytes\\): upload them again`));
    assert.equal((await api.request("GET", `/v1/artifacts/${wrong}`)).status, 404);
    const { kvs } = await api.store.range({ prefix: `${KEYS.artifacts}${wrong}` });
    assert.equal(kvs.length, 0, "no chunk left behind");
  });

  it("a node reads the code of its own stars only; a spec naming code the cluster lacks is refused at create", async () => {
    const bytes = Buffer.from("console.log('hi');\n");
    const { hex, commit } = await upload(bytes);
    assert.equal((await commit()).status, 201);
    const made = await api.request("POST", "/v1/stars", { body: { spec: { name: "coded", script: "hi.mjs", artifact: `sha256:${hex}` }, start: false } });
    assert.equal(made.status, 201, made.text);
    const rec = await api.controller.get("coded");
    await waitFor("coded placed", async () => ((await api.controller.get("coded")).node ? true : undefined));
    const own = new AgentService(api.store, "n1");
    const got = await own.artifactChunk({ name: "coded", uid: rec.uid }, 0);
    assert.ok(Buffer.from(got.data).equals(bytes));
    assert.deepEqual([got.chunks, got.size], [1, bytes.length]);
    await assert.rejects(new AgentService(api.store, "n2").artifactChunk({ name: "coded", uid: rec.uid }, 0), /no star named coded/i, "another node's star");
    await assert.rejects(own.artifactChunk({ name: "coded", uid: "other-uid" }, 0), /no star named coded/i, "an earlier star of the name");
    const missing = await api.request("POST", "/v1/stars", { body: { spec: { name: "nocode", script: "x.mjs", artifact: `sha256:${"0".repeat(64)}` } } });
    assert.equal(missing.status, 400, missing.text);
    assert.match(missing.error().message, /artifact sha256:0{64} is not in this cluster: upload it first/);
    const alone = await api.request("POST", "/v1/stars", { body: { spec: { name: "alone", command: ["true"], artifact: `sha256:${hex}` } } });
    assert.equal(alone.status, 400);
    assert.match(alone.error().message, /artifact goes with script/);
  });

  it("a node runs uploaded code as it is: never bundled again with the node's rights (its imports are not read), and only if it hashes to its name", async () => {
    const dir = join(testDirSync("constellation-artifact-run-"), "artifacts");
    const code = Buffer.from('import s from "/etc/hostname" with { type: "text" };\nconst c = require(`../../../../../../etc/${"hostname"}`);\nconsole.log(s, c);\n');
    const hex = createHash("sha256").update(code).digest("hex");
    await mkdir(join(dir, hex), { recursive: true });
    await writeFile(join(dir, hex, "main.mjs"), code);
    const cache = join(dir, "..", "cache");
    const p = await resolveProgram(parseStarSpec({ name: "a", script: join(dir, hex, "main.mjs") }), { cacheDir: cache });
    assert.ok(Buffer.from(await readFile(p.file!)).equals(code), "the very bytes: nothing inlined");
    assert.equal(p.source, undefined, "its directory is not shown to the star");
    await writeFile(join(dir, hex, "main.mjs"), "console.log('swapped');\n");
    await assert.rejects(resolveProgram(parseStarSpec({ name: "a", script: join(dir, hex, "main.mjs") }), { cacheDir: cache }), /is not the code its name says/);
  });

  it("a namespace sees and names only the code it uploaded; another uploads the bytes to use them; uploads not committed are capped", async () => {
    const token = async (ns: string) => (await api.request("POST", "/v1/tokens", { body: { scope: "admin", namespace: ns } })).json<{ token: string }>().token;
    const [a, b] = [await token("team-a"), await token("team-b")];
    const bytes = Buffer.from("console.log('team a');\n");
    const hex = createHash("sha256").update(bytes).digest("hex");
    const as = (t: string) => ({
      put: () => api.request("PUT", `/v1/artifacts/${hex}/chunks/0`, { token: t, body: { data: bytes.toString("base64") } }),
      commit: () => api.request("POST", `/v1/artifacts/${hex}`, { token: t, body: { size: bytes.length, chunks: 1 } }),
      get: () => api.request("GET", `/v1/artifacts/${hex}`, { token: t }),
      run: (name: string) => api.request("POST", "/v1/stars", { token: t, body: { spec: { name, script: "a.mjs", artifact: `sha256:${hex}` }, start: false } }),
    });
    assert.equal((await as(a).put()).status, 204);
    assert.equal((await as(a).commit()).status, 201);
    assert.equal((await as(a).get()).status, 200);
    assert.equal((await as(b).get()).status, 404, "team b does not see team a's code");
    const stolen = await as(b).run("b-steal");
    assert.equal(stolen.status, 400, stolen.text);
    assert.match(stolen.error().message, /is not in this cluster: upload it first/);
    assert.equal((await as(a).run("a-run")).status, 201);
    // Team b with the very bytes: it has the code too.
    assert.equal((await as(b).put()).status, 204);
    assert.equal((await as(b).commit()).status, 200, "there already: team b is added");
    assert.equal((await as(b).run("b-run")).status, 201);
    assert.equal((await api.request("GET", `/v1/artifacts/${hex}`)).status, 200, "a cluster admin sees all");
    // Chunks uploaded and never committed: at most 512 per uploader.
    const junk = createHash("sha256").update("junk").digest("hex");
    for (let i = 0; i < 256; i++) assert.equal((await api.request("PUT", `/v1/artifacts/${junk}/chunks/${i}`, { token: b, body: { data: "AA==" } })).status, 204);
    const other = createHash("sha256").update("junk2").digest("hex");
    for (let i = 0; i < 256; i++) assert.equal((await api.request("PUT", `/v1/artifacts/${other}/chunks/${i}`, { token: b, body: { data: "AA==" } })).status, 204);
    const over = await api.request("PUT", `/v1/artifacts/${junk}/chunks/0`, { token: b, body: { data: "AA==" } });
    assert.equal(over.status, 429, over.text);
    assert.match(over.error().message, /512 chunks are uploaded and not committed \(at most 512\)/);
    assert.equal((await as(a).put()).status, 204, "another uploader is not held to team b's");
    // A wrong commit drops its uploader's chunks only.
    assert.equal((await api.request("POST", `/v1/artifacts/${junk}`, { token: b, body: { size: 256, chunks: 1 } })).status, 400);
    assert.equal((await api.request("PUT", `/v1/artifacts/${junk}/chunks/0`, { token: b, body: { data: "AA==" } })).status, 204, "room again");
    assert.equal((await as(a).commit()).status, 200, "team a's own upload was not touched");
  });

  it("bad input: ids, indexes, chunk sizes, base64, a commit with a chunk missing, a star's or a read token", async () => {
    const hex = createHash("sha256").update("x").digest("hex");
    for (const [method, path, body, status, said] of [
      ["GET", "/v1/artifacts/nothex", undefined, 400, /64 lowercase hex digits/],
      ["PUT", `/v1/artifacts/${hex}/chunks/-1`, { data: "AA==" }, 400, /index is a whole number of 0 or more, in digits/],
      ["PUT", `/v1/artifacts/${hex}/chunks/%20`, { data: "AA==" }, 400, /index is a whole number of 0 or more, in digits/],
      ["PUT", `/v1/artifacts/${hex}/chunks/99999`, { data: "AA==" }, 400, /a chunk's index is 0 to 255/],
      ["PUT", `/v1/artifacts/${hex}/chunks/1234567`, { data: "AA==" }, 400, /in digits/],
      ["PUT", `/v1/artifacts/${hex}/chunks/0`, { data: "not base64!" }, 400, /data must be base64/],
      ["PUT", `/v1/artifacts/${hex}/chunks/0`, { data: "" }, 400, /a chunk is 1 to 262144 bytes/],
      ["PUT", `/v1/artifacts/${hex}/chunks/0`, { data: "A".repeat(349_532) }, 400, /at most 256 KiB/],
      ["POST", `/v1/artifacts/${hex}`, { size: 10, chunks: 1 }, 400, /chunk 0 of 1 is missing/],
      ["POST", `/v1/artifacts/${hex}`, { size: 10, chunks: 2 }, 400, /10 bytes are 1 chunks of 262144 bytes, not 2/],
      ["POST", `/v1/artifacts/${hex}`, { size: 2 ** 30, chunks: 4096 }, 400, /an artifact is 1 byte to 64 MiB/],
      ["GET", `/v1/artifacts/${hex}`, undefined, 404, /no artifact sha256:[0-9a-f]{64} in this cluster/],
    ] as const) {
      const r = await api.request(method, path, body === undefined ? {} : { body });
      assert.equal(r.status, status, `${method} ${path}: ${r.text}`);
      assert.match(r.error().message, said, `${method} ${path}`);
    }
    assert.equal((await api.request("POST", "/v1/stars", { body: { spec: { name: "s", command: ["sleep", "60"] } } })).status, 201);
    const star = await api.starToken("s");
    const refused = await api.request("PUT", `/v1/artifacts/${hex}/chunks/0`, { token: star, body: { data: "AA==" } });
    assert.equal(refused.status, 403, refused.text);
  });
});
