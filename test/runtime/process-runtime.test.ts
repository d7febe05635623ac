/**
 * The process runtime on the real kernel: real cgroups, real namespaces, real processes.
 * CI runs as root on Linux; elsewhere these tests are skipped with the reason.
 */
import assert from "node:assert/strict";
import { chmod, mkdir, readdir, rm, stat, writeFile } from "node:fs/promises";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  CapacityExceededError,
  InvalidSpecError,
  ScriptError,
  StarExistsError,
  StartFailedError,
} from "../../src/model/errors.js";
import { ProcessRuntime } from "../../src/runtime/process/process-runtime.js";
import { DEFAULT_NODE_LIMITS, SPEC_SIZES } from "../../src/model/spec.js";
import type { LogLine, StarStatus } from "../../src/model/status.js";
import { waitFor } from "../helpers/wait.js";
import { starCgroupFile } from "../helpers/cgroups.js";
import { testDir } from "../helpers/dirs.js";

/** Our launcher processes: `star-shim -Z` children of this process. */
function launcherPids(): number[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
        const stat = readFileSync(`/proc/${d}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        return cmd[0]?.endsWith("star-shim") === true && cmd[1] === "-Z" && ppid === process.pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root (real cgroups and namespaces)" : false;

describe("process runtime (real cgroups and namespaces)", { skip }, () => {
  let dir: string;
  let rt: ProcessRuntime;
  let n = 0;
  const id = (what: string) => `${what}-${process.pid % 10000}-${n++}`;
  const script = async (name: string, code: string) => {
    const path = join(dir, "scripts", name);
    await writeFile(path, code);
    await chmod(path, 0o644);
    return path;
  };
  const lines = async (star: string): Promise<string[]> => {
    const out: LogLine[] = [];
    for await (const l of rt.logs(star)) out.push(l);
    return out.map((l) => l.line);
  };

  before(async () => {
    // Not under /tmp: every star gets its own private /tmp.
    dir = await testDir("constellation-rt-");
    await chmod(dir, 0o755);
    await mkdir(join(dir, "scripts"), { mode: 0o755 });
    rt = await ProcessRuntime.create({ dataDir: join(dir, "data") });
  });
  after(async () => {
    for (const s of rt?.list() ?? []) await rt.remove(s.id).catch(() => undefined);
    await rt?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("isolates: own hostname, pid namespace, private /tmp, unprivileged user, no view of host processes", async () => {
    const star = id("iso");
    await rt.start(star, {
      name: "iso-star",
      command: [
        "sh",
        "-c",
        'echo "host=$(hostname) uid=$(id -u) pid=$$ nnp=$(grep NoNewPrivs /proc/self/status | cut -f2)"; ' +
          'echo "procs=$(ls /proc | grep -c "^[0-9]")"; touch /tmp/mine; echo "tmp=$(ls /tmp)"; ' +
          `kill -0 ${process.pid} 2>/dev/null && echo "sees-agent" || echo "agent-invisible"`,
      ],
    });
    const end = await rt.wait(star);
    assert.equal(end.state, "exited", JSON.stringify(end));
    const out = await lines(star);
    const m = /^host=iso-star uid=(\d+) pid=2 nnp=1$/.exec(out[0] ?? "");
    assert.ok(m, out[0]);
    assert.ok(Number(m[1]) >= 2_000_000, "its own unprivileged user");
    const procs = Number(out[1]!.split("=")[1]);
    assert.ok(procs <= 5, `the star sees ${procs} processes, only its own`);
    assert.equal(out[2], "tmp=mine");
    assert.equal(out[3], "agent-invisible");
  });

  it("finds programs in the star's PATH; runs a script without #! through /bin/sh, even with 9,000 arguments", async () => {
    const plain = await script("no-shebang.sh", 'echo "args=$# first=$1 last=$(eval echo \\${$#})"\n');
    await chmod(plain, 0o755);
    const many = Array.from({ length: 9000 }, (_, i) => String(i + 1));
    const star = id("nosb");
    await rt.start(star, { name: "nosb", command: [plain, ...many] });
    assert.equal((await rt.wait(star)).exitCode, 0);
    assert.deepEqual(await lines(star), ["args=9000 first=1 last=9000"]);
    // A bare name is looked up in the PATH the star gets (its env), as execvp would.
    const bin = join(dir, "bin");
    await mkdir(bin, { recursive: true, mode: 0o755 });
    await writeFile(join(bin, "greet"), "#!/bin/sh\necho hello from PATH\n", { mode: 0o755 });
    const named = id("path");
    await rt.start(named, { name: "path", command: ["greet"], env: { PATH: `/nowhere:${bin}` } });
    assert.equal((await rt.wait(named)).exitCode, 0);
    assert.deepEqual(await lines(named), ["hello from PATH"]);
  });

  it("stars run as different users and cannot touch each other's files, /dev/shm or state", async () => {
    const a = id("uida");
    await rt.start(a, { name: "uida", command: ["sh", "-c", "echo secret > /tmp/mine; touch /dev/shm/a-was-here; id -u; sleep 30"], env: { TOKEN: "hunter2" } });
    await waitFor("a to write", async () => ((await lines(a)).length > 0 ? true : undefined));
    const victim = join(dir, "data", "stars", a);
    const b = id("uidb");
    await rt.start(b, {
      name: "uidb",
      command: [
        "sh",
        "-c",
        `id -u; cat ${victim}/tmp/mine 2>/dev/null || echo no-read; touch ${victim}/tmp/planted 2>/dev/null || echo no-write; ` +
          `cat ${join(dir, "data", "runtime.db")} 2>/dev/null | grep -c hunter2 || echo no-state; ls /dev/shm | grep -c a-was-here || true`,
      ],
    });
    await rt.wait(b);
    const [uidA] = await lines(a);
    const [uidB, ...rest] = await lines(b);
    assert.notEqual(uidA, uidB);
    // No read or write of a's /tmp, no secret from a's state (grep counts 0), no a's /dev/shm file.
    assert.deepEqual(rest, ["no-read", "no-write", "0", "no-state", "0"]);
    await rt.stop(a, { graceMs: 0 });
  });

  it("a star over its memory limit ends oom_killed", async () => {
    const star = id("oom");
    await rt.start(star, { name: "oom", command: [process.execPath, "-e", "const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));"], ram_mb: 64 });
    const end = await rt.wait(star);
    assert.equal(end.state, "oom_killed");
    assert.equal(end.signal, "SIGKILL");
    assert.match(end.reason ?? "", /over its memory limit/);
  });

  it("a busy loop at cpu_percent 25 uses 20-30 % of a core over 3 s (cpuacct)", async () => {
    const star = id("cpu");
    await rt.start(star, { name: "cpu", command: ["sh", "-c", "while :; do :; done"], cpu_percent: 25 });
    const a = await rt.stats(star);
    const t0 = performance.now();
    await waitFor("3 s of CPU sampling", () => performance.now() - t0 >= 3000 || undefined, { intervalMs: 100 });
    const b = await rt.stats(star);
    const elapsedUs = (performance.now() - t0) * 1000;
    const share = (b.cpuUsageUsec - a.cpuUsageUsec) / elapsedUs;
    await rt.stop(star, { graceMs: 0 });
    assert.ok(share >= 0.2 && share <= 0.3, `used ${(share * 100).toFixed(1)} % of a core`);
  });

  it("a fork bomb is contained by the pids limit and the host keeps working", async () => {
    const star = id("bomb");
    await rt.start(star, { name: "bomb", command: ["sh", "-c", "b() { b | b & }; b; sleep 2"], pids: 64, ram_mb: 256 });
    // The kernel's own counters say it (sampling the count raced the bomb's rise and fall): it
    // refused forks past the limit (pids.events), and the most the group ever held (pids.peak,
    // where the kernel keeps it) is the limit.
    await waitFor("the kernel to refuse forks at the limit", () => {
      const events = starCgroupFile(join(dir, "data"), star, "pids", "pids.events");
      return Number(/max (\d+)/.exec(events)?.[1] ?? 0) > 0 || undefined;
    });
    const peak = (() => {
      try {
        return Number(starCgroupFile(join(dir, "data"), star, "pids", "pids.peak"));
      } catch {
        return undefined; // older kernels keep no peak
      }
    })();
    if (peak !== undefined) assert.ok(peak <= 64, `at most 64 processes, the kernel saw ${peak}`);
    // The host still forks and runs programs.
    const probe = id("probe");
    await rt.start(probe, { name: "probe", command: ["echo", "host ok"] });
    assert.equal((await rt.wait(probe)).state, "exited");
    const stopped = await rt.stop(star, { graceMs: 0 });
    assert.equal(stopped.state, "stopped");
    assert.deepEqual(await waitFor("the bomb's cgroup to be gone", async () => ((await rt.stats(star)).pids === 0 ? true : undefined)), true);
  });

  it("restarts on failure with exponential backoff and gives up at the restart cap", async () => {
    const star = id("crash");
    const starts: number[] = [];
    const off = rt.onChange((s) => s.id === star && s.state === "running" && starts.push(Date.now()));
    await rt.start(star, { name: "crash", command: ["sh", "-c", "exit 3"], restart: "on-failure", backoff_ms: 100, max_restarts: 3, restart_window_s: 60 });
    const end = await rt.wait(star);
    off();
    assert.equal(end.state, "failed");
    assert.equal(end.restarts, 3);
    assert.equal(end.exitCode, 3);
    assert.match(end.reason ?? "", /exited with code 3; restarted 3 times within 60 s/);
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    assert.equal(gaps.length, 3);
    assert.ok(gaps[0]! >= 100 && gaps[1]! >= 200 && gaps[2]! >= 400, `backoff gaps ${gaps.join(", ")} ms`);
  });

  it("stops gracefully: SIGTERM reaches the program; a program that ignores it is killed after the grace", async () => {
    const polite = id("polite");
    await rt.start(polite, { name: "polite", command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done"] });
    await waitFor("polite to be ready", async () => (await lines(polite)).includes("ready") || undefined);
    const p = await rt.stop(polite, { graceMs: 5000 });
    assert.equal(p.state, "stopped");
    assert.equal(p.exitCode, 0);
    assert.ok((await lines(polite)).includes("got TERM"));

    const stubborn = id("stubborn");
    await rt.start(stubborn, { name: "stubborn", command: ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"] });
    await waitFor("stubborn to be ready", async () => (await lines(stubborn)).includes("ready") || undefined);
    const t0 = Date.now();
    const s = await rt.stop(stubborn, { graceMs: 300 });
    assert.equal(s.state, "stopped");
    assert.equal(s.signal, "SIGKILL");
    assert.ok(Date.now() - t0 >= 300, "waited for the grace period");
  });

  it("runs .ts and .mjs scripts with env and args; logs tail and follow", async () => {
    const ts = await script("hello.ts", 'const who: string = process.env.WHO ?? "nobody";\nconsole.log(`hello ${who} ${process.argv[2]}`);\nconsole.error("to stderr");\n');
    const star = id("ts");
    await rt.start(star, { name: "ts", script: ts, env: { WHO: "world" }, args: ["!"] });
    assert.equal((await rt.wait(star)).state, "exited");
    const all: LogLine[] = [];
    for await (const l of rt.logs(star)) all.push({ stream: l.stream, line: l.line });
    assert.deepEqual(all, [
      { stream: "stdout", line: "hello world !" },
      { stream: "stderr", line: "to stderr" },
    ]);

    const ticker = await script("ticker.mjs", "let i = 0; const t = setInterval(() => { console.log(`tick ${++i}`); if (i === 5) clearInterval(t); }, 30);\n");
    const follow = id("follow");
    await rt.start(follow, { name: "follow", script: ticker });
    const seen: string[] = [];
    for await (const l of rt.logs(follow, { follow: true })) seen.push(l.line);
    assert.deepEqual(seen, ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5"]);
    const tail: string[] = [];
    for await (const l of rt.logs(follow, { tail: 2 })) tail.push(l.line);
    assert.deepEqual(tail, ["tick 4", "tick 5"]);
  });

  it("every line has the time it was read; since skips older ones; a run's last line without its end is ended before the next run's", async () => {
    const star = id("stamped");
    const t0 = Date.now();
    await rt.start(star, { name: "stamped", command: ["sh", "-c", "echo one; printf partial; exit 1"], restart: "on-failure", backoff_ms: 20, max_restarts: 1 });
    assert.equal((await rt.wait(star)).restarts, 1);
    const t1 = Date.now();
    const read = async (since?: number) => {
      const out: LogLine[] = [];
      for await (const l of rt.logs(star, since === undefined ? {} : { since })) out.push(l);
      return out;
    };
    const all = await read();
    assert.deepEqual(all.map((l) => l.line), ["one", "partial", "one"]);
    for (const l of all) {
      const at = Date.parse(l.time ?? "");
      assert.ok(at >= t0 - 5 && at <= t1 + 5, `${l.time} within the run`);
    }
    assert.deepEqual(await read(t1 + 1000), []);
    assert.deepEqual((await read(Date.parse(all[2]!.time!))).map((l) => l.line), ["one"], "the second run's line only (its first came 20 ms later)");
    await rt.remove(star);
  });

  it("rotates logs by size and caps what is kept; reading and following work across rotations", async () => {
    const star = id("chatty");
    // 4,000 lines of 100 bytes (400 kB) into 20 kB files, 3 kept per stream.
    await rt.start(star, {
      name: "chatty",
      command: ["sh", "-c", 'i=0; while [ $i -lt 4000 ]; do i=$((i+1)); printf "%-99s\\n" "line $i"; done'],
      log_max_mb: 20 / 1024,
      log_max_files: 3,
    });
    const follow: string[] = [];
    const following = (async () => {
      for await (const l of rt.logs(star, { follow: true })) follow.push(l.line.trimEnd());
    })();
    assert.equal((await rt.wait(star)).state, "exited");
    await following;
    const files = (await readdir(join(dir, "data", "stars", star))).filter((f) => f.startsWith("stdout.log"));
    assert.deepEqual(files.sort(), ["stdout.log", "stdout.log.1", "stdout.log.2"]);
    let kept = 0;
    for (const f of files) kept += (await stat(join(dir, "data", "stars", star, f))).size;
    assert.ok(kept <= 3 * (20 * 1024 + 65536), `kept ${kept} bytes`);
    const lines: string[] = [];
    for await (const l of rt.logs(star)) lines.push(l.line.trimEnd());
    assert.equal(lines.at(-1), "line 4000");
    const first = Number(lines[0]!.split(" ")[1]);
    assert.deepEqual(lines, Array.from({ length: 4000 - first + 1 }, (_, i) => `line ${first + i}`), "the newest lines, contiguous");
    // Following saw whole lines in order up to the last one. (A reader slower than two
    // rotations loses what was rotated away before it looked, as with tail -F.)
    const numbers = follow.map((l) => {
      assert.match(l, /^line \d+$/);
      return Number(l.split(" ")[1]);
    });
    const wrong = numbers.findIndex((n, i) => i > 0 && n <= numbers[i - 1]!);
    assert.equal(wrong, -1, `in order, no duplicates: … ${numbers.slice(Math.max(0, wrong - 5), wrong + 5).join(", ")} …`);
    assert.equal(numbers.at(-1), 4000);
  });

  it("health checks: http readiness goes up and down, failing checks kill the run and the policy restarts it", async () => {
    const port = await freePort();
    // Healthy for its first 3 checks, then answers 500 for ever.
    const server = await script(
      "flaky-server.mjs",
      'import { createServer } from "node:http";\nlet n = 0;\n' +
        "createServer((req, res) => { n++; res.statusCode = n <= 3 ? 200 : 500; res.end(); }).listen(Number(process.env.PORT), \"127.0.0.1\");\n",
    );
    const star = id("web");
    const seen: Array<[boolean, number]> = [];
    const off = rt.onChange((s) => s.id === star && seen.push([s.ready, s.restarts]));
    await rt.start(star, {
      name: "web",
      script: server,
      env: { PORT: String(port) },
      restart: "on-failure",
      backoff_ms: 50,
      max_restarts: 1,
      health: { type: "http", port, path: "/healthz", interval_ms: 100, timeout_ms: 500, failure_threshold: 2, kill_after: 3 },
    });
    assert.equal(rt.status(star)?.ready, false, "not ready before its first good check");
    await waitFor("the server to become ready", () => rt.status(star)?.ready || undefined);
    await waitFor("the run to be killed by its failing check and restarted", () => ((rt.status(star)?.restarts ?? 0) >= 1 ? true : undefined));
    const end = await rt.wait(star);
    off();
    assert.equal(end.state, "failed");
    assert.match(end.reason ?? "", /killed after 3 failed health checks \(GET \/healthz answered 500\)/);
    assert.ok(seen.some(([ready]) => ready) && seen.at(-1)?.[0] === false, "ready went up, then down");
  });

  it("health checks: exec runs inside the star (its private /tmp); tcp sees a listening port", async () => {
    const star = id("exec");
    await rt.start(star, {
      name: "exec",
      command: ["sh", "-c", "sleep 0.3; touch /tmp/ready; sleep 30"],
      health: { type: "exec", command: ["test", "-f", "/tmp/ready"], interval_ms: 100, timeout_ms: 2000, failure_threshold: 1 },
    });
    await waitFor("the exec check to pass", () => rt.status(star)?.ready || undefined);
    assert.equal(existsSync("/tmp/ready"), false, "the file is in the star's /tmp, not the host's");
    await rt.stop(star, { graceMs: 0 });

    // The probe runs in the star's cgroup, as its user, with no-new-privs; a hung probe is killed whole.
    const probe = id("probe");
    await rt.start(probe, {
      name: "probe",
      command: ["sh", "-c", "sleep 30"],
      health: {
        type: "exec",
        command: ["sh", "-c", `grep -q "constellation/[0-9a-f]*/process/${probe}$" /proc/self/cgroup && grep -q "NoNewPrivs:\t1" /proc/self/status && [ "$(id -u)" != 0 ]`],
        interval_ms: 100,
        failure_threshold: 1,
      },
    });
    await waitFor("the confined probe to pass", () => rt.status(probe)?.ready || undefined);
    await rt.stop(probe, { graceMs: 0 });
    await rt.stop(star, { graceMs: 0 });

    const port = await freePort();
    const listener = await script("listener.mjs", 'import { createServer } from "node:net";\ncreateServer().listen(Number(process.env.PORT), "127.0.0.1");\n');
    const tcp = id("tcp");
    await rt.start(tcp, { name: "tcp", script: listener, env: { PORT: String(port) }, health: { type: "tcp", port, interval_ms: 100 } });
    await waitFor("the tcp check to pass", () => rt.status(tcp)?.ready || undefined);
    await rt.stop(tcp, { graceMs: 1000 });
    await assert.rejects(
      rt.start(id("x"), { name: "x", command: ["true"], network: "none", health: { type: "tcp", port } }),
      /http and tcp checks need network host/,
    );
  });

  it("disk_mb: writing past the limit fails inside the star with ENOSPC, in work/ and /tmp alike", async () => {
    const star = id("disk");
    await rt.start(star, {
      name: "disk",
      command: [
        "sh",
        "-c",
        "dd if=/dev/zero of=ok bs=1M count=18 2>/dev/null && echo wrote-18 || echo failed-18; rm -f ok; " +
          "dd if=/dev/zero of=big bs=1M count=40 2>&1 | grep -o 'No space left on device' | head -1; rm -f big; " +
          "dd if=/dev/zero of=/tmp/big bs=1M count=40 2>&1 | grep -o 'No space left on device' | head -1",
      ],
      disk_mb: 20,
    });
    assert.equal((await rt.wait(star)).state, "exited");
    assert.deepEqual(await lines(star), ["wrote-18", "No space left on device", "No space left on device"]);
    const mnt = join(dir, "data", "stars", star, "disk");
    await rt.remove(star);
    assert.equal(existsSync(mnt), false, "the star's filesystem is gone with it");
  });

  it("disk_mb: the image's blocks are allocated before the star writes a byte (a full host cannot take them away)", async () => {
    const star = id("alloc");
    await rt.start(star, { name: "alloc", command: ["true"], disk_mb: 30 });
    assert.equal((await rt.wait(star)).state, "exited");
    const image = statSync(join(dir, "data", "stars", star, "disk.img"));
    assert.ok(image.blocks * 512 >= 30 * 2 ** 20, `${image.blocks * 512} bytes allocated of ${image.size}`);
    await rt.remove(star);
  });

  it("every one of the most env entries a spec may have reaches the program", async () => {
    const star = id("envs");
    const env = Object.fromEntries(Array.from({ length: SPEC_SIZES.envEntries }, (_, i) => [`V${i}`, String(i)]));
    await rt.start(star, { name: "envs", command: ["sh", "-c", "env | grep -c '^V[0-9]*='; echo \"$V999\""], env });
    assert.equal((await rt.wait(star)).state, "exited");
    assert.deepEqual(await lines(star), [String(SPEC_SIZES.envEntries), "999"]);
    await rt.remove(star);
  });

  it("a node default disk_mb: a star that asks for none gets a filesystem of that size", async () => {
    const limited = await ProcessRuntime.create({
      dataDir: join(dir, "data-disk"),
      capacity: { cpuCores: 2, memoryBytes: 2 ** 30, limits: { ...DEFAULT_NODE_LIMITS, defaultDiskMb: 20 } },
    });
    const star = id("nodisk");
    try {
      await limited.start(star, {
        name: "nodisk",
        command: ["sh", "-c", "dd if=/dev/zero of=big bs=1M count=40 2>&1 | grep -o 'No space left on device' | head -1"],
      });
      assert.equal((await limited.wait(star)).state, "exited");
      assert.equal(limited.status(star)?.limits.diskBytes, 20 * 2 ** 20);
      const out: string[] = [];
      for await (const l of limited.logs(star)) out.push(l.line);
      assert.deepEqual(out, ["No space left on device"]);
    } finally {
      await limited.remove(star).catch(() => undefined);
      await limited.close();
    }
  });

  it("if the node's launcher process dies, running stars go on, their end is still seen, and the next start gets a new launcher", async () => {
    const star = id("orphan");
    await rt.start(star, { name: "orphan", command: ["sh", "-c", "echo up; sleep 0.5; exit 5"] });
    const launcher = launcherPids();
    assert.equal(launcher.length, 1, "one launcher process");
    process.kill(launcher[0]!, "SIGKILL");
    const end = await rt.wait(star);
    assert.equal(end.state, "failed");
    assert.equal(end.exitCode, 5);
    const next = id("after");
    await rt.start(next, { name: "after", command: ["true"] });
    assert.equal((await rt.wait(next)).state, "exited");
    assert.notDeepEqual(launcherPids(), launcher);
  });

  it("a run whose end nobody reports (its launcher stopped) is seen over by the check of its init, and never shown running with a dead pid", async () => {
    const star = id("unheard");
    await rt.start(star, { name: "unheard", command: ["sleep", "600"] });
    const program = rt.status(star)!.pid!;
    const init = Number(readFileSync(`/proc/${program}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
    const [launcher] = launcherPids();
    process.kill(launcher!, "SIGSTOP");
    try {
      process.kill(init, "SIGKILL");
      const end = await waitFor("the run seen over", () => (rt.status(star)?.state !== "running" ? rt.status(star) : undefined), { timeoutMs: 10_000 });
      assert.equal(end!.state, "failed");
      assert.equal(end!.signal, "SIGKILL");
      assert.equal(end!.pid, undefined);
    } finally {
      process.kill(launcher!, "SIGCONT");
    }
    await rt.remove(star);
  });

  it("bad input is a clear typed error before anything starts", async () => {
    const before = rt.list().length;
    // An admin's star is told what is wrong; a star's child only that it cannot read it.
    await assert.rejects(rt.start(id("x"), { name: "x", script: join(dir, "scripts", "missing.js") }, { trusted: true }), (e: unknown) => {
      assert.ok(e instanceof ScriptError);
      assert.match(e.message, /missing\.js: no such file/);
      return true;
    });
    await assert.rejects(rt.start(id("x"), { name: "x", script: join(dir, "scripts", "missing.js") }), /missing\.js: is not a file that every user can read here/);
    const broken = await script("broken.ts", "const x: number = ;\n");
    await assert.rejects(rt.start(id("x"), { name: "x", script: broken }), /broken\.ts: cannot bundle it: \S*broken\.ts:1:19: /);
    const brokenJs = await script("broken.js", "function (\n");
    await assert.rejects(rt.start(id("x"), { name: "x", script: brokenJs }), ScriptError);
    await assert.rejects(rt.start(id("x"), { name: "x", command: ["true"], ram_mb: -1 }), InvalidSpecError);
    await assert.rejects(rt.start(id("x"), { name: "x", command: ["true"], cpu_cores: 4096 }), InvalidSpecError);
    await assert.rejects(rt.start(id("x"), { name: "x", command: ["true"], ram_gb: 100_000 }), CapacityExceededError);
    await assert.rejects(rt.start(id("x"), { name: "x", command: ["true"], bogus: 1 } as never), /bogus: unknown field bogus/);
    await assert.rejects(rt.start(id("x"), { name: "Not_A_Label", command: ["true"] }), /name must be a DNS label/);
    await assert.rejects(rt.start("Bad Id", { name: "x", command: ["true"] }), /star id must be a DNS label/);
    // A NUL byte could smuggle launcher options (e.g. a root user) into the argument stream.
    await assert.rejects(rt.start(id("x"), { name: "x", command: ["true"], env: { X: "y\u0000-u\u00000" } }), /env values must not contain NUL bytes/);
    await assert.rejects(rt.start(id("x"), { name: "x", command: ["true"], cwd: "/a\u0000-F" }), /cwd must not contain NUL bytes/);
    assert.equal(rt.list().length, before, "nothing was created");

    // A program that does not exist fails to start with the reason, and is reported failed.
    const ghost = id("ghost");
    await assert.rejects(rt.start(ghost, { name: "ghost", command: ["/no/such/program"] }), (e: unknown) => {
      assert.ok(e instanceof StartFailedError);
      assert.match(e.message, /exec \/no\/such\/program: No such file or directory/);
      return true;
    });
    const status = rt.status(ghost) as StarStatus;
    assert.equal(status.state, "failed");
    const dup = id("dup");
    await rt.start(dup, { name: "dup", command: ["true"] });
    await assert.rejects(rt.start(dup, { name: "dup", command: ["true"] }), StarExistsError);
  });
});

