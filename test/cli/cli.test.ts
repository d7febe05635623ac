/** The CLI binary as a user runs it: compiled JavaScript, real process, real exit codes. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { it } from "node:test";

const BIN = fileURLToPath(new URL("../../src/cli/constellation.mjs", import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });

it("--version prints the package version", () => {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
  const res = run("--version");
  assert.equal(res.status, 0);
  assert.equal(res.stdout.trim(), pkg.version);
});

it("an unknown command or flag is a one-line error with exit code 2, not a stack trace", () => {
  for (const args of [["frobnicate"], ["--frobnicate"]]) {
    const res = run(...args);
    assert.equal(res.status, 2, `exit code for ${args.join(" ")}`);
    assert.match(res.stderr, /^error: /m);
    assert.doesNotMatch(res.stderr, /\n\s+at /, "no stack trace");
  }
});

it("a program's own flags taken for ours: the error hints at --", () => {
  const res = run("create", "--name", "l", "ls", "-la");
  assert.equal(res.status, 2);
  assert.match(res.stderr, /unknown option '-la'/);
  assert.match(res.stderr, /hint: a program's own options go after --, e\.g\. constellation create --name list -- ls -la/);
});

it("under --json an error is JSON too, with its code, and the exit code is non-zero", () => {
  const res = run("--data", "/nonexistent/constellation-data", "inspect", "x", "--json");
  assert.equal(res.status, 1);
  const out = JSON.parse(res.stdout) as { error: { code: string; message: string } };
  assert.equal(out.error.code, "API_UNAVAILABLE");
  assert.match(out.error.message, /no constellation found in \/nonexistent\/constellation-data/);
});

it("rm needs names, or --all with --yes", () => {
  assert.match(run("rm").stderr, /give the names of the stars to remove/);
  assert.match(run("rm", "--all").stderr, /add --yes to say so/);
  assert.equal(run("rm", "--all").status, 2);
});
