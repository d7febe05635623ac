/**
 * The cgroup drivers' file protocols. v2 runs against a fake tree (a temp dir with the files a
 * kernel would have); v1 against the machine's real hierarchies when they are writable.
 */
import assert from "node:assert/strict";
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CgroupV2Driver } from "../../src/runtime/cgroup/cgroup-v2.js";
import { detectCgroups, parseMountinfo } from "../../src/runtime/cgroup/detect.js";

const HYBRID = `
24 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
28 24 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
29 24 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
30 24 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
`;
const PURE_V2 = `
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;

describe("cgroup detection", () => {
  it("parses v1 hierarchies (co-mounted cpu,cpuacct) and a v2 mount from mountinfo", () => {
    assert.deepEqual(parseMountinfo(HYBRID), {
      v1: { cpu: "/sys/fs/cgroup/cpu,cpuacct", cpuacct: "/sys/fs/cgroup/cpu,cpuacct", memory: "/sys/fs/cgroup/memory", pids: "/sys/fs/cgroup/pids" },
      v2: "/sys/fs/cgroup/unified",
    });
    assert.deepEqual(parseMountinfo(PURE_V2), { v1: {}, v2: "/sys/fs/cgroup" });
    assert.deepEqual(parseMountinfo("garbage\n\n"), { v1: {} });
  });

  it("picks v2 on a pure-v2 host and none (with the reason) when nothing is usable", async () => {
    const root = await mkdtemp(join(tmpdir(), "fake-cgroup-"));
    try {
      await writeFile(join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n");
      await writeFile(join(root, "cgroup.subtree_control"), "");
      const v2 = await detectCgroups({ mountinfo: PURE_V2, v2Root: root });
      assert.equal(v2.version, "v2");
      const none = await detectCgroups({ mountinfo: "" });
      assert.equal(none.version, "none");
      assert.match(none.capabilities().missing.join(), /no cgroup v1 cpu\/memory hierarchy and no cgroup2 mount/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("cgroup v2 driver against a fake tree", () => {
  it("writes cpu.max, memory.max, memory.swap.max, pids.max; reads stats and memory.events; kills via cgroup.kill", async () => {
    const root = await mkdtemp(join(tmpdir(), "fake-cgroup-"));
    try {
      await writeFile(join(root, "cgroup.controllers"), "cpu memory pids\n");
      await writeFile(join(root, "cgroup.subtree_control"), "");
      const driver = await new CgroupV2Driver(root, "constellation").init();
      assert.deepEqual(driver.capabilities(), { cpu: true, memory: true, pids: true, missing: [] });
      const group = await driver.create("web-1", { cpuMillis: 250, memoryBytes: 64 * 2 ** 20, pids: 100 });
      const dir = join(root, "constellation", "web-1");
      const read = (f: string) => readFile(join(dir, f), "utf8");
      assert.equal(await readFile(join(root, "cgroup.subtree_control"), "utf8"), "+cpu +memory +pids");
      assert.equal(await readFile(join(root, "constellation", "cgroup.subtree_control"), "utf8"), "+cpu +memory +pids");
      assert.equal(await read("cpu.max"), "25000 100000");
      assert.equal(await read("memory.max"), String(64 * 2 ** 20));
      assert.equal(await read("memory.swap.max"), "0");
      assert.equal(await read("pids.max"), "100");
      assert.deepEqual(group.procsFiles, [join(dir, "cgroup.procs")]);

      await group.setLimits({ pids: 10 });
      assert.equal(await read("cpu.max"), "max 100000");
      assert.equal(await read("memory.max"), "max");
      assert.equal(await read("memory.swap.max"), "max");

      // What the kernel would report.
      await writeFile(join(dir, "cpu.stat"), "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n");
      await writeFile(join(dir, "memory.current"), "5242880\n");
      await writeFile(join(dir, "memory.peak"), "7340032\n");
      await writeFile(join(dir, "pids.current"), "3\n");
      await writeFile(join(dir, "memory.events"), "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
      await writeFile(join(dir, "cgroup.procs"), "");
      assert.deepEqual(await group.stats(), { cpuUsageUsec: 1234567, memoryBytes: 5242880, memoryPeakBytes: 7340032, pids: 3, oomKills: 1 });
      await group.killAll("SIGKILL");
      assert.equal(await read("cgroup.kill"), "1");
      assert.ok(await driver.open("web-1"));
      assert.equal(await driver.open("nope"), undefined);
      // A real cgroup directory is removable when empty; the fake one still holds files.
      await rm(dir, { recursive: true });
      await group.destroy();
      await assert.rejects(access(dir));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("a node's parent (constellation/<node>): controllers enabled at each level; groups() lists the node's groups only", async () => {
    const root = await mkdtemp(join(tmpdir(), "fake-cgroup-"));
    try {
      await writeFile(join(root, "cgroup.controllers"), "cpu memory pids\n");
      await writeFile(join(root, "cgroup.subtree_control"), "");
      const a = await new CgroupV2Driver(root, "constellation/aaaaaaaaaaaa").init();
      const b = await new CgroupV2Driver(root, "constellation/bbbbbbbbbbbb").init();
      await a.create("web", { pids: 10 });
      await b.create("web", { pids: 20 });
      for (const level of ["", "constellation", "constellation/aaaaaaaaaaaa"]) {
        assert.equal(await readFile(join(root, level, "cgroup.subtree_control"), "utf8"), "+cpu +memory +pids", level);
      }
      assert.equal(await readFile(join(root, "constellation", "aaaaaaaaaaaa", "web", "pids.max"), "utf8"), "10");
      assert.equal(await readFile(join(root, "constellation", "bbbbbbbbbbbb", "web", "pids.max"), "utf8"), "20", "two nodes' stars of one name are two groups");
      assert.deepEqual(await a.groups(), ["web"]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("limits one thread's CPU with a threaded child of its process's group (cgroup.type, +cpu, cpu.max, cgroup.threads)", async () => {
    const root = await mkdtemp(join(tmpdir(), "fake-cgroup-"));
    try {
      await writeFile(join(root, "cgroup.controllers"), "cpu memory pids\n");
      await writeFile(join(root, "cgroup.subtree_control"), "");
      const driver = await new CgroupV2Driver(root, "constellation").init();
      // The owner: a process's group made the usual way (memory and pids are domain controllers).
      const host = await driver.create("isolate-host", { memoryBytes: 2 ** 30, pids: 4096 });
      assert.deepEqual(host.procsFiles, [join(root, "constellation", "isolate-host", "cgroup.procs")]);
      const thread = await driver.threadGroup("isolate-host", "spin", 250);
      assert.ok(thread);
      const dir = join(root, "constellation", "isolate-host", "spin");
      assert.equal(thread.dir, dir);
      assert.equal(await readFile(join(dir, "cgroup.type"), "utf8"), "threaded");
      // Only the threaded cpu controller is enabled below the owner (it keeps its process).
      assert.equal(await readFile(join(root, "constellation", "isolate-host", "cgroup.subtree_control"), "utf8"), "+cpu");
      assert.equal(await readFile(join(dir, "cpu.max"), "utf8"), "25000 100000");
      await thread.addThread(4242);
      assert.equal(await readFile(join(dir, "cgroup.threads"), "utf8"), "4242");
      await rm(dir, { recursive: true }); // a real group is removable once its thread is gone
      await thread.destroy();
      await assert.rejects(access(dir));
      // Without the cpu controller there is nothing to limit a thread with.
      const noCpu = join(root, "nocpu");
      await mkdir(noCpu);
      await writeFile(join(noCpu, "cgroup.controllers"), "memory pids\n");
      await writeFile(join(noCpu, "cgroup.subtree_control"), "");
      assert.equal(await (await new CgroupV2Driver(noCpu).init()).threadGroup("isolate-host", "spin", 250), undefined);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("reports missing controllers instead of silently not limiting", async () => {
    const root = await mkdtemp(join(tmpdir(), "fake-cgroup-"));
    try {
      await mkdir(root, { recursive: true });
      await writeFile(join(root, "cgroup.controllers"), "memory\n");
      const driver = await new CgroupV2Driver(root).init();
      const caps = driver.capabilities();
      assert.equal(caps.cpu, false);
      assert.equal(caps.memory, true);
      assert.match(caps.missing.join(), /the cpu controller is not available/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