describe("a process runtime closed while its stars run", { skip }, () => {
  it("lets its process end: nothing it began (a watch on a star's end) is left holding it", async () => {
    const dir = await testDir("constellation-closed-");
    try {
      const runtime = new URL("../../src/runtime/process/process-runtime.js", import.meta.url).href;
      const code = `
        import { ProcessRuntime } from ${JSON.stringify(runtime)};
        const rt = await ProcessRuntime.create({ dataDir: ${JSON.stringify(join(dir, "data"))} });
        await rt.start("s", { name: "s", command: ["sleep", "600"] });
        await rt.close();
        // What the closed runtime's parts still say arrives meanwhile (its launcher's end).
        await new Promise((r) => setTimeout(r, 1500));
        console.log("closed");`;
      const { spawn } = await import("node:child_process");
      const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      const ended = new Promise<number | null>((done) => child.once("exit", done));
      await waitFor("the runtime to close", () => out.includes("closed") || undefined);
      const code_ = await Promise.race([ended, new Promise<"held">((done) => setTimeout(() => done("held"), 10_000).unref())]);
      if (code_ === "held") child.kill("SIGKILL");
      assert.equal(code_, 0, "the process ended by itself once its runtime was closed");
      // The star runs on (stars outlive the control plane); end it.
      const again = await ProcessRuntime.create({ dataDir: join(dir, "data") });
      await again.remove("s");
      await again.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
