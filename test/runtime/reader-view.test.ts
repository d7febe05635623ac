/**
 * Files as one user would find them (src/runtime/reader-view.ts): root looks up and opens a
 * star's files on its user's behalf, and must find exactly what the kernel would let that user
 * find — checked here against the kernel itself (`setpriv` to that user).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmod, mkdir, rm, symlink, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { HelperGoneError, RemoteView, configureReaderHelpers, endReaderHelpers } from "../../src/runtime/read-as/read-as.js";
import { ReaderView } from "../../src/runtime/reader-view.js";
import { testDir } from "../helpers/dirs.js";
import { waitFor } from "../helpers/wait.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;
const NOBODY = { uid: 65534, gid: 65534 };

/** Can the user itself read the file at `path`? The kernel's answer. */
function kernelReads(path: string): boolean {
  return spawnSync("setpriv", ["--reuid", String(NOBODY.uid), "--regid", String(NOBODY.gid), "--clear-groups", "cat", path]).status === 0;
}

describe("a reader's view of the files", { skip }, () => {
  let dir: string;
  before(async () => {
    dir = await testDir("constellation-reader-");
    await mkdir(join(dir, "proj", "o"), { recursive: true, mode: 0o755 });
    await writeFile(join(dir, "proj", "o", "real.js"), "ok\n", { mode: 0o644 });
    await mkdir(join(dir, "rootonly", "sub"), { recursive: true, mode: 0o755 });
    await chmod(join(dir, "rootonly"), 0o700);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("a link through a directory the user may not enter finds nothing, whether or not what it names is there", async () => {
    const o = join(dir, "proj", "o");
    await symlink("../../rootonly/sub/../../proj/o/real.js", join(o, "via-sub"));
    await symlink("../../rootonly/missing/../../proj/o/real.js", join(o, "via-missing"));
    await symlink("real.js", join(o, "plain-link"));
    const view = new ReaderView(NOBODY);
    for (const name of ["via-sub", "via-missing"]) {
      assert.equal(kernelReads(join(o, name)), false, `the kernel refuses ${name}`);
      assert.equal(await view.real(join(o, name)), undefined, name);
      assert.equal(await view.readable(join(o, name)), undefined, name);
    }
    assert.equal(kernelReads(join(o, "plain-link")), true);
    assert.equal(await view.readable(join(o, "plain-link")), join(o, "real.js"));
    // root, or a user who may pass rootonly, finds it through either link where it is there
    assert.equal(await new ReaderView({ uid: 0, gid: 0 }).real(join(o, "via-sub")), join(o, "real.js"));
  });

  it("nothing inside a refused place is looked at: not as its link's target, not through a link in it, not through /proc", async () => {
    const base = join(dir, "places");
    await mkdir(join(base, "var-home", "alice"), { recursive: true, mode: 0o755 });
    await mkdir(join(base, "opt", "tool"), { recursive: true, mode: 0o755 });
    await writeFile(join(base, "var-home", "alice", "lib.js"), "x\n", { mode: 0o644 });
    await writeFile(join(base, "opt", "tool", "x.js"), "x\n", { mode: 0o644 });
    await symlink("var-home", join(base, "home")); // a hidden /home that is a link
    await symlink("../../opt/tool", join(base, "var-home", "alice", "tool"));
    const view = new ReaderView(NOBODY, [join(base, "home")]);
    assert.equal(await view.readable(join(base, "var-home", "alice", "lib.js")), undefined, "the hidden place by its real path");
    assert.equal(await view.readable(join(base, "home", "alice", "tool", "x.js")), undefined, "a link inside the hidden place");
    assert.equal(await view.readable(join(base, "opt", "tool", "x.js")), join(base, "opt", "tool", "x.js"), "the file itself, by its own path");
    assert.equal(await view.readable("/etc/passwd"), "/etc/passwd");
    assert.equal(await view.readable(`/proc/${process.pid}/root/etc/passwd`), undefined, "no host pid probed through /proc");
    assert.equal(await view.readable("/proc/self/root/etc/passwd"), undefined);
  });

  it("opens by directory descriptors, following no link on the way", async () => {
    await symlink(join(dir, "proj", "o"), join(dir, "proj", "link-dir"));
    const view = new ReaderView(NOBODY);
    const fh = await view.open(join(dir, "proj", "o", "real.js"));
    assert.equal((await fh.readFile("utf8")), "ok\n");
    await fh.close();
    // a directory swapped for a link after the lookup: the open does not follow it
    await assert.rejects(view.open(join(dir, "proj", "link-dir", "real.js")));
    // a directory the user may not pass: refused as held
    await writeFile(join(dir, "rootonly", "sub", "f.js"), "secret\n", { mode: 0o644 });
    await assert.rejects(view.open(join(dir, "rootonly", "sub", "f.js")), /refused/);
  });

  it("each directory is looked up once per view: 20 packages searched for from 300 levels down cost no more than the tree", async () => {
    let deep = join(dir, "deep");
    for (let i = 0; i < 300; i++) deep = join(deep, "d");
    await mkdir(deep, { recursive: true, mode: 0o755 });
    const view = new ReaderView(NOBODY);
    for (let p = 0; p < 20; p++) {
      for (let d = deep; d !== "/"; d = join(d, "..")) assert.equal(await view.readable(join(d, "node_modules", `pkg-${p}`, "package.json")), undefined);
    }
    // the tree is ~305 directories deep, each with one node_modules looked for: ~610 lookups,
    // where a lookup per level per package per probe would be 300 × 20 × 2 = 12,000 and more
    assert.ok(view.lookupsMade < 1_000, `${view.lookupsMade} lookups`);
  });
});

/** A user no account has: the helper runs as it, and ACL entries name it. */
const STRANGER = { uid: 43210, gid: 43210 };
const hasAcl = spawnSync("setfacl", ["--version"]).status === 0;

describe("the view as the user itself (the reader helper, src/runtime/read-as/)", { skip }, () => {
  let dir: string;
  before(async () => {
    dir = await testDir("constellation-readas-");
    await mkdir(join(dir, "p"), { mode: 0o755 });
    await mkdir(join(dir, "shut"), { mode: 0o700 });
    await writeFile(join(dir, "shut", "in.js"), "in\n", { mode: 0o644 });
    await symlink("../shut/in.js", join(dir, "p", "through-shut"));
  });
  after(async () => {
    endReaderHelpers();
    await rm(dir, { recursive: true, force: true });
  });

  it("the kernel decides: a file its modes allow but an ACL denies the user is not found, nor read; one an ACL grants is", { skip: hasAcl ? false : "needs setfacl (Debian's acl package)" }, async () => {
    const denied = join(dir, "p", "denied.js");
    const granted = join(dir, "p", "granted.js");
    await writeFile(denied, "denied\n", { mode: 0o644 });
    await writeFile(granted, "granted\n", { mode: 0o600 });
    assert.equal(spawnSync("setfacl", ["-m", `u:${STRANGER.uid}:---`, denied]).status, 0);
    assert.equal(spawnSync("setfacl", ["-m", `u:${STRANGER.uid}:r`, granted]).status, 0);
    // Root reckoning from mode bits gets both wrong: what the helper is for.
    const byModes = new ReaderView(STRANGER);
    assert.equal(await byModes.readable(denied), denied);
    assert.equal(await byModes.readable(granted), undefined);
    const view = new RemoteView(STRANGER);
    try {
      assert.equal(await view.readable(denied), undefined);
      assert.deepEqual(await view.readFile(denied, 1000), { ok: false, why: "refused" });
      assert.equal(await view.readable(granted), granted);
      const read = await view.readFile(granted, 1000);
      assert.ok(read.ok);
      assert.equal(read.source.toString(), "granted\n");
      assert.equal(read.real, granted);
    } finally {
      view.close();
    }
    // Every user ("all", read as nobody): modes and the kernel both must allow.
    const all = new RemoteView("all");
    try {
      assert.equal(spawnSync("setfacl", ["-m", "u:nobody:---", denied]).status, 0);
      assert.deepEqual(await all.readFile(denied, 1000), { ok: false, why: "refused" });
      assert.deepEqual(await all.readFile(granted, 1000), { ok: false, why: "refused" });
      assert.equal((await all.readFile(join(dir, "shut", "..", "p", "granted.js"), 1000)).ok, false);
    } finally {
      all.close();
    }
  });

  it("answers as the in-process view does: links through a shut directory find nothing; sizes, kinds and identities", async () => {
    const view = new RemoteView(STRANGER);
    try {
      assert.equal(await view.real(join(dir, "p", "through-shut")), undefined);
      assert.deepEqual(await view.readFile(join(dir, "p", "through-shut"), 1000), { ok: false, why: "refused" });
      assert.deepEqual(await view.readFile(join(dir, "shut", "in.js"), 1000), { ok: false, why: "refused" });
      const big = join(dir, "p", "big.js");
      await writeFile(big, "x".repeat(2000), { mode: 0o644 });
      assert.deepEqual(await view.readFile(big, 1000), { ok: false, why: "too-big", size: 2000 });
      assert.deepEqual(await view.readFile(join(dir, "p"), 1000), { ok: false, why: "not-file" });
      const small = join(dir, "p", "small.js");
      await writeFile(small, "small\n", { mode: 0o644 });
      const read = await view.readFile(small, 1000);
      assert.ok(read.ok);
      const [id, none] = await view.identities([small, join(dir, "shut", "in.js")]);
      assert.deepEqual(id, read.id);
      assert.equal(none, undefined, "not the user's to see");
      assert.equal(await view.unchanged([{ path: small, ...read.id }], ""), true);
      await writeFile(small, "changed\n");
      assert.equal(await view.unchanged([{ path: small, ...read.id }], ""), false);
    } finally {
      view.close();
    }
  });

  it("a helper that ended is started again, with the views that were open", async () => {
    const view = new RemoteView(STRANGER);
    try {
      await writeFile(join(dir, "p", "again.js"), "again\n", { mode: 0o644 });
      assert.equal(await view.readable(join(dir, "p", "again.js")), join(dir, "p", "again.js"));
      const pids = () => spawnSync("pgrep", ["-n", "-u", String(STRANGER.uid)], { encoding: "utf8" }).stdout.trim().split("\n").filter(Boolean);
      assert.equal(pids().length, 1, "one helper, running as the user");
      endReaderHelpers();
      await waitFor("the helper to end", () => pids().length === 0 || undefined);
      assert.equal(await view.readable(join(dir, "p", "again.js")), join(dir, "p", "again.js"));
    } finally {
      view.close();
    }
  });

  it("a request made as an idle helper is being ended goes to the next helper, and is answered", async () => {
    const view = new RemoteView(STRANGER);
    try {
      const file = join(dir, "p", "again.js");
      assert.equal(await view.readable(file), file);
      endReaderHelpers(); // what the idle timer does
      assert.equal(await view.readable(file), file);
    } finally {
      view.close();
    }
  });

  it("a helper that stops answering is ended at its deadline; the next question starts a new one", async () => {
    configureReaderHelpers({ answerMs: 1000 });
    const view = new RemoteView(STRANGER);
    try {
      const file = join(dir, "p", "again.js");
      assert.equal(await view.readable(file), file);
      const pid = Number(spawnSync("pgrep", ["-n", "-u", String(STRANGER.uid)], { encoding: "utf8" }).stdout.trim());
      process.kill(pid, "SIGSTOP"); // as any process of that user may
      await assert.rejects(view.readable(file), (e: unknown) => e instanceof HelperGoneError && /did not answer within 1 s/.test(e.message));
      assert.equal(await view.readable(file), file, "a new helper answers");
    } finally {
      view.close();
      configureReaderHelpers({ answerMs: 20_000 });
    }
  });

  it("a tampered helper cannot hurt the node: an endless answer, nonsense, or an early end each fail the question, clearly", async () => {
    const hostile = {
      // one line that never ends (the node would buffer it all)
      flood: 'const b = Buffer.alloc(1 << 20, 97); const go = () => process.stdout.write(b, go); process.stdin.once("data", go);',
      nonsense: 'process.stdin.on("data", () => process.stdout.write("{not json\\n"));',
      quits: 'process.stdin.once("data", () => process.exit(0));',
    };
    try {
      for (const [name, code] of Object.entries(hostile)) {
        configureReaderHelpers({ code });
        const view = new RemoteView(STRANGER);
        try {
          await assert.rejects(view.readable(join(dir, "p", "again.js")), (e: unknown) => {
            assert.ok(e instanceof HelperGoneError, `${name}: ${String(e)}`);
            assert.match(e.message, { flood: /answered more than \d+ bytes at once/, nonsense: /answered what is not JSON/, quits: /ended/ }[name]!);
            return true;
          });
        } finally {
          view.close();
        }
      }
    } finally {
      configureReaderHelpers({ code: undefined });
    }
    assert.ok(process.memoryUsage().rss < 1024 * 2 ** 20, "the node did not take in the flood");
  });

  it("one build is given at most 80 MiB of files, however many it asks for at once", async () => {
    const big = join(dir, "p", "big.txt");
    await writeFile(big, "");
    await truncate(big, 16 * 2 ** 20 - 1); // sparse: no disk
    await chmod(big, 0o644);
    const view = new RemoteView(STRANGER);
    try {
      const reads = await Promise.allSettled(Array.from({ length: 8 }, () => view.readFile(big, 16 * 2 ** 20)));
      const given = reads.filter((r) => r.status === "fulfilled" && r.value.ok).length;
      assert.equal(given, 5, "five of 16 MiB fit in 80 MiB");
      for (const r of reads.filter((x) => x.status === "rejected")) assert.match(String((r as PromiseRejectedResult).reason), /more than 80 MiB/);
    } finally {
      view.close();
    }
  });
});
