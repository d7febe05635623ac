/**
 * Where limits cannot be enforced, a star that asks for them is refused with what is missing —
 * unless the runtime runs in dev mode, where the star runs marked limitsEnforced: false.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmod, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { LimitUnenforceableError } from "../../src/model/errors.js";
import { CgroupNoneDriver } from "../../src/runtime/cgroup/cgroup-none.js";
import { ProcessRuntime } from "../../src/runtime/process/process-runtime.js";
import { testDir } from "../helpers/dirs.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;
const RUNTIME = fileURLToPath(new URL("../../src/runtime/process/process-runtime.js", import.meta.url));

describe("limits that cannot be enforced", { skip }, () => {
  let dir: string;
  before(async () => {
    dir = await testDir("constellation-unenf-");
    await chmod(dir, 0o755);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("without cgroups: a clear error naming what is missing; in dev mode the star runs, marked", async () => {
    const strict = await ProcessRuntime.create({ dataDir: join(dir, "strict"), cgroups: new CgroupNoneDriver("no cgroup hierarchy is mounted") });
    await assert.rejects(strict.start("a", { name: "a", command: ["true"], ram_mb: 64 }), (e: unknown) => {
      assert.ok(e instanceof LimitUnenforceableError);
      assert.match(e.message, /cannot enforce ram_mb on this node: no cgroup hierarchy is mounted/);
      return true;
    });
    assert.equal(strict.list().length, 0);
    await strict.close();

    const dev = await ProcessRuntime.create({ dataDir: join(dir, "dev"), cgroups: new CgroupNoneDriver("no cgroup hierarchy is mounted"), devMode: true });
    const s = await dev.start("b", { name: "b", command: ["true"], ram_mb: 64 });
    assert.equal(s.limitsEnforced, false);
    assert.equal((await dev.wait("b")).state, "exited");
    await dev.remove("b");
    await dev.close();
  });

  it("not root: the runtime refuses to start without dev mode, saying why", () => {
    const code = `
      const { ProcessRuntime } = await import(${JSON.stringify(RUNTIME)});
      try { await ProcessRuntime.create({ dataDir: ${JSON.stringify(join(dir, "user"))} }); console.log("created"); }
      catch (e) { console.log(e.code + ": " + e.message); }`;
    const res = spawnSync(process.execPath, ["--input-type=module", "-e", code], { uid: 65534, gid: 65534, encoding: "utf8", cwd: "/" });
    assert.match(res.stdout, /RUNTIME_UNAVAILABLE: the process runtime needs root .* or in dev mode/);
  });
});
