/**
 * A star never joins a cgroup that already has processes (issue 8 review: two nodes on one host
 * named their stars' groups alike, and a star of one node could limit or kill a star of the
 * other by taking its name; now each node's groups are its own, constellation/<node>/process,
 * and this guards against strays in the node's own). The start fails with a clear reason; the
 * group's processes are left alone.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { StartFailedError } from "../../src/model/errors.js";
import { detectCgroups } from "../../src/runtime/cgroup/detect.js";
import { ProcessRuntime } from "../../src/runtime/process/process-runtime.js";
import { nodeIdOf } from "../helpers/cgroups.js";
import { testDir } from "../helpers/dirs.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

describe("a star's cgroup is its own", { skip }, () => {
  let dir: string;
  let rt: ProcessRuntime;
  before(async () => {
    dir = await testDir("constellation-cg-");
    rt = await ProcessRuntime.create({ dataDir: join(dir, "data") });
  });
  after(async () => {
    for (const s of rt?.list() ?? []) await rt.remove(s.id).catch(() => undefined);
    await rt?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses to start in a group that has processes, and leaves them be", async () => {
    const driver = await detectCgroups({ parent: `constellation/${nodeIdOf(join(dir, "data"))}/process` });
    const plan = await driver.plan("twin-cg", { pids: 16 });
    for (const d of plan.mkdirs) await mkdir(d, { recursive: true });
    const squatter = spawn("sleep", ["60"], { stdio: "ignore" });
    try {
      for (const f of plan.procsFiles) await writeFile(f, String(squatter.pid)); // as a star of another node would be
      await assert.rejects(rt.start("twin-cg", { name: "twin-cg", command: ["true"] }), (e: unknown) => {
        assert.ok(e instanceof StartFailedError, String(e));
        assert.match(e.message, /already has processes/);
        return true;
      });
      assert.equal(squatter.exitCode, null, "the group's process lives on");
      assert.equal(squatter.signalCode, null);
    } finally {
      squatter.kill("SIGKILL");
      await new Promise((r) => squatter.once("exit", r));
      for (const d of plan.mkdirs) await rmdir(d).catch(() => undefined);
    }
  });
});
