/**
 * A single-node constellation, end to end as a user runs it: the built `constellation up` in a
 * temp data dir, driven with the CLI binary and the SDK over HTTP. Real cgroups and namespaces
 * (root), so the limits asked for are checked in the kernel's files.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { connect, type Constellation } from "../../src/index.js";
import { CLI, type Up, cli, kill9, makeDataDir, removeDataDir, up } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";
import { starCgroupDir, starCgroupFile } from "../helpers/cgroups.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root (real cgroups and namespaces)" : false;


describe("single-node constellation (constellation up, CLI, SDK)", { skip }, () => {
  let dir: string;
  let node: Up;
  let sdk: Constellation;

  before(async () => {
    dir = makeDataDir();
    node = await up(join(dir, "data"));
    sdk = connect({ dataDir: node.dataDir });
  });
  after(async () => {
    for (const s of (await sdk?.list().catch(() => [])) ?? []) await sdk.star(s.name).remove({ force: true }).catch(() => undefined);
    sdk?.close();
    if (node) await kill9(node);
    removeDataDir(dir);
  });

  it("prints how to connect and keeps the admin token 0600", async () => {
    assert.match(node.output(), /export CONSTELLATION_DATA=/);
    assert.match(readFileSync(join(node.dataDir, "admin.token"), "utf8"), /^cst_\S{40,}\n$/);
    assert.equal(statSync(join(node.dataDir, "admin.token")).mode & 0o777, 0o600);
    // The store holds the stars' env: 0600, in a dir others may pass through but not list.
    assert.equal(statSync(join(node.dataDir, "store.db")).mode & 0o777, 0o600);
    assert.equal(statSync(node.dataDir).mode & 0o777, 0o711);
    // The operator's unix socket: root's alone; the CLI and SDK use it from the data dir.
    assert.ok(statSync(join(node.dataDir, "api.sock")).isSocket());
    assert.equal(statSync(join(node.dataDir, "api.sock")).mode & 0o777, 0o600);
    // The banner's suggestions work as printed (here: not on PATH, so the checkout's wrapper).
    const suggested = /^\s+(.* create --name greeting -- echo hello world)$/m.exec(node.output())?.[1];
    assert.ok(suggested, node.output());
    // (Variables set but empty, as `export CONSTELLATION_ENDPOINT=` leaves them, are not set.)
    const ran = spawnSync("sh", ["-c", suggested], { encoding: "utf8", env: { ...process.env, CONSTELLATION_DATA: node.dataDir, CONSTELLATION_ENDPOINT: "", CONSTELLATION_TOKEN: "" } });
    assert.equal(ran.status, 0, ran.stderr);
    await sdk.star("greeting").remove({ force: true });
    // How to add machines: the command that makes a cluster (init prints the join command).
    const init = /^\s+sudo (.* init --cluster default)$/m.exec(node.output())?.[1];
    assert.ok(init, node.output());
    const help = spawnSync("sh", ["-c", `${init.replace(/ init --cluster default$/, " init --help")}`], { encoding: "utf8" });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /--cluster <name>/);
  });

  it("CLI: create with limits (really applied), list, inspect, logs, stop, start, rm", async () => {
    const created = await cli(node.dataDir, ["create", "--name", "capped", "--ram-mb", "64", "--cpu-percent", "20", "--env", "WHO=world", "--", "sh", "-c", 'echo "hello $WHO"; exec sleep 60']);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^capped: running \(pid \d+\)/);
    assert.equal(starCgroupFile(node.dataDir, "capped", "memory", "memory.limit_in_bytes"), String(64 * 2 ** 20));
    assert.equal(starCgroupFile(node.dataDir, "capped", "cpu", "cpu.cfs_quota_us"), "20000");

    const list = await cli(node.dataDir, ["list"]);
    assert.equal(list.code, 0);
    assert.match(list.stdout, /^NAME\s+STATE\s+NODE\s+CPU\s+MEMORY\s+RESTARTS\s+AGE/);
    assert.match(list.stdout, /capped\s+running/);
    const json = JSON.parse((await cli(node.dataDir, ["list", "--json"])).stdout) as Array<{ name: string; status: { state: string } }>;
    assert.deepEqual(json.map((s) => [s.name, s.status.state]), [["capped", "running"]]);

    const inspect = JSON.parse((await cli(node.dataDir, ["inspect", "capped", "--json"])).stdout) as { status: { pid: number; limits: { memoryBytes: number } }; events: Array<{ kind: string }> };
    assert.ok(inspect.status.pid > 1);
    assert.equal(inspect.status.limits.memoryBytes, 64 * 2 ** 20);
    assert.ok(inspect.events.some((e) => e.kind === "star.created"));
    assert.ok(inspect.events.some((e) => e.kind === "star.state"));

    await waitFor("the star's first line", async () => ((await cli(node.dataDir, ["logs", "capped"])).stdout === "hello world\n" ? true : undefined));

    const stopped = await cli(node.dataDir, ["stop", "capped"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stdout, /capped: stopped/);
    const started = await cli(node.dataDir, ["start", "capped"]);
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stdout, /capped: running/);
    // Its logs go on across the restart.
    await waitFor("two hellos", async () => ((await cli(node.dataDir, ["logs", "capped"])).stdout === "hello world\nhello world\n" ? true : undefined));
    // With the time of each line; --since leaves out what came before.
    const stamped = await cli(node.dataDir, ["logs", "capped", "--timestamps"]);
    const times = stamped.stdout.trim().split("\n").map((l) => /^(\S+Z) hello world$/.exec(l)?.[1]);
    assert.equal(times.length, 2, stamped.stdout);
    assert.ok(times.every((t) => t !== undefined && Date.now() - Date.parse(t) < 120_000), stamped.stdout);
    const since = await cli(node.dataDir, ["logs", "capped", "--since", new Date(Date.parse(times[1]!)).toISOString()]);
    assert.equal(since.stdout, "hello world\n");
    assert.equal((await cli(node.dataDir, ["logs", "capped", "--since", "1m"])).stdout, "hello world\nhello world\n");
    const bad = await cli(node.dataDir, ["logs", "capped", "--since", "yesterday"]);
    assert.equal(bad.code, 2, "a usage error");
    assert.match(bad.stderr, /--since takes a duration back from now \(10m, 2h, 1d\) or a date/);

    const refused = await cli(node.dataDir, ["rm", "capped"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is running: stop it first/);
    const removed = await cli(node.dataDir, ["rm", "-f", "capped"]);
    assert.equal(removed.code, 0, removed.stderr);
    await waitFor("its cgroup to go", () => (starCgroupDir(node.dataDir, "capped", "memory") ? undefined : true));
    assert.equal((await cli(node.dataDir, ["inspect", "capped"])).code, 1);
  });

  it("CLI: a star that cannot start says why, with a non-zero exit code", async () => {
    const res = await cli(node.dataDir, ["create", "--name", "ghost", "--", "/no/such/program"]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /ghost did not start: failed \(.*\/no\/such\/program: No such file or directory/);
    // The reason is where its output would have been.
    const logs = await cli(node.dataDir, ["logs", "ghost"]);
    assert.match(logs.stdout + logs.stderr, /\[constellation\] failed to start: .*\/no\/such\/program: No such file or directory/);
    await sdk.star("ghost").remove({ force: true });
    const asJson = await cli(node.dataDir, ["create", "--name", "ghost2", "--json", "--", "/no/such/program"]);
    assert.equal(asJson.code, 1, "--json does not hide the failure");
    assert.equal((JSON.parse(asJson.stdout) as { status: { state: string } }).status.state, "failed");
    await sdk.star("ghost2").remove({ force: true });
    // One that dies 40 ms after it started is not a success either (its first second is watched);
    // one that ends well on its own is.
    const crash = await cli(node.dataDir, ["create", "--name", "brief", "--", "sh", "-c", "sleep 0.04; exit 3"]);
    assert.equal(crash.code, 1, crash.stdout);
    assert.match(crash.stderr, /star brief died right after it started: failed \(exited with code 3\)/);
    const loop = await cli(node.dataDir, ["create", "--name", "looper", "--restart", "always", "--", "sh", "-c", "sleep 0.05; exit 1"]);
    assert.equal(loop.code, 1, loop.stdout);
    const fine = await cli(node.dataDir, ["create", "--name", "done", "--", "true"]);
    assert.equal(fine.code, 0, fine.stderr);
    // --env-file (--env over it), a health check, the grace period and log rotation from flags.
    const envFile = join(dir, "app.env");
    writeFileSync(envFile, '# settings\nMODE=batch\nexport WHO="you"\n');
    const flagged = await cli(node.dataDir, [
      "create", "--name", "flagged", "--env-file", envFile, "--env", "MODE=over", "--health", "exec:true", "--health-interval-ms", "200",
      "--stop-grace-ms", "500", "--log-max-mb", "1", "--log-max-files", "2", "--", "sh", "-c", "echo $MODE $WHO; sleep 60",
    ]);
    assert.equal(flagged.code, 0, flagged.stderr);
    const spec = (await sdk.star("flagged").info()).spec as Record<string, unknown>;
    assert.deepEqual(spec.health, { type: "exec", command: ["sh", "-c", "true"], interval_ms: 200 });
    assert.deepEqual([spec.stop_grace_ms, spec.log_max_mb, spec.log_max_files], [500, 1, 2]);
    await waitFor("its output", async () => ((await cli(node.dataDir, ["logs", "flagged"])).stdout === "over you\n" ? true : undefined));
    writeFileSync(envFile, "A=1\nnot a pair\n");
    const badEnv = await cli(node.dataDir, ["create", "--name", "nope", "--env-file", envFile, "--", "true"]);
    assert.equal(badEnv.code, 2);
    assert.match(badEnv.stderr, /app\.env:2: not KEY=VALUE: "not a pair"/);
    await sdk.star("flagged").remove({ force: true });
    // --cwd: an existing directory, or a clear error at create with nothing recorded.
    const inUsr = await cli(node.dataDir, ["create", "--name", "where", "--cwd", "/usr", "--", "pwd"]);
    assert.equal(inUsr.code, 0, inUsr.stderr);
    await waitFor("it printed its cwd", async () => ((await cli(node.dataDir, ["logs", "where"])).stdout === "/usr\n" ? true : undefined));
    const noDir = await cli(node.dataDir, ["create", "--name", "nowhere", "--cwd", "/no/such/dir", "--", "pwd"]);
    assert.equal(noDir.code, 1);
    assert.match(noDir.stderr, /cwd .*\/no\/such\/dir is not a directory on this node: give an existing directory/);
    assert.equal((await cli(node.dataDir, ["inspect", "nowhere"])).code, 1, "nothing recorded");
    await sdk.star("where").remove({ force: true });
    // A script whose bundle fails: esbuild's message with the file and line, nothing recorded.
    const scripts = join(dir, "scripts");
    mkdirSync(scripts, { recursive: true, mode: 0o755 });
    writeFileSync(join(scripts, "lib.ts"), "export const n: number = ;\n", { mode: 0o644 });
    writeFileSync(join(scripts, "main.ts"), 'import { n } from "./lib.js";\nconsole.log(n);\n', { mode: 0o644 });
    const broken = await cli(node.dataDir, ["create", "--name", "broken", "--script", join(scripts, "main.ts")]);
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, new RegExp(`cannot bundle it: ${scripts}/lib\\.ts:1:26: Unexpected ";"`));
    assert.equal((await cli(node.dataDir, ["inspect", "broken"])).code, 1, "nothing recorded");
    // rm takes several names (each stands alone); restart stops and starts again.
    const gone = await cli(node.dataDir, ["rm", "-f", "brief", "looper", "no-such-star", "done"]);
    assert.equal(gone.code, 1, "one of them was not there");
    assert.match(gone.stdout, /brief: removed\nlooper: removed\ndone: removed/);
    assert.match(gone.stderr, /no-such-star/);
    assert.equal((await cli(node.dataDir, ["create", "--name", "again", "--", "sleep", "60"])).code, 0);
    const pid = (await sdk.star("again").status())!.pid;
    const restarted = await cli(node.dataDir, ["restart", "again"]);
    assert.equal(restarted.code, 0, restarted.stderr);
    assert.match(restarted.stdout, /again: running \(pid \d+\)/);
    assert.notEqual((await sdk.star("again").status())!.pid, pid);
    await sdk.star("again").remove({ force: true });
    const usage = await cli(node.dataDir, ["create", "--name", "x"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /give --script FILE or a command/);
  });

  it("CLI: list -q prints names; bash completion offers commands, flags and the stars' names", async () => {
    const made = await cli(node.dataDir, ["create", "--name", "complete-me", "--", "sleep", "60"]);
    assert.equal(made.code, 0, made.stderr);
    assert.ok((await cli(node.dataDir, ["list", "-q"])).stdout.split("\n").includes("complete-me"));
    const script = (await cli(node.dataDir, ["completion", "bash"])).stdout;
    // `constellation` on PATH, as a user who installed it has it, talking to this node.
    const bin = join(dir, "bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "constellation"), `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, { mode: 0o755 });
    const complete = (...words: string[]) => {
      const harness = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _constellation; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const r = spawnSync("bash", ["-c", harness], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, CONSTELLATION_DATA: node.dataDir } });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.split("\n").filter(Boolean);
    };
    assert.deepEqual(complete("constellation", "res"), ["restart"]);
    assert.ok(complete("constellation", "logs", "--").includes("--timestamps"));
    assert.deepEqual(complete("constellation", "logs", "complete-"), ["complete-me"]);
    assert.deepEqual(complete("constellation", "stop", "complete-"), ["complete-me"]);
    assert.deepEqual(complete("constellation", "logs", "complete-me", "complete-"), [], "logs takes one star");
    assert.deepEqual(complete("constellation", "rm", "complete-me", "complete-"), ["complete-me"], "rm takes several");
    // The connection typed on the line is the one asked for names.
    assert.deepEqual(complete("constellation", "--data", "/nowhere", "stop", "complete-"), []);
    assert.deepEqual(complete("constellation", "service", "un"), ["uninstall"]);
    assert.deepEqual(complete("constellation", "create", "complete-"), [], "create's name is given with --name, not a star's");
    assert.equal((await cli(node.dataDir, ["rm", "-f", "complete-me"])).code, 0);
  });

  it("SDK: create a script star, wait for it to end, read its logs, remove it", async () => {
    const script = join(dir, "hello.ts");
    await writeFile(script, 'const n: number = 6 * 7;\nconsole.log(`answer ${n} ${process.env.WHO}`);\n');
    await chmod(script, 0o644);
    const star = await sdk.create({ name: "answer", script, env: { WHO: "sdk" } });
    const done = await star.wait();
    assert.equal(done.status?.state, "exited");
    assert.equal(done.status?.exitCode, 0);
    const lines: string[] = [];
    for await (const l of star.logs()) lines.push(l.line);
    assert.deepEqual(lines, ["answer 42 sdk"]);
    await star.remove();
    assert.deepEqual((await sdk.list()).map((s) => s.name), []);
  });

  it("a star uses the SDK from inside: its agent gives it the endpoint and a token of its own (which cannot make tokens)", async () => {
    const sdkEntry = fileURLToPath(new URL("../../src/index.js", import.meta.url));
    const script = join(dir, "inside.mjs");
    await writeFile(
      script,
      `import { constellation } from ${JSON.stringify(sdkEntry)};\n` +
        "const me = await constellation.star(process.env.CONSTELLATION_STAR_NAME).info();\n" +
        'const child = await constellation.create({ name: "spawned-from-inside", command: ["true"] });\n' +
        "await child.wait();\n" +
        'let denied = "no";\n' +
        'try { await constellation.createToken("admin"); } catch (e) { denied = e.code; }\n' +
        "console.log(JSON.stringify({ me: me.name, state: me.status?.state, child: (await child.info()).status?.exitCode, denied }));\n" +
        "constellation.close();\n",
    );
    await chmod(script, 0o644);
    const star = await sdk.create({ name: "insider", script });
    const end = await star.wait();
    const lines: string[] = [];
    for await (const l of star.logs()) lines.push(l.line);
    assert.equal(end.status?.exitCode, 0, lines.join("\n"));
    assert.deepEqual(JSON.parse(lines.at(-1)!), { me: "insider", state: "running", child: 0, denied: "API_FORBIDDEN" });
    await sdk.star("spawned-from-inside").remove();
    await star.remove();
  });

  it("refuses unauthenticated and wrongly scoped requests", async () => {
    const plain = await fetch(`${node.url}/v1/stars`);
    assert.equal(plain.status, 401);
    assert.equal(((await plain.json()) as { error: { code: string } }).error.code, "API_UNAUTHORIZED");
    const wrong = await fetch(`${node.url}/v1/stars`, { headers: { authorization: "Bearer cst_not-a-real-token-at-all-0000" } });
    assert.equal(wrong.status, 401);
    const { token } = await sdk.createToken("read", "viewer");
    const reader = connect({ endpoint: node.url, token });
    try {
      assert.ok(Array.isArray(await reader.list()));
      await assert.rejects(reader.create({ name: "nope", command: ["true"] }), (e: { code?: string; status?: number }) => e.code === "API_FORBIDDEN" && e.status === 403);
    } finally {
      reader.close();
    }
    const viaCli = await cli(node.dataDir, ["list"], {});
    assert.equal(viaCli.code, 0);
    const badToken = await cli(node.dataDir, ["--token", "cst_wrong-wrong-wrong-wrong-wrong", "list"]);
    assert.equal(badToken.code, 1);
    assert.match(badToken.stderr, /a valid token is needed/);
  });

  it("50 creates in parallel: each star exactly once; a second create of a name conflicts", async () => {
    const names = Array.from({ length: 50 }, (_, i) => `par-${i}`);
    await Promise.all(names.map((name) => sdk.create({ name, command: ["sleep", "60"], ram_mb: 32 })));
    const again = await Promise.allSettled(names.slice(0, 10).map((name) => sdk.create({ name, command: ["true"] })));
    assert.ok(again.every((r) => r.status === "rejected" && (r.reason as { code?: string }).code === "STAR_EXISTS"));
    await waitFor("all 50 running", async () => {
      const list = await sdk.list();
      return list.filter((s) => s.name.startsWith("par-") && s.status?.state === "running").length === 50 ? true : undefined;
    }, { timeoutMs: 60_000 });
    const list = (await sdk.list()).filter((s) => s.name.startsWith("par-"));
    assert.equal(list.length, 50);
    assert.equal(new Set(list.map((s) => s.status!.pid)).size, 50, "50 distinct processes");
    await Promise.all(names.map((n) => sdk.star(n).remove({ force: true })));
    await waitFor("all removed", async () => ((await sdk.list()).length === 0 ? true : undefined), { timeoutMs: 60_000 });
  });

  it("kill -9 of the whole `up` and a restart: state comes back, running stars are re-attached, nothing duplicated", async () => {
    await sdk.create({ name: "survivor", command: ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"], ram_mb: 32 });
    await sdk.star("survivor").wait({ for: "running" });
    await sdk.create({ name: "parked", command: ["sleep", "60"] }, { start: false });
    const before = (await sdk.star("survivor").status())!;
    sdk.close();
    await kill9(node);
    assert.ok(existsSync(`/proc/${before.pid}`), "the star outlives its control plane");

    node = await up(node.dataDir);
    sdk = connect({ dataDir: node.dataDir });
    const after = await waitFor("survivor reported again", async () => {
      const s = await sdk.star("survivor").status();
      return s?.state === "running" ? s : undefined;
    });
    assert.equal(after.pid, before.pid, "the same process, re-attached");
    const parked = await sdk.star("parked").info();
    assert.equal(parked.desired, "stopped");
    assert.equal(parked.status?.state, "stopped");
    assert.equal(parked.status?.pid, undefined, "a star recorded stopped was not started");
    // One program counting on: its log is 1, 2, 3, ... with no restart.
    const numbers: number[] = [];
    for await (const l of sdk.star("survivor").logs()) numbers.push(Number(l.line));
    assert.deepEqual(numbers, numbers.map((_, i) => i + 1));
    // A reader that goes away early (| head) is not an error for the CLI.
    const piped = spawnSync("sh", ["-c", `"${process.execPath}" "${CLI}" --data "${node.dataDir}" logs survivor | head -1`], { encoding: "utf8" });
    assert.equal(piped.stdout, "1\n");
    assert.equal(piped.stderr, "", "no EPIPE stack trace");
    await sdk.star("survivor").remove({ force: true });
    await sdk.star("parked").remove();
    // Stopping `up` gently works after it re-attached stars (it used to hang on their watches).
    sdk.close();
    node.child.kill("SIGTERM");
    await waitFor("up to exit on SIGTERM", () => node.child.exitCode !== null || undefined, { timeoutMs: 10_000 });
    assert.equal(node.child.exitCode, 0);
  });
});

describe("single-node constellation in dev mode, as an unprivileged user", { skip }, () => {
  it("refuses to start without --dev (saying so), and with --dev runs stars marked \"limits not enforced\"", async () => {
    const dir = makeDataDir("constellation-dev-");
    const data = join(dir, "data");
    const nobody = { uid: 65534, gid: 65534 };
    chownSync(dir, nobody.uid, nobody.gid);
    let node: Up | undefined;
    try {
      await assert.rejects(up(data, [], nobody), /needs root .* constellation up --dev/);
      node = await up(data, ["--dev"], nobody);
      assert.match(node.output(), /dev mode: limits not enforced/);
      const created = await cli(data, ["create", "--name", "dev1", "--ram-mb", "32", "--", "sh", "-c", "echo hi; exec sleep 30"]);
      assert.equal(created.code, 0, created.stderr);
      const list = await cli(data, ["list"]);
      assert.match(list.stdout, /dev1\s+running \(limits not enforced\)/);
      const status = await cli(data, ["status"]);
      assert.match(status.stdout, /not enforced \(dev mode\)/);
      assert.equal((await cli(data, ["rm", "-f", "dev1"])).code, 0);
    } finally {
      if (node) await kill9(node);
      removeDataDir(dir);
    }
  });
});
