/**
 * Recovery: the agent hosting the runtime is killed with SIGKILL and a new one takes over the
 * node. Running stars keep running and are re-attached (same process, state, stats, logs go on),
 * a star that ended meanwhile is reported with its exit code, a restart policy is applied to a
 * star that failed while nobody watched, and nothing is started twice.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { chmod, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { Sqlite } from "../../src/store/sqlite/driver.js";
import { ProcessRuntime } from "../../src/runtime/process/process-runtime.js";
import { waitFor } from "../helpers/wait.js";
import { starCgroupDir } from "../helpers/cgroups.js";
import { testDir } from "../helpers/dirs.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root (real cgroups and namespaces)" : false;
const AGENT = fileURLToPath(new URL("./agent-child.js", import.meta.url));

describe("process runtime recovery after the agent is killed", { skip }, () => {
  let dir: string | undefined;
  let rt: ProcessRuntime | undefined;
  after(async () => {
    for (const s of rt?.list() ?? []) await rt!.remove(s.id).catch(() => undefined);
    await rt?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("re-attaches running stars, reports ended ones, restarts by policy, duplicates nothing", async () => {
    dir = await testDir("constellation-recover-");
    await chmod(dir, 0o755);
    const data = join(dir, "data");
    const stars = {
      ticker: { name: "ticker", command: ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done"], ram_mb: 32 },
      quitter: { name: "quitter", command: ["sh", "-c", "echo bye; sleep 0.5; exit 7"] },
      phoenix: { name: "phoenix", command: ["sh", "-c", "echo rising; sleep 0.5; exit 1"], restart: "on-failure", backoff_ms: 10 },
    };
    const agent = spawn(process.execPath, [AGENT, data, JSON.stringify(stars)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    agent.stdout.on("data", (d: Buffer) => (out += d.toString()));
    await waitFor("the first agent to start its stars", () => out.includes("\nready\n") || undefined, { timeoutMs: 20_000 });
    const before = JSON.parse(out.split("\n")[0]!) as Array<{ id: string; pid: number }>;
    const tickerPid = before.find((s) => s.id === "ticker")!.pid;
    const gone = new Promise((resolve) => agent.once("exit", resolve));
    agent.kill("SIGKILL");
    await gone;
    // Both short stars end while no agent runs.
    await waitFor("quitter and phoenix to end without an agent", () =>
      existsSync(join(data, "stars", "quitter", "end")) && existsSync(join(data, "stars", "phoenix", "end")) ? true : undefined,
    );
    const ticksAtTakeover = (await readFile(join(data, "stars", "ticker", "stdout.log"), "utf8")).split("\n").length;

    rt = await ProcessRuntime.create({ dataDir: data });
    const ticker = rt.status("ticker")!;
    assert.equal(ticker.state, "running");
    assert.equal(ticker.pid, tickerPid, "the same process, re-attached");
    assert.ok((await rt.stats("ticker")).memoryBytes > 0, "stats continue from its cgroup");
    const quitter = await rt.wait("quitter");
    assert.equal(quitter.state, "failed");
    assert.equal(quitter.exitCode, 7);
    await waitFor("phoenix to be restarted by its policy", () => (rt!.status("phoenix")!.restarts >= 1 ? true : undefined));

    // Logs go on, and the star was not started a second time.
    await waitFor("the ticker's log to grow", async () => {
      const lines: string[] = [];
      for await (const l of rt!.logs("ticker")) lines.push(l.line);
      return lines.length > ticksAtTakeover + 5 ? true : undefined;
    });
    const all: string[] = [];
    for await (const l of rt.logs("ticker")) all.push(l.line);
    const numbers = all.map((l) => Number(l.split(" ")[1]));
    assert.deepEqual(numbers, numbers.map((_, i) => i + 1), "one ticking program, counting on without restarting");

    const stopped = await rt.stop("ticker", { graceMs: 2000 });
    assert.equal(stopped.state, "stopped");
    assert.equal(existsSync(`/proc/${tickerPid}`), false);
  });
});

describe("process runtime recovery of stars an older agent recorded in state.json", { skip }, () => {
  it("takes them into runtime.db (re-attached, not left unwatched) and deletes the file", async () => {
    const dir = await testDir("constellation-legacy-");
    await chmod(dir, 0o755);
    const data = join(dir, "data");
    try {
      const first = await ProcessRuntime.create({ dataDir: data });
      await first.start("oldie", { name: "oldie", command: ["sleep", "60"], env: { SECRET: "s3" } });
      const pid = first.status("oldie")!.pid!;
      await first.close();
      // What the agent before runtime.db left: the row as a file of its own, no row.
      const db = new Sqlite(join(data, "runtime.db"));
      const row = db.prepare("SELECT state FROM stars WHERE id = 'oldie'").get() as { state: string };
      db.prepare("DELETE FROM stars").run();
      db.close();
      const file = join(data, "stars", "oldie", "state.json");
      await writeFile(file, row.state, { mode: 0o600 });

      const rt = await ProcessRuntime.create({ dataDir: data });
      try {
        const s = rt.status("oldie");
        assert.equal(s?.state, "running");
        assert.equal(s?.pid, pid, "the same process, re-attached");
        assert.equal(existsSync(file), false, "the file (with the star's env) is gone");
        await rt.remove("oldie");
        assert.equal(existsSync(`/proc/${pid}`), false);
      } finally {
        await rt.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("process runtime recovery of a star caught mid-start (issue 9, break 4)", { skip }, () => {
  it("a star recorded as starting, with no pids, whose init runs is taken back, not killed; one that never started is started", async () => {
    const dir = await testDir("constellation-midstart-");
    await chmod(dir, 0o755);
    const data = join(dir, "data");
    try {
      // An agent that made the star's cgroup and started its program, then died before it
      // recorded the program's pids ("midway"); and one that died before the launch ("unborn").
      const first = await ProcessRuntime.create({ dataDir: data });
      await first.start("midway", { name: "midway", command: ["sleep", "60"] });
      await first.start("unborn", { name: "unborn", command: ["sleep", "60"] });
      const pid = first.status("midway")!.pid!;
      const unbornPid = first.status("unborn")!.pid!;
      await first.close();
      process.kill(unbornPid, "SIGKILL"); // its program never ran, as far as anyone can tell
      await waitFor("the unborn star's group to empty", () => (readFileSync(join(starCgroupDir(data, "unborn")!, "cgroup.procs"), "utf8").trim() === "" ? true : undefined));
      const db = new Sqlite(join(data, "runtime.db"));
      for (const id of ["midway", "unborn"]) {
        const row = db.prepare("SELECT state FROM stars WHERE id = ?").get(id) as { state: string };
        const saved = JSON.parse(row.state) as { status: { state: string }; run?: unknown };
        saved.status.state = "starting";
        delete saved.run;
        db.prepare("UPDATE stars SET state = ? WHERE id = ?").run(JSON.stringify(saved), id);
      }
      db.close();

      const rt = await ProcessRuntime.create({ dataDir: data });
      try {
        const s = rt.status("midway")!;
        assert.equal(s.state, "running", "re-attached, not killed");
        assert.equal(s.pid, pid, "the same program");
        assert.deepEqual(await rt.orphans(), [], "nothing runs unwatched");
        const started = await waitFor("the unborn star to run", () => (rt.status("unborn")?.state === "running" ? rt.status("unborn") : undefined));
        assert.notEqual(started!.pid, unbornPid);
        assert.equal(started!.restarts, 0, "its start, finished: not a restart");
        // Followed as any star: it ends when stopped, and its group goes with it.
        await rt.remove("midway");
        await rt.remove("unborn");
        assert.equal(existsSync(`/proc/${pid}`), false);
        assert.equal(starCgroupDir(data, "midway"), undefined);
      } finally {
        await rt.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
