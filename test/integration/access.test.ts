/**
 * Least privilege end to end (issue 8), with the built `constellation up` as root: a star's own
 * token, used by the SDK inside the star, sees only its subtree and gets at most its limits (the
 * kernel's files say so); a revoked admin token is replaced at the next start; `up`'s node limit
 * flags reach the node record and the stars.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { connect } from "../../src/index.js";
import { type UpFixture, cli, kill9, up, upWithClient } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";
import { starCgroupFile } from "../helpers/cgroups.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root (real cgroups and namespaces)" : false;


describe("least privilege, end to end (constellation up as root)", { skip }, () => {
  let f: UpFixture;

  before(async () => {
    f = await upWithClient("constellation-access-", ["--default-ram-mb", "96", "--max-pids", "2048"]);
  });
  after(() => f?.close());

  it("up's limit flags: on the f.node record, and a star that asks for no memory gets the default", async () => {
    const limits = (await f.sdk.status()).nodes[0]!.limits;
    assert.equal(limits.defaultRamMb, 96);
    assert.equal(limits.maxPids, 2048);
    const star = await f.sdk.create({ name: "defaulted", command: ["sleep", "60"] });
    await star.wait({ for: "running" });
    assert.equal(Number(starCgroupFile(f.node.dataDir, "defaulted", "memory", "memory.limit_in_bytes")), 96 * 2 ** 20);
    await star.remove({ force: true });
  });

  it("inside a star: its token sees its subtree only, its child inherits its limits, and admin-only fields are refused", async () => {
    const sdkEntry = fileURLToPath(new URL("../../src/index.js", import.meta.url));
    const script = join(f.dir, "boss.mjs");
    await writeFile(
      script,
      `import { constellation as c } from ${JSON.stringify(sdkEntry)};\n` +
        "const code = async (p) => { try { await p; return 'ok'; } catch (e) { return `${e.code}:${e.field ?? ''}`; } };\n" +
        'const kid = await c.create({ name: "boss-kid", command: ["sleep", "60"] });\n' +
        'await kid.wait({ for: "running" });\n' +
        "const out = {\n" +
        "  seen: (await c.list()).map((s) => s.name).sort(),\n" +
        "  kidRam: (await kid.info()).spec.ram_mb,\n" +
        '  other: await code(c.star("bystander").info()),\n' +
        '  stopOther: await code(c.star("bystander").stop()),\n' +
        '  greedy: await code(c.create({ name: "greedy", command: ["true"], ram_mb: 512 })),\n' +
        '  unconfined: await code(c.create({ name: "loose", command: ["true"], seccomp: "unconfined" })),\n' +
        '  env: (await c.star("boss").info()).spec.env,\n' +
        "};\n" +
        "console.log(JSON.stringify(out));\n" +
        "c.close();\n" +
        "setInterval(() => {}, 1000);\n",
    );
    await chmod(script, 0o644);
    await f.sdk.create({ name: "bystander", command: ["sleep", "60"] });
    const boss = await f.sdk.create({ name: "boss", script, ram_mb: 64, env: { API_KEY: "k-123" } });
    const line = await waitFor("boss's report", async () => {
      for await (const l of boss.logs()) if (l.line.startsWith("{")) return l.line;
      const s = (await boss.info()).status;
      if (s && s.state !== "running" && s.state !== "starting") throw new Error(`boss ended: ${JSON.stringify(s)}`);
      return undefined;
    }, { timeoutMs: 30_000, intervalMs: 100 });
    assert.deepEqual(JSON.parse(line), {
      seen: ["boss", "boss-kid"],
      kidRam: 64,
      other: "STAR_NOT_FOUND:",
      stopOther: "STAR_NOT_FOUND:",
      greedy: "STAR_OVER_PARENT_LIMIT:ram_mb",
      unconfined: "API_FORBIDDEN:seccomp",
      env: { API_KEY: "<hidden>" },
    });
    assert.equal(Number(starCgroupFile(f.node.dataDir, "boss-kid", "memory", "memory.limit_in_bytes")), 64 * 2 ** 20, "the kernel holds the child to its parent's memory");
    assert.equal((await f.sdk.star("bystander").status())?.state, "running");
    const list = await cli(f.node.dataDir, ["list"]);
    assert.match(list.stdout, /\nboss-kid\s+running.*\s+boss\n/);
    assert.equal((await cli(f.node.dataDir, ["rm", "-f", "boss"])).code, 0);
    await waitFor("boss-kid to go with boss", async () => ((await f.sdk.list()).some((s) => s.name.startsWith("boss")) ? undefined : true));
    await f.sdk.star("bystander").remove({ force: true });
  });

  it("a revoked admin token stops working, and the next up writes a new one", async () => {
    const old = f.node.token;
    const admin = (await f.sdk.tokens()).find((t) => t.scope === "admin" && t.name === "admin")!;
    const rm = await cli(f.node.dataDir, ["token", "rm", admin.id]);
    assert.equal(rm.code, 0, rm.stderr);
    const refused = await cli(f.node.dataDir, ["list"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /a valid token is needed/);
    f.sdk.close();
    await kill9(f.node);
    f.node = await up(f.node.dataDir);
    assert.notEqual(f.node.token, old, "a new admin.token");
    f.sdk = connect({ dataDir: f.node.dataDir });
    assert.equal((await cli(f.node.dataDir, ["list"])).code, 0);
    const stale = await fetch(`${f.node.url}/v1/stars`, { headers: { authorization: `Bearer ${old}` } });
    assert.equal(stale.status, 401);
    // Restarting again keeps the new one.
    await kill9(f.node);
    f.node = await up(f.node.dataDir);
    assert.equal(readFileSync(join(f.node.dataDir, "admin.token"), "utf8").trim(), f.node.token);
    f.sdk.close();
    f.sdk = connect({ dataDir: f.node.dataDir });
    assert.equal((await f.sdk.tokens()).filter((t) => t.scope === "admin").length, 1);
  });
});
