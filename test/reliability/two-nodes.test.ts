/**
 * Two constellations on one host with the same star names (issue 9, break 5): node B's
 * `create --name web` used to change node A's `web` limit, B's `rm -f web` killed A's, and stars
 * of both got uid 2,000,000. Each node's groups and users are now its own (node.json).
 */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { alive, starCgroupFile, uidOf } from "../helpers/cgroups.js";
import { type UpFixture, cli, kill9, up, upWithClient } from "../helpers/constellation.js";
import { testDirSync } from "../helpers/dirs.js";
import { waitFor } from "../helpers/wait.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

describe("two nodes on one host", { skip }, () => {
  const nodes: UpFixture[] = [];
  after(async () => {
    for (const f of nodes) await f.close();
  });

  it("same star names: limits, removal and users stay each node's own", async () => {
    const a = await upWithClient("constellation-node-a-");
    nodes.push(a);
    const b = await upWithClient("constellation-node-b-");
    nodes.push(b);
    const made = await cli(a.node.dataDir, ["create", "--name", "web", "--ram-mb", "64", "--", "sleep", "600"]);
    assert.equal(made.code, 0, made.stderr);
    const aPid = (await a.sdk.star("web").wait({ for: "running" })).status!.pid!;
    const madeB = await cli(b.node.dataDir, ["create", "--name", "web", "--ram-mb", "128", "--", "sleep", "600"]);
    assert.equal(madeB.code, 0, madeB.stderr);
    const bPid = (await b.sdk.star("web").wait({ for: "running" })).status!.pid!;

    assert.equal(starCgroupFile(a.node.dataDir, "web", "memory", "memory.limit_in_bytes"), String(64 * 2 ** 20), "A's limit is A's");
    assert.equal(starCgroupFile(b.node.dataDir, "web", "memory", "memory.limit_in_bytes"), String(128 * 2 ** 20));
    const [aUid, bUid] = [uidOf(aPid)!, uidOf(bPid)!];
    assert.ok(aUid >= 2_000_000 && bUid >= 2_000_000);
    assert.notEqual(aUid, bUid, "stars of two nodes share a user");

    const rm = await cli(b.node.dataDir, ["rm", "-f", "web"]);
    assert.equal(rm.code, 0, rm.stderr);
    await waitFor("B's web gone", () => (!alive(bPid) ? true : undefined));
    assert.ok(alive(aPid), "B's rm -f web killed A's web");
    assert.equal((await a.sdk.star("web").info()).status?.state, "running");
    assert.equal(starCgroupFile(a.node.dataDir, "web", "memory", "memory.limit_in_bytes"), String(64 * 2 ** 20));
  });

  it("a data dir under /tmp: process, script, disk and isolate stars run and keep their files (stars see it through their private /tmp)", async () => {
    const dir = mkdtempSync("/tmp/constellation-tmpdata-");
    const data = join(dir, "data");
    const node = await up(data);
    try {
      const scripts = testDirSync("constellation-tmpdata-scripts-");
      chmodSync(scripts, 0o755);
      const script = join(scripts, "hello.ts");
      writeFileSync(script, 'import { readFileSync, writeFileSync } from "node:fs";\nconst f = `${process.env.HOME ?? "."}/f.txt`;\nwriteFileSync(f, "kept");\nconsole.log(`read ${readFileSync(f, "utf8")}`);\n', { mode: 0o644 });
      const run = async (name: string, args: string[]) => {
        const made = await cli(data, ["create", "--name", name, ...args]);
        assert.equal(made.code, 0, `${name}: ${made.stderr}`);
        await waitFor(`${name} to end`, async () => ((await cli(data, ["inspect", name, "--json"])).stdout.includes('"state": "exited"') ? true : undefined));
        return (await cli(data, ["logs", name])).stdout.trim();
      };
      assert.equal(await run("cmd", ["--", "sh", "-c", "echo kept > x && cat x"]), "kept");
      assert.equal(await run("disky", ["--disk-mb", "16", "--", "sh", "-c", "echo on-disk > y && cat y"]), "on-disk");
      assert.equal(await run("scripted", ["--script", script]), "read kept");
      assert.equal(await run("iso", ["--runtime", "isolate", "--script", script]), "read kept");
      rmSync(scripts, { recursive: true, force: true });
    } finally {
      for (const s of ["cmd", "disky", "scripted", "iso"]) await cli(data, ["rm", "-f", s]);
      await kill9(node);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
