/**
 * The CLI binary against the API (in-process, fake runtime): tokens (make with a ttl, ls, rm),
 * stars with their parents, rm of a star whose child runs, and what a star's token sees.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { DEFAULT_NODE_LIMITS } from "../../src/model/spec.js";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, type CliResult } from "../helpers/constellation.js";
import { testDirSync } from "../helpers/dirs.js";
import { type ApiHarness, startApi } from "../helpers/api.js";

describe("CLI: tokens, parents, a star's view", () => {
  let api: ApiHarness;
  /** Runs the CLI against the API with `token` (default: the admin's). */
  const run = (args: string[], token?: string) =>
    new Promise<CliResult>((resolve) => {
      const child = spawn(process.execPath, [CLI, "--endpoint", api.url, "--token", token ?? api.admin, ...args], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, NO_COLOR: "1", CONSTELLATION_DATA: "/nonexistent" },
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });

  before(async () => {
    api = await startApi();
  });
  after(() => api.close());

  it("token --scope read --ttl 1h, token ls (table and --json), token rm", async () => {
    const made = await run(["token", "--scope", "read", "--name", "dashboard", "--ttl", "1h"]);
    assert.equal(made.code, 0, made.stderr);
    const token = made.stdout.trim();
    assert.match(token, /^cst_\S{40,}$/);
    const ls = await run(["token", "ls"]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^ID\s+SCOPE\s+NAME\s+NAMESPACE\s+STAR\s+AGE\s+EXPIRES\n/);
    assert.match(ls.stdout, /\n[0-9a-f]{12}\s+read\s+dashboard\s+\(all\)\s+-\s+\d+s\s+in (59m|1h)\n/);
    assert.ok(!ls.stdout.includes(token), "never the token");
    const listed = JSON.parse((await run(["token", "ls", "--json"])).stdout) as Array<{ id: string; name: string; expiresAt?: number }>;
    const mine = listed.find((t) => t.name === "dashboard")!;
    assert.ok(mine.expiresAt! > Date.now());
    assert.equal((await run(["list"], token)).code, 0, "the new token works");

    const rm = await run(["token", "rm", mine.id]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(rm.stdout, `${mine.id}: revoked\n`);
    const revoked = await run(["list"], token);
    assert.equal(revoked.code, 1);
    assert.match(revoked.stderr, /^error: a valid token is needed/);
    const again = await run(["token", "rm", mine.id]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^error: no token with id [0-9a-f]+: see `constellation token ls`\n$/);
  });

  it("namespaces: token --namespace, create --namespace, quota set / ls / rm, namespaces, list by namespace", async () => {
    const set = await run(["quota", "set", "team-q", "--ram-gb", "1", "--stars", "2"]);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, "team-q: quota set (ram_mb 1024, stars 2)\n");
    const team = (await run(["token", "--scope", "admin", "--namespace", "team-q", "--name", "q"])).stdout.trim();
    assert.match((await run(["token", "ls"])).stdout, /admin\s+q\s+team-q\s+-/);
    const made = await run(["create", "--name", "q-1", "--ram-mb", "800", "--no-wait", "--", "sleep", "60"], team);
    assert.equal(made.code, 0, made.stderr);
    const over = await run(["create", "--name", "q-2", "--ram-mb", "400", "--no-wait", "--", "sleep", "60"], team);
    assert.equal(over.code, 1);
    assert.match(over.stderr, /namespace team-q is at its quota of memory: 800 MiB of 1024 MiB used, this star asks 400 MiB/);
    const elsewhere = await run(["create", "--name", "q-3", "--namespace", "default", "--no-wait", "--", "sleep", "60"], team);
    assert.equal(elsewhere.code, 1);
    assert.match(elsewhere.stderr, /this token's stars are made in namespace team-q/);
    const spaces = await run(["namespaces"]);
    assert.match(spaces.stdout, /^NAMESPACE\s+STARS\s+CPU CORES\s+MEMORY\s+DISK\n/);
    assert.match(spaces.stdout, /\nteam-q\s+1 \/ 2\s+0\s+800 MB \/ 1024 MB\s+0 MB\n/);
    assert.deepEqual((JSON.parse((await run(["quota", "ls", "--json"], team)).stdout) as Array<{ name: string }>).map((n) => n.name), ["team-q"]);
    assert.match((await run(["list"])).stdout, /^NAME\s+NAMESPACE\s+STATE/);
    assert.match((await run(["list"])).stdout, /\nq-1\s+team-q\s+/);
    const denied = await run(["quota", "set", "team-q", "--stars", "100"], team);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /needs an admin token of the whole cluster/);
    assert.equal((await run(["quota", "set", "team-q"])).code, 2);
    assert.equal((await run(["quota", "set", "team-q", "--stars", "-1"])).code, 2);
    assert.equal((await run(["quota", "rm", "team-q"])).stdout, "team-q: quota lifted\n");
    assert.equal((await run(["create", "--name", "q-2", "--ram-mb", "400", "--no-wait", "--", "sleep", "60"], team)).code, 0);
    assert.equal((await run(["rm", "-f", "q-1", "q-2"], team)).code, 0);
    // A namespace's token runs its own code, packaged: not a path on the cluster's machines.
    const dir = testDirSync("constellation-access-pkg-");
    writeFileSync(join(dir, "job.mjs"), "console.log('job');\n");
    const path = await run(["create", "--name", "q-path", "--no-wait", "--script", join(dir, "job.mjs")], team);
    assert.equal(path.code, 1);
    assert.match(path.stderr, /script: a script path is read on the cluster's machines; a namespace's token runs its own code, packaged where it runs/);
    const pkg = await run(["create", "--name", "q-pkg", "--no-wait", "--package", "--script", join(dir, "job.mjs")], team);
    assert.equal(pkg.code, 0, pkg.stderr);
    assert.match(JSON.stringify((await api.controller.get("q-pkg")).spec), /"artifact":"sha256:[0-9a-f]{64}"/);
    assert.equal((await run(["rm", "-f", "q-pkg"], team)).code, 0);
  });

  it("bad token commands: a one-line error and a non-zero exit code", async () => {
    for (const [args, code, message] of [
      [["token", "--scope", "read", "--ttl", "1x"], 2, /--ttl takes a duration like 90s, 30m, 1h, 7d or 2w/],
      [["token", "--scope", "read", "--ttl", "0s"], 2, /--ttl takes a duration/],
      [["token", "--scope", "star"], 2, /Allowed choices are read, admin/],
      [["token"], 2, /required option '--scope <scope>'/],
      [["token", "rm"], 2, /missing required argument 'id'/],
      [["token", "rm", "zz"], 1, /a token id is 4 to 64 hex digits/],
    ] as const) {
      const res = await run([...args]);
      assert.equal(res.code, code, `${args.join(" ")}: ${res.stderr}`);
      assert.match(res.stderr, message);
      assert.doesNotMatch(res.stderr, /\n\s+at /, "no stack trace");
    }
  });

  it("list shows each star's parent; rm of a star whose child runs names the child; a star's token sees its own subtree", async () => {
    await api.request("POST", "/v1/stars", { body: { spec: { name: "boss", command: ["sleep", "60"], env: { KEY: "secret-value" } } } });
    await api.request("POST", "/v1/stars", { body: { spec: { name: "bystander", command: ["sleep", "60"] } } });
    const boss = await api.starToken("boss");
    const created = await run(["create", "--name", "helper", "--no-wait", "--", "sleep", "60"], boss);
    assert.equal(created.code, 0, created.stderr);
    const list = await run(["list"]);
    assert.match(list.stdout, /^NAME\s+STATE\s+NODE\s+CPU\s+MEMORY\s+RESTARTS\s+AGE\s+PARENT\n/);
    assert.match(list.stdout, /\nhelper\s+\S+.*\s+boss\n/);
    assert.match(list.stdout, /\nboss\s+.*\s-\n/);
    const inspect = await run(["inspect", "helper"]);
    assert.match(inspect.stdout, /parent\s+boss \(made by its token; removed with it\)/);

    const seen = await run(["list"], boss);
    assert.deepEqual(seen.stdout.split("\n").slice(1).filter(Boolean).map((l) => l.split(/\s+/)[0]).sort(), ["boss", "helper"]);
    const other = await run(["inspect", "bystander"], boss);
    assert.equal(other.code, 1);
    assert.equal(other.stderr, "error: no star named bystander: see `constellation list`\n");
    const spec = await run(["inspect", "boss"], boss);
    assert.match(spec.stdout, /"env":\{"KEY":"<hidden>"\}/);
    assert.doesNotMatch(spec.stdout, /secret-value/);
    const tokens = await run(["token", "ls"], boss);
    assert.equal(tokens.code, 1);
    assert.match(tokens.stderr, /this token's scope is star; this request needs admin/);

    const stopped = await run(["stop", "boss"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    const refused = await run(["rm", "boss"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^error: star boss has a running descendant, helper \(made by boss\): stop it first \(constellation stop helper\), or remove boss with everything below it with -f\n$/);
    const removed = await run(["rm", "-f", "boss"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual((await api.controller.list()).map((s) => s.name), ["bystander"]);
  });

  it("up --help lists the node limits with their defaults", async () => {
    const help = await run(["up", "--help"]);
    assert.equal(help.code, 0);
    const flags: Array<[string, number]> = [
      ["--default-ram-mb", DEFAULT_NODE_LIMITS.defaultRamMb],
      ["--default-pids", DEFAULT_NODE_LIMITS.defaultPids],
      ["--max-pids", DEFAULT_NODE_LIMITS.maxPids],
      ["--default-nofile", DEFAULT_NODE_LIMITS.defaultNofile],
      ["--max-nofile", DEFAULT_NODE_LIMITS.maxNofile],
      ["--max-log-mb", DEFAULT_NODE_LIMITS.maxLogMb],
      ["--memory-overcommit", DEFAULT_NODE_LIMITS.memoryOvercommit],
    ];
    assert.match(help.stdout.replace(/\s+/g, " "), /--default-disk-mb <mb> [^-]*\(default: none, the node's disk unbounded\)/);
    for (const [flag, value] of flags) assert.match(help.stdout.replace(/\s+/g, " "), new RegExp(`${flag} <\\w+> [^-]*\\(default ${value}\\)`), flag);
    const bad = await run(["up", "--memory-overcommit", "-1"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--memory-overcommit takes a number greater than 0, got "-1"/);
  });
});
