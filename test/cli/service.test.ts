/**
 * `constellation service install` (issue 10): a systemd unit that runs the node at boot, checked
 * by systemd's own verifier where it is installed; where systemd does not run, a clear error that
 * says what to do, and nothing written.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { cli } from "../helpers/constellation.js";
import { testDirSync } from "../helpers/dirs.js";

describe("constellation service", () => {
  const dir = testDirSync("constellation-service-");
  after(() => rmSync(dir, { recursive: true, force: true }));
  const data = join(dir, "my data"); // a space: ExecStart must quote it

  it("--print shows a unit that runs `up` on this data dir and leaves the stars alone at a stop", async () => {
    const r = await cli(data, ["service", "install", "--print", "--port", "7421"]);
    assert.equal(r.code, 0, r.stderr);
    const exec = /^ExecStart=(.*)$/m.exec(r.stdout)?.[1];
    assert.ok(exec, r.stdout);
    assert.match(exec, new RegExp(`^${process.execPath} --max-semi-space-size=1 --optimize-for-size --single-threaded \\S+constellation\\.mjs up --data "${data}" --port 7421$`));
    assert.match(r.stdout, /^KillMode=process$/m);
    assert.match(r.stdout, /^Environment=MALLOC_ARENA_MAX=1$/m, "one malloc arena, as init's process has");
    // systemd would expand $VAR in ExecStart: a $ in a path is doubled.
    const odd = await cli("/var/lib/d$HOME;x", ["service", "install", "--print"]);
    assert.match(odd.stdout, /--data "\/var\/lib\/d\$\$HOME;x"$/m, odd.stdout);
    assert.match(r.stdout, /^WantedBy=multi-user\.target$/m);
    // systemd's own reading of it, where its tools are installed (they need no running systemd).
    const verify = spawnSync("systemd-analyze", ["--version"]);
    if (verify.status === 0) {
      const unit = join(dir, "constellation-check.service");
      writeFileSync(unit, r.stdout);
      const v = spawnSync("systemd-analyze", ["verify", unit], { encoding: "utf8" });
      assert.equal(v.status, 0, v.stderr);
      assert.doesNotMatch(v.stderr, /constellation-check/, v.stderr);
    }
  });

  it("without systemd: says so and what to do instead, exit 1, nothing written", { skip: existsSync("/run/systemd/system") ? "this machine runs systemd" : false }, async () => {
    const units = join(dir, "units");
    const r = await cli(data, ["service", "install", "--unit-dir", units]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not running systemd .*nothing was installed/);
    assert.match(r.stderr, /up --data/);
    assert.match(r.stderr, /service install --print/);
    assert.ok(!existsSync(units) || readdirSync(units).length === 0, "no unit written");
    const un = await cli(data, ["service", "uninstall", "--unit-dir", units]);
    assert.equal(un.code, 1);
    assert.match(un.stderr, /nothing to uninstall/);
  });

  it("bad flags are usage errors", async () => {
    for (const args of [["--name", "Bad_Name"], ["--port", "0"], ["--port", "http"]]) {
      const r = await cli(data, ["service", "install", "--print", ...args]);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /takes/);
    }
  });

  it("completion: bash and zsh scripts; another shell is a usage error", async () => {
    const bash = await cli(data, ["completion", "bash"]);
    assert.equal(bash.code, 0);
    assert.equal(spawnSync("bash", ["-n"], { input: bash.stdout }).status, 0, "bash parses it");
    const zsh = await cli(data, ["completion", "zsh"]);
    assert.match(zsh.stdout, /^#compdef constellation/);
    assert.match(zsh.stdout, /bashcompinit/);
    const fish = await cli(data, ["completion", "fish"]);
    assert.equal(fish.code, 2);
    assert.match(fish.stderr, /bash or zsh/);
  });
});
