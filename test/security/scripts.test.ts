/**
 * Check at create, use at start (issue 8, break 2): a script is opened once at every start and
 * the open file is what is checked and read, as the star's own user for a star's child. A
 * symlink re-pointed between the check and the start, or a readable file in a closed directory,
 * never makes root read a file for a star.
 */
import assert from "node:assert/strict";
import { closeSync, constants, openSync, readFileSync } from "node:fs";
import { chmod, mkdir, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ScriptError } from "../../src/model/errors.js";
import { ProcessRuntime } from "../../src/runtime/process/process-runtime.js";
import type { LogLine } from "../../src/model/status.js";
import { testDir } from "../helpers/dirs.js";
import { waitFor } from "../helpers/wait.js";


const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

describe("scripts are checked on the file that is read, at every start", { skip }, () => {
  let dir: string;
  let rt: ProcessRuntime;
  const logs = async (id: string) => {
    const out: LogLine[] = [];
    for await (const l of rt.logs(id)) out.push(l);
    return out.map((l) => l.line).join("\n");
  };

  /**
   * A star whose shell blocks opening its FIFO (/var/tmp/f.ts) for writing until a reader opens
   * it: the kernel wakes it in that very open, so its wait channel says at once whether anything
   * opened the FIFO. `through`: the FIFO seen from the node through /proc.
   */
  const fifoWriter = async (name: string) => {
    const writer = "mkfifo /var/tmp/f.ts; chmod 644 /var/tmp/f.ts; : > /var/tmp/f.ts; echo opened; exec sleep 60";
    await rt.start(name, { name, command: ["sh", "-c", writer] }, { trusted: false });
    const pid = rt.status(name)!.pid!;
    const family = () => [pid, ...readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter(Boolean).map(Number)];
    const blocked = () => family().some((p) => readFileSync(`/proc/${p}/wchan`, "utf8") === "wait_for_partner");
    await waitFor("the writer to wait in its open", () => blocked() || undefined);
    return { through: `/proc/${pid}/root/var/tmp/f.ts`, blocked };
  };

  before(async () => {
    dir = await testDir("constellation-scripts-");
    await mkdir(join(dir, "pub"), { mode: 0o755 });
    await writeFile(join(dir, "pub", "harmless.ts"), 'console.log("harmless");\n', { mode: 0o644 });
    await writeFile(join(dir, "secret.ts"), "cst_SECRET_TOKEN_VALUE\n", { mode: 0o600 });
    await chmod(join(dir, "secret.ts"), 0o600);
    await mkdir(join(dir, "closed"), { mode: 0o700 });
    await writeFile(join(dir, "closed", "inside.ts"), 'console.log("closed-dir-secret");\n', { mode: 0o644 });
    rt = await ProcessRuntime.create({ dataDir: join(dir, "data") });
  });
  after(async () => {
    for (const s of rt?.list() ?? []) await rt.remove(s.id).catch(() => undefined);
    await rt?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("a symlink re-pointed at a root-only file between the check and the start is refused", async () => {
    const link = join(dir, "pub", "x.ts");
    await symlink(join(dir, "pub", "harmless.ts"), link);
    const spec = { name: "swap", script: link };
    await rt.validate(spec, { trusted: false }); // what the controller checks at create
    await unlink(link);
    await symlink(join(dir, "secret.ts"), link);
    await assert.rejects(rt.start("swap", spec, { trusted: false }), (e: unknown) => {
      assert.ok(e instanceof ScriptError, String(e));
      assert.match(e.message, /is not a file that (every user|the star's user \(uid \d+\)) can read here/);
      assert.doesNotMatch(e.message, /SECRET/);
      return true;
    });
    assert.equal(rt.status("swap"), undefined, "nothing was started");
  });

  it("a readable file in a directory the star may not enter is refused for a star's child, run for an admin's star", async () => {
    const spec = { name: "closed", script: join(dir, "closed", "inside.ts") };
    await assert.rejects(rt.start("closed", spec, { trusted: false }), /is not a file that every user can read here/);
    // An admin's star: root reads it, and its directory is shown to the star.
    await rt.start("closed", spec, { trusted: true });
    const end = await rt.wait("closed");
    assert.equal(end.state, "exited", JSON.stringify(end));
    assert.equal(await logs("closed"), "closed-dir-secret");
  });

  it("a path into another star's private files through /proc/<pid>/root is refused, and says nothing of what is there", async () => {
    await rt.start("holder", { name: "holder", command: ["sh", "-c", "echo 'console.log(\"cst_PRIVATE\")' > /var/tmp/secret.ts; chmod 644 /var/tmp/secret.ts; exec sleep 60"] }, { trusted: false });
    const pid = rt.status("holder")!.pid!;
    const through = `/proc/${pid}/root/var/tmp/secret.ts`;
    const link = join(dir, "pub", "peek.ts");
    await symlink(through, link);
    const db = join(dir, "pub", "db.ts"); // the runtime's own state, hidden from stars
    await symlink(join(dir, "data", "runtime.db"), db);
    const messages: string[] = [];
    for (const script of [through, link, join(dir, "pub", "no-such.ts"), db]) {
      await assert.rejects(rt.validate({ name: "peek", script }, { trusted: false }), (e: unknown) => {
        assert.ok(e instanceof ScriptError, String(e));
        assert.doesNotMatch(e.message, /PRIVATE|bytes/);
        messages.push(e.message.replace(script, "<path>"));
        return true;
      });
    }
    assert.equal(new Set(messages).size, 1, `one answer for all: ${messages.join(" | ")}`);
    await rt.remove("holder");
  });

  it("a star's FIFO named through /proc is not even opened (its writer would wake), nor a device", async () => {
    const { through, blocked } = await fifoWriter("fifo-holder");
    await symlink("/dev/tty", join(dir, "pub", "tty.ts"));
    await symlink(through, join(dir, "pub", "fifo.mjs"));
    for (const script of [through, join(dir, "pub", "tty.ts"), join(dir, "pub", "fifo.mjs")]) {
      await assert.rejects(rt.validate({ name: "peek", script }, { trusted: false }), /is not a file that every user can read here/);
    }
    assert.ok(blocked(), "nothing opened the FIFO");
    // Opened here: the writer goes on (the check can see an open).
    closeSync(openSync(through, constants.O_RDONLY | constants.O_NONBLOCK));
    await waitFor("the writer to see the open", async () => ((await logs("fifo-holder")) === "opened" ? true : undefined));
    assert.ok(!blocked());
    await rt.remove("fifo-holder");
  });

  it("a link swapped between resolving and opening a path does not make the node open what it leads to", async () => {
    const { through, blocked } = await fifoWriter("fifo-racer");
    // A link the star could make in its own work dir, flipped as fast as can be between a file
    // every user may read and the FIFO seen through /proc, while its children ask for it.
    const work = join(dir, "data", "stars", "fifo-racer", "work");
    const flip = spawn("sh", ["-c", `cd ${work} && while :; do ln -sfn /etc/hostname a.js; ln -sfn ${through} a.js; done`], { stdio: "ignore" });
    try {
      for (let i = 0; i < 300; i++) await rt.validate({ name: "racer-kid", script: join(work, "a.js") }, { trusted: false }).catch(() => undefined);
    } finally {
      flip.kill("SIGKILL");
    }
    assert.ok(blocked(), "the FIFO was never opened");
    await rt.remove("fifo-racer");
  });

  it("the same check holds at a restart: a script made unreadable later is not read", async () => {
    const file = join(dir, "pub", "later.ts");
    await writeFile(file, 'console.log("first run");\n', { mode: 0o644 });
    await rt.start("later", { name: "later", script: file }, { trusted: false });
    await rt.wait("later");
    await writeFile(file, "cst_SECOND_SECRET\n");
    await chmod(file, 0o600);
    await assert.rejects(rt.resume("later").then(async () => rt.wait("later")).then((s) => {
      if (s.state !== "exited") throw new Error(s.reason ?? s.state);
      return s;
    }), /is not a file that .* can read here/);
    assert.doesNotMatch(await logs("later"), /SECOND_SECRET/);
  });

  it("an ACL that denies the star's user its script is obeyed at the next start: the node reads as that user", { skip: spawnSync("setfacl", ["--version"]).status === 0 ? false : "needs setfacl (Debian's acl package)" }, async () => {
    const file = join(dir, "pub", "acl.ts");
    await writeFile(file, 'console.log(`uid=${process.getuid!()}`);\n', { mode: 0o644 });
    await rt.start("acl", { name: "acl", script: file }, { trusted: false });
    await rt.wait("acl");
    const uid = /uid=(\d+)/.exec(await logs("acl"))?.[1];
    assert.ok(uid, "the star said its uid");
    await writeFile(file, 'console.log("cst_ACL_SECRET");\n');
    assert.equal(spawnSync("setfacl", ["-m", `u:${uid}:---`, file]).status, 0); // modes still say every user may read it
    await assert.rejects(rt.resume("acl").then(async () => rt.wait("acl")).then((s) => {
      if (s.state !== "exited") throw new Error(s.reason ?? s.state);
      return s;
    }), new RegExp(`is not a file that the star's user \\(uid ${uid}\\) can read here`));
    assert.doesNotMatch(await logs("acl"), /ACL_SECRET/);
  });
});
