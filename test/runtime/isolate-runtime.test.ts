/** The isolate runtime: worker-thread stars inside an isolated, unprivileged host process. */
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { chmod, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { LimitUnenforceableError } from "../../src/model/errors.js";
import { IsolateRuntime } from "../../src/runtime/isolate/isolate-runtime.js";
import type { LogLine } from "../../src/model/status.js";
import { waitFor } from "../helpers/wait.js";
import { testDir } from "../helpers/dirs.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

describe("isolate runtime", { skip }, () => {
  let dir: string;
  let rt: IsolateRuntime;
  const script = async (name: string, code: string) => {
    const path = join(dir, "scripts", name);
    await writeFile(path, code);
    await chmod(path, 0o644);
    return path;
  };
  const lines = async (id: string) => {
    const out: LogLine[] = [];
    for await (const l of rt.logs(id)) out.push(l);
    return out.map((l) => l.line);
  };
  before(async () => {
    dir = await testDir("constellation-iso-");
    await chmod(dir, 0o755);
    await mkdir(join(dir, "scripts"), { mode: 0o755 });
    rt = await IsolateRuntime.create({ dataDir: join(dir, "data") });
  });
  after(async () => {
    for (const s of rt?.list() ?? []) await rt.remove(s.id).catch(() => undefined);
    await rt?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("an isolate star's hostname is its name (as a process star's is), by require and by import", async () => {
    const js = await script("host.mjs", 'import os, { hostname } from "node:os";\nimport { createRequire } from "node:module";\nconsole.log(hostname(), os.hostname(), createRequire(import.meta.url)("node:os").hostname());\n');
    await rt.start("named-one", { name: "named-one", runtime: "isolate", script: js });
    assert.equal((await rt.wait("named-one")).state, "exited");
    assert.deepEqual(await lines("named-one"), ["named-one named-one named-one"]);
    await rt.remove("named-one");
  });

  it("runs a .ts script as an isolate, unprivileged and filtered (seccomp), with args, env and captured output", async () => {
    const ts = await script(
      "hi.ts",
      'import { readFileSync } from "node:fs";\nconst n: number = 2;\nconst seccomp = /Seccomp:\\s+(\\d)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1];\n' +
        'console.log(`hi ${process.argv[2]} ${process.env.WHO} uid=${process.getuid!()} n=${n} seccomp=${seccomp}`);\nconsole.error("err line");\n',
    );
    await rt.start("hi", { name: "hi", runtime: "isolate", script: ts, args: ["there"], env: { WHO: "you" }, ram_mb: 64 });
    const end = await rt.wait("hi");
    assert.equal(end.state, "exited");
    // The host runs as the last user of the node's range (node.json), which no process star gets.
    const claim = JSON.parse(readFileSync(join(dir, "data", "node.json"), "utf8")) as { uidBase: number; uidCount: number };
    assert.deepEqual(await lines("hi"), [`hi there you uid=${claim.uidBase + claim.uidCount - 1} n=2 seccomp=2`, "err line"]);
  });

  it("an isolate's script is bundled from its directory; its stack traces name the user's file and line", async () => {
    await script("helper.ts", "export const twice = (n: number): number => 2 * n;\n");
    const main = await script("uses-helper.ts", 'import { twice } from "./helper.js";\nconsole.log(`twice ${twice(21)}`);\nthrow new Error("isolate boom");\n');
    await rt.start("bundled", { name: "bundled", runtime: "isolate", script: main });
    const end = await rt.wait("bundled");
    assert.equal(end.exitCode, 1);
    const out = (await lines("bundled")).join("\n");
    assert.match(out, /^twice 42$/m);
    assert.match(out, new RegExp(`at .*uses-helper\\.ts:3:\\d+`), out);
    for await (const l of rt.logs("bundled")) assert.ok(Date.now() - Date.parse(l.time ?? "") < 60_000, `a time on every line: ${JSON.stringify(l)}`);
  });

  it("an isolate whose logs reach their size limit does not end the host or the other isolates", async () => {
    const idle = await script("idle-neighbour.mjs", "console.log('idle'); setInterval(() => {}, 1000);\n");
    await rt.start("neighbour", { name: "neighbour", script: idle });
    // It ends at once after writing: the host must still wait for the rotation it asked for.
    const chatty = await script("chatty.mjs", "for (let i = 0; i < 3000; i++) console.log('y'.repeat(1000));\nprocess.exit(0);\n");
    await rt.start("talker", { name: "talker", script: chatty, log_max_mb: 1, log_max_files: 2 });
    assert.equal((await rt.wait("talker")).state, "exited");
    assert.equal(rt.status("neighbour")?.state, "running", "the host went on");
    // Rotated (by the agent, on the host's word) and capped: 2 files of about 1 MiB, the last lines kept.
    const starDir = join(dir, "data", "stars", "talker");
    const files = readdirSync(starDir).filter((f) => f.startsWith("stdout.log")).sort();
    assert.deepEqual(files, ["stdout.log", "stdout.log.1"]);
    for (const f of files) assert.ok(statSync(join(starDir, f)).size <= 1.2 * 2 ** 20, `${f}: ${statSync(join(starDir, f)).size} bytes`);
    const tail: string[] = [];
    for await (const l of rt.logs("talker", { tail: 1 })) tail.push(l.line);
    assert.deepEqual(tail, ["y".repeat(1000)]);
    await rt.stop("neighbour");
  });

  it("an isolate over its heap limit ends oom_killed; the host and other isolates go on", async () => {
    const steady = await script("steady.mjs", "console.log('steady'); setInterval(() => {}, 1000);\n");
    await rt.start("steady", { name: "steady", script: steady, ram_mb: 32 });
    const hog = await script("hog.mjs", "const a = []; for (;;) a.push(new Array(1e5).fill(Math.random()));\n");
    await rt.start("hog", { name: "hog", script: hog, ram_mb: 32 });
    const end = await rt.wait("hog");
    assert.equal(end.state, "oom_killed");
    assert.equal(rt.status("steady")?.state, "running");
    const stats = await rt.stats("steady");
    assert.ok(stats.memoryBytes > 0 && stats.memoryBytes < 32 * 2 ** 20, `heap ${stats.memoryBytes}`);
    await rt.stop("steady");
  });

  it("restart policy with backoff and cap; graceful stop runs the star's SIGTERM handler", async () => {
    const crash = await script("crash.mjs", "console.log('boom'); process.exit(2);\n");
    await rt.start("crash", { name: "crash", script: crash, restart: "on-failure", backoff_ms: 20, max_restarts: 2 });
    const end = await rt.wait("crash");
    assert.equal(end.state, "failed");
    assert.equal(end.restarts, 2);
    assert.deepEqual(await lines("crash"), ["boom", "boom", "boom"]);

    const polite = await script("polite.mjs", "process.on('SIGTERM', () => { console.log('bye'); process.exit(0); });\nconsole.log('up');\nsetInterval(() => {}, 1000);\n");
    await rt.start("polite", { name: "polite", script: polite });
    await waitFor("polite to print", async () => (await lines("polite")).includes("up") || undefined);
    const stopped = await rt.stop("polite", { graceMs: 5000 });
    assert.equal(stopped.state, "stopped");
    assert.ok((await lines("polite")).includes("bye"));

    const stubborn = await script("stubborn.mjs", "process.on('SIGTERM', () => {});\nsetInterval(() => {}, 1000);\n");
    await rt.start("stubborn", { name: "stubborn", script: stubborn });
    const s = await rt.stop("stubborn", { graceMs: 200 });
    assert.equal(s.state, "stopped");
  });

  it("a busy isolate at cpu_percent 25 uses 20-30 % of a core over 3 s (its thread in its own cpu cgroup)", async () => {
    const spin = await script("spin.mjs", "for (;;) {}\n");
    await rt.start("spin", { name: "spin", script: spin, cpu_percent: 25 });
    const a = await rt.stats("spin");
    const t0 = performance.now();
    await waitFor("3 s of CPU sampling", () => performance.now() - t0 >= 3000 || undefined, { intervalMs: 100 });
    const b = await rt.stats("spin");
    const share = (b.cpuUsageUsec - a.cpuUsageUsec) / ((performance.now() - t0) * 1000);
    await rt.stop("spin", { graceMs: 100 });
    assert.ok(share >= 0.2 && share <= 0.3, `used ${(share * 100).toFixed(1)} % of a core`);
  });

  it("refuses what it cannot do: commands, disks, a working directory of its own", async () => {
    await assert.rejects(rt.start("c1", { name: "c1", command: ["true"] }), LimitUnenforceableError);
    const ok = await script("ok.mjs", "console.log(1);\n");
    await assert.rejects(rt.start("c3", { name: "c3", script: ok, disk_mb: 10 }), /cannot enforce disk_mb/);
    await assert.rejects(rt.start("c4", { name: "c4", script: ok, cwd: "/" }), /cwd.*isolates share their host's working directory/);
    assert.equal(rt.list().filter((s) => s.id.startsWith("c")).length, 1, "only the crash star from before");
  });
});
