/**
 * Recovery from facts (issue 9): a deleted runtime.db used to run every star twice (each group
 * held the old and a new copy, and uids were handed out again); now `up` rebuilds from what
 * runs in the node's groups. And processes no star accounts for (orphans) are ended, at
 * start-up and while the node runs, each with an event.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { connect } from "../../src/index.js";
import { alive, initsAmong, nodeGroups, nodeIdOf, starCgroupDir, uidOf } from "../helpers/cgroups.js";
import { type UpFixture, kill9, up, upWithClient } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

/** A process put into group `group` of the node (in every hierarchy), as a stray would be. */
function stray(dataDir: string, group: string): number {
  const child = spawn("sleep", ["600"], { stdio: "ignore", detached: true });
  child.unref();
  const id = nodeIdOf(dataDir);
  for (const h of ["pids", "memory", "cpu", "cpuacct", "cpu,cpuacct"]) {
    const dir = join("/sys/fs/cgroup", h, "constellation", id, "process", group);
    if (!existsSync(join("/sys/fs/cgroup", h, "cgroup.procs"))) continue; // not a hierarchy here
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "cgroup.procs"), String(child.pid));
  }
  return child.pid!;
}

async function restart(f: UpFixture): Promise<void> {
  await kill9(f.node);
  f.sdk.close();
  f.node = await up(f.node.dataDir);
  f.sdk = connect({ dataDir: f.node.dataDir });
}

describe("a lost runtime.db, and orphans", { skip, concurrency: false }, () => {
  const fixtures: UpFixture[] = [];
  after(async () => {
    for (const f of fixtures) await f.close();
  });

  it("deleted runtime.db: each running star is taken back once, with its pid and user; nothing runs twice; new stars get new users", async () => {
    const f = await upWithClient("constellation-rtlost-");
    fixtures.push(f);
    // A stopped one (made first: the users handed out after it are the running stars'), whose files (its work dir) are its user's.
    const resting = await f.sdk.create({ name: "resting", command: ["sh", "-c", "echo run >> runs.txt; cat runs.txt; sleep 600"] });
    const restingUid = uidOf((await resting.wait({ for: "running" })).status!.pid!);
    // Its first run's line in its log before it stops (a stop right after "running" could end
    // the shell before its `cat`, on a loaded machine).
    await waitFor("its first run's line", async () => {
      for await (const l of resting.logs()) if (l.line === "run") return true;
      return undefined;
    });
    await resting.stop();
    const names = ["alpha", "beta", "gamma"];
    const before = new Map<string, { pid: number; uid: number }>();
    for (const name of names) {
      const star = await f.sdk.create({ name, command: ["sleep", "600"] });
      const info = await star.wait({ for: "running" });
      const pid = info.status!.pid!;
      before.set(name, { pid, uid: uidOf(pid)! });
    }
    await kill9(f.node);
    for (const file of ["runtime.db", "runtime.db-wal", "runtime.db-shm"]) rmSync(join(f.node.dataDir, "runtime", file), { force: true });
    await restart(f);

    for (const name of names) {
      const info = await f.sdk.star(name).info();
      assert.equal(info.status?.state, "running", name);
      assert.equal(info.status?.pid, before.get(name)!.pid, `${name}: the same process`);
      assert.equal(uidOf(before.get(name)!.pid), before.get(name)!.uid, `${name}: its own user still`);
    }
    const groups = nodeGroups(f.node.dataDir);
    for (const name of names) assert.equal(initsAmong(groups.get(name) ?? []).length, 1, `${name}: one copy`);
    const events = await f.sdk.events({ limit: 500 });
    assert.equal(events.filter((e) => e.kind === "star.reattached").length, 3);

    // A new star made first gets none of their users, not even the stopped star's; and the
    // stopped star starts again as the user its files have: its work dir is still its own.
    const early = await f.sdk.create({ name: "early", command: ["sleep", "600"] });
    assert.notEqual(uidOf((await early.wait({ for: "running" })).status!.pid!), restingUid, "a new star got a stopped star's user");
    await f.sdk.star("resting").start();
    const again = (await f.sdk.star("resting").wait({ for: "running" })).status!.pid!;
    assert.equal(uidOf(again), restingUid);
    await waitFor("its second run wrote beside its first", async () => {
      const out: string[] = [];
      for await (const l of f.sdk.star("resting").logs()) out.push(l.line);
      return out.filter((l) => l === "run").length === 3 ? true : undefined; // run; run, run
    });
    // A new star gets a user no star of the node has.
    const fresh = await f.sdk.create({ name: "fresh", command: ["sleep", "600"] });
    const freshPid = (await fresh.wait({ for: "running" })).status!.pid!;
    assert.ok(![...before.values()].some((b) => b.uid === uidOf(freshPid)), "a user handed out again");
    // Taken-back stars are followed as any: rm -f ends them and their group.
    await f.sdk.star("alpha").remove({ force: true });
    await waitFor("alpha and its group gone", () => (!alive(before.get("alpha")!.pid) && !starCgroupDir(f.node.dataDir, "alpha") ? true : undefined));
    // And they survive another restart (they have records again).
    await restart(f);
    assert.equal((await f.sdk.star("beta").info()).status?.pid, before.get("beta")!.pid);
  });

  it("orphans: a group no star has and a stray beside a star's run are ended at start-up and while the node runs; the star goes on", async () => {
    const f = await upWithClient("constellation-orphans-");
    fixtures.push(f);
    const star = await f.sdk.create({ name: "host", command: ["sleep", "600"] });
    const pid = (await star.wait({ for: "running" })).status!.pid!;

    // A star with a pid namespace of its own below its own (an unconfined star's sandbox): its
    // processes there are its own, not strays.
    const nested = await f.sdk.create({ name: "nested", seccomp: "unconfined", command: ["sh", "-c", "unshare -Urpf sleep 1000 & sleep 1000"] });
    await nested.wait({ for: "running" });
    const deep = await waitFor("the nested namespace's process", () =>
      (nodeGroups(f.node.dataDir).get("nested") ?? []).find((p) => {
        try {
          return (/^NSpid:\s*(.*)$/m.exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1] ?? "").trim().split(/\s+/).length === 3;
        } catch {
          return false;
        }
      }),
    );

    // While the node runs (found within its check interval, 10 s).
    const lone = stray(f.node.dataDir, "nobody-s");
    const beside = stray(f.node.dataDir, "host");
    await waitFor("the orphans ended", () => (!alive(lone) && !alive(beside) ? true : undefined), { timeoutMs: 25_000 });
    await waitFor("its group removed", () => (starCgroupDir(f.node.dataDir, "nobody-s") === undefined ? true : undefined));
    assert.ok(alive(pid), "the star itself goes on");
    assert.ok(alive(deep), "a process in a star's nested pid namespace is the star's own");
    const events = await f.sdk.events({ limit: 500 });
    assert.ok(events.some((e) => e.kind === "node.orphans-ended" && e.message.includes("which no star of this node has")), JSON.stringify(events.map((e) => e.message)));
    assert.ok(events.some((e) => e.kind === "node.orphans-ended" && e.star === "host"));

    // At start-up: found before the node serves.
    await kill9(f.node);
    const early = stray(f.node.dataDir, "before-up");
    await restart(f);
    await waitFor("the orphan ended at start-up", () => (!alive(early) ? true : undefined), { timeoutMs: 2000 });
    assert.ok(alive(pid));
    assert.equal((await f.sdk.star("host").info()).status?.pid, pid);
  });
});
