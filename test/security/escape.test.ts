/**
 * A star cannot escape (issue 8): every break found by attacking the single node as a hostile
 * workload, done again as it was done — by the stars' own users, over the real API, in real
 * namespaces and cgroups — and each must fail. Then a walk of the star's view for anything
 * writable, and writes past the quota in each place found.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Constellation } from "../../src/index.js";
import type { StarSpecInput } from "../../src/model/spec.js";
import { type Up, type UpFixture, cli, upWithClient } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";
import { starCgroupFile } from "../helpers/cgroups.js";

/** Star names unique to this run: stars of another node on this host never share a cgroup. */
const tag = process.pid.toString(36);
const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root (real cgroups and namespaces)" : false;


describe("a star cannot escape (attacks as the stars' users, over the real API)", { skip, concurrency: false }, () => {
  let dir: string;
  let node: Up;
  let sdk: Constellation;
  let n = 0;
  const starDir = (name: string) => join(node.dataDir, "runtime", "stars", name);

  /** Runs a shell command as a star to its end; its output (stdout and stderr) and the star. */
  const run = async (script: string, extra: Partial<StarSpecInput> = {}): Promise<{ out: string; name: string; code: number | undefined }> => {
    const name = `atk-${tag}-${++n}`;
    const star = await sdk.create({ name, command: ["sh", "-c", script], ...extra } as StarSpecInput);
    const end = await star.wait({ timeoutMs: 60_000 });
    const lines: string[] = [];
    for await (const l of star.logs()) lines.push(l.line);
    return { out: lines.join("\n"), name, code: end.status?.exitCode ?? undefined };
  };
  const refused = async (spec: Partial<StarSpecInput>, field: RegExp, status: number) => {
    const name = `bad-${tag}-${++n}`;
    await assert.rejects(sdk.create({ name, command: ["true"], ...spec } as StarSpecInput), (e: unknown) => {
      const err = e as { status?: number; field?: string; issues?: Array<{ field: string }>; message: string };
      assert.equal(err.status, status, err.message);
      assert.match(err.field ?? err.issues?.[0]?.field ?? "", field, err.message);
      return true;
    });
    assert.ok(!(await sdk.list()).some((s) => s.name === name), "nothing was created");
  };

  let fixture: UpFixture | undefined;
  before(async () => {
    fixture = await upWithClient("constellation-sec-");
    ({ dir, node, sdk } = fixture);
  });
  after(async () => fixture?.close());

  it("1. no host root through an exec health check: the check runs as the star's user, from its init", async () => {
    // As it was done, with the filter turned off (an admin may): the star makes its own user and
    // mount namespace and puts its own program over /usr/bin/id there.
    const attack =
      'printf "#!/bin/sh\\nid -u > $HOME/pwned\\n" > $HOME/evil; chmod +x $HOME/evil; ' +
      'exec unshare -Urm sh -c "mount --bind $HOME/evil /usr/bin/id && echo swapped && exec sleep 600"';
    const name = `exec-attack-${tag}`;
    await sdk.create({
      name,
      command: ["sh", "-c", attack],
      seccomp: "unconfined",
      health: { type: "exec", command: ["sh", "-c", 'echo "$(id -u) $(grep CapEff /proc/self/status | cut -f2)" > $HOME/probe.out; id -u'], interval_ms: 100 },
    });
    const probeOut = join(starDir(name), "work", "probe.out");
    const seen = await waitFor("the check to run", () => existsSync(probeOut) && readFileSync(probeOut, "utf8").trim(), { timeoutMs: 20_000 });
    const [uid, capEff] = seen.split(" ");
    assert.notEqual(uid, "0", "the check is not root");
    assert.ok(Number(uid) >= 2_000_000, `the star's own user, got ${uid}`);
    assert.equal(capEff, "0000000000000000", "the check has no capabilities");
    assert.ok(!existsSync(join(starDir(name), "work", "pwned")), "the star's swapped program never ran");
    await sdk.star(name).remove({ force: true });

    // By default the star cannot make a user namespace at all.
    const { out } = await run("unshare -Urm true && echo made-userns; unshare -U true && echo made-userns2; grep Seccomp: /proc/self/status");
    assert.doesNotMatch(out, /made-userns/);
    assert.match(out, /Operation not permitted/);
    assert.match(out, /Seccomp:\s+2/);
  });

  it("2, 3, 5. the admin token, the data dir, other stars' files and transpiled scripts are out of reach", async () => {
    const secretTs = join(dir, "secret.ts");
    await writeFile(secretTs, 'const secret: string = "s3cr3t-in-a-ts-file";\nconsole.log(secret.length); setInterval(() => {}, 1000);\n');
    await chmod(secretTs, 0o600); // root's only: the admin's own star may run it, nobody else read it
    const victimName = `victim-${tag}`;
    const victim = await sdk.create({ name: victimName, script: secretTs });
    assert.equal((await victim.wait({ for: "running" })).status?.state, "running");
    const victimDir = starDir(victimName);
    await waitFor("the victim's work dir", () => existsSync(join(victimDir, "work")));
    await writeFile(join(victimDir, "work", "victim-work-file"), "victim-data\n");
    const transpiled = readdirSync(join(victimDir, "script")).map((f) => join(victimDir, "script", f));
    assert.equal(transpiled.length, 1);
    const st = statSync(transpiled[0]!);
    assert.equal(st.mode & 0o777, 0o640, "the transpiled script is root's and the star's group's only");
    assert.equal(st.uid, 0);
    assert.equal(statSync(victimDir).mode & 0o777, 0o700);
    assert.equal(statSync(join(node.dataDir, "runtime", "stars")).mode & 0o777, 0o700);

    const targets = [
      join(node.dataDir, "admin.token"),
      join(node.dataDir, "store.db"),
      join(node.dataDir, "runtime", "runtime.db"),
      join(victimDir, "work", "victim-work-file"),
      transpiled[0]!,
      secretTs,
    ];
    const { out } = await run(
      [
        ...targets.map((t) => `cat ${t} 2>&1 | head -c 200; echo`),
        `echo stars: $(ls ${join(node.dataDir, "runtime", "stars")} 2>&1)`,
        `echo data: $(ls -a ${node.dataDir} 2>&1)`,
        "ls -a /root /home 2>&1",
        "cat /proc/1/environ 2>&1 | head -c 100; echo",
      ].join("; "),
    );
    const token = readFileSync(join(node.dataDir, "admin.token"), "utf8").trim();
    assert.ok(!out.includes(token), "the admin token leaked");
    assert.doesNotMatch(out, /s3cr3t|victim-data|hunter|SQLite format/);
    const listed = /^stars: (.*)$/m.exec(out)?.[1] ?? "";
    assert.doesNotMatch(listed, /victim/, "the star cannot list other stars");
    assert.match(out, /^data: \. \.\.( runtime)?$/m, "the data dir is hidden (but the way to the star's own work dir)");
    await victim.remove({ force: true });
  });

  it("2. a star's token can only name scripts every user can read, and the node checks again at start", async () => {
    // The star makes a harmless script in the only places it can write, and asks for a child
    // running it: nowhere it can write is readable by every user, so it is refused.
    const { out } = await run(
      [
        'echo "console.log(1)" > $HOME/x.mjs; chmod 755 $HOME; chmod 644 $HOME/x.mjs',
        'cat > /tmp/ask.mjs <<EOF\nconst r = await fetch(process.env.CONSTELLATION_ENDPOINT + "/v1/stars", { method: "POST", headers: { authorization: "Bearer " + process.env.CONSTELLATION_TOKEN, "content-type": "application/json" }, body: JSON.stringify({ spec: { name: "child-x", script: process.argv[2] }, start: false }) });\nconsole.log(r.status, (await r.text()).slice(0, 300));\nEOF',
        `node /tmp/ask.mjs $HOME/x.mjs`,
        `ln -s ${join(node.dataDir, "admin.token")} $HOME/y.ts; node /tmp/ask.mjs $HOME/y.ts`,
      ].join("\n"),
      { env: { NODE_NO_WARNINGS: "1" } },
    );
    const answers = out.split("\n").filter((l) => /^\d{3} /.test(l));
    assert.equal(answers.length, 2, out);
    for (const a of answers) assert.match(a, /^400 .*is not a file that every user can read here/);
    assert.ok(!out.includes(readFileSync(join(node.dataDir, "admin.token"), "utf8").trim()));
  });

  it("4. a star's token reaches only its own star and its children, and gives them no more than it has", async () => {
    const b = `tenant-b-${tag}`;
    const victim = await sdk.create({ name: b, command: ["sleep", "600"], env: { DB_PASSWORD: "hunter2" } });
    await victim.wait({ for: "running" });
    // From inside a star, with its own token: everything the break report did.
    const api = [
      'const h = { authorization: "Bearer " + process.env.CONSTELLATION_TOKEN, "content-type": "application/json" };',
      "const call = async (m, p, b) => { const r = await fetch(process.env.CONSTELLATION_ENDPOINT + p, { method: m, headers: h, body: b && JSON.stringify(b) }); return r.status + ' ' + (await r.text()).slice(0, 400).replace(/\\n/g, ' '); };",
      'console.log("list", await call("GET", "/v1/stars"));',
      'console.log("get", await call("GET", "/v1/stars/' + b + '"));',
      'console.log("logs", await call("GET", "/v1/stars/' + b + '/logs"));',
      'console.log("stop", await call("POST", "/v1/stars/' + b + '/stop"));',
      'console.log("rm", await call("DELETE", "/v1/stars/' + b + '?force=1"));',
      'console.log("events", await call("GET", "/v1/events?star=' + b + '"));',
      'console.log("token", await call("POST", "/v1/tokens", { scope: "admin", name: "mine" }));',
      'console.log("pids", await call("POST", "/v1/stars", { spec: { name: "kid-pids", command: ["true"], pids: 4194304 }, start: false }));',
      'console.log("logsz", await call("POST", "/v1/stars", { spec: { name: "kid-logs", command: ["true"], log_max_mb: 102400, log_max_files: 100 }, start: false }));',
      'console.log("ram", await call("POST", "/v1/stars", { spec: { name: "kid-ram", command: ["true"], ram_mb: 4096 }, start: false }));',
      'console.log("isolate", await call("POST", "/v1/stars", { spec: { name: "kid-iso", script: "/usr/lib/x.mjs", runtime: "isolate" }, start: false }));',
      'console.log("seccomp", await call("POST", "/v1/stars", { spec: { name: "kid-sc", command: ["true"], seccomp: "unconfined" }, start: false }));',
      'console.log("mounts", await call("POST", "/v1/stars", { spec: { name: "kid-mnt", command: ["true"], mounts: [{ host: "/" }] }, start: false }));',
      'console.log("kid", await call("POST", "/v1/stars", { spec: { name: "kid-ok", command: ["true"] }, start: false }));',
    ].join("\n");
    const { out, name } = await run(`cat > /tmp/a.mjs <<'EOF'\n${api}\nEOF\nnode /tmp/a.mjs`, { ram_mb: 128, cpu_percent: 50 });
    const said = (what: string) => new RegExp(`^${what} (\\d{3}) (.*)$`, "m").exec(out)?.slice(1) ?? ["", out];
    assert.doesNotMatch(out, /hunter2/, "another star's env leaked");
    assert.doesNotMatch(said("list")[1]!, new RegExp(b), "another star is listed");
    for (const w of ["get", "logs", "stop", "rm"]) assert.equal(said(w)[0], "404", `${w}: ${said(w)[1]}`);
    assert.doesNotMatch(said("events")[1]!, new RegExp(b));
    assert.equal(said("token")[0], "403");
    for (const w of ["pids", "logsz", "ram"]) assert.equal(said(w)[0], "422", `${w}: ${said(w)[1]}`);
    for (const w of ["isolate", "seccomp", "mounts"]) assert.equal(said(w)[0], "403", `${w}: ${said(w)[1]}`);
    assert.equal(said("kid")[0], "201", said("kid")[1]);
    // Its child: listed with it, no more than it has, and removed with it.
    const kid = (await sdk.list()).find((s) => s.name === "kid-ok");
    assert.equal(kid?.owner?.name, name);
    assert.equal((kid?.spec as { ram_mb?: number }).ram_mb, 128);
    assert.equal((await victim.info()).status?.state, "running", "the other tenant's star runs on");
    await sdk.star(name).remove({ force: true });
    await waitFor("the child to go with its parent", async () => ((await sdk.list()).some((s) => s.name === "kid-ok") ? undefined : true));
    await victim.remove({ force: true });
  });

  it("6. around the disk limit: every writable place is private, counted, and gone with the star", async () => {
    const fill = (place: string) => `head -c 300000000 /dev/zero > ${place}/fill 2>/dev/null; echo "${place} $(du -sm ${place} | cut -f1)"`;
    const { out, name } = await run(["/tmp", "/var/tmp", "/run/lock", "$HOME"].map(fill).join("; ") + "; id -u", { disk_mb: 50, ram_mb: 256 });
    const uid = out.trim().split("\n").at(-1)!;
    let total = 0;
    for (const line of out.trim().split("\n").slice(0, 4)) {
      const [, mb] = line.split(" ");
      total += Number(mb);
    }
    assert.ok(total <= 60, `the star wrote ${total} MB with disk_mb 50:\n${out}`);
    // Without a disk: the scratch places are tmpfs counted against its memory.
    // All of them share half its memory: full, they say ENOSPC, and the star is not OOM-killed.
    const mem = await run(["/tmp", "/var/tmp", "/run/lock", "/dev/shm"].map(fill).join("; "), { ram_mb: 64 });
    const sizes = mem.out.trim().split("\n").map((l) => Number(l.split(" ")[1]));
    assert.equal(sizes.length, 4, mem.out);
    assert.ok(sizes.reduce((a, b) => a + b, 0) <= 33, `over half its memory:\n${mem.out}`);
    assert.equal((await sdk.star(mem.name).info()).status?.state, "exited");
    await sdk.star(name).remove({ force: true });
    await sdk.star(mem.name).remove({ force: true });
    // Nothing of theirs is left on the host.
    const left = spawnSync("find", ["/tmp", "/var/tmp", "/run/lock", "/dev/shm", "-xdev", "-uid", uid], { encoding: "utf8" }).stdout.trim();
    assert.equal(left, "", "files outlived the star");
    // Logs have a node ceiling.
    await refused({ log_max_mb: 102_400, log_max_files: 100 }, /^log_max_mb$/, 422);
  });

  it("7. a uid used before sees nothing of the star that had it", async () => {
    const first = await run("echo secret > /var/tmp/mine && chmod 600 /var/tmp/mine && echo > /tmp/x && id -u");
    await sdk.star(first.name).remove({ force: true });
    const second = await run("cat /var/tmp/mine 2>&1; ls /tmp; id -u");
    assert.doesNotMatch(second.out, /secret/);
    assert.match(second.out, /No such file/);
  });

  it("8. ceilings: memory always limited, pids, open files, no setuid, no mounts, no writes outside its places", async () => {
    await refused({ pids: 4_194_304 }, /^pids$/, 422);
    await refused({ nofile: 1_000_000 }, /^nofile$/, 422);
    const suid = join(dir, "suid-id");
    copyFileSync("/usr/bin/id", suid);
    await chmod(suid, 0o4755);
    const { out, name } = await run(
      `ulimit -n; ${suid} -u; mount -t tmpfs x /mnt 2>&1 | head -1; touch /usr/x 2>&1; touch /etc/x 2>&1; sleep 0.2`,
      { restart: "never" },
    );
    const lines = out.split("\n");
    assert.equal(lines[0], "1024", "the node's default open files");
    assert.notEqual(lines[1], "0", "a setuid binary does not make root");
    assert.match(out, /must be superuser|Operation not permitted|permission denied/i);
    assert.match(out, /touch: cannot touch '\/usr\/x': Read-only file system/);
    assert.match(out, /touch: cannot touch '\/etc\/x': Read-only file system/);
    void name;
    // A star without ram_mb gets the node's default memory, not the whole machine.
    const idle = await sdk.create({ name: `no-ram-${tag}`, command: ["sleep", "60"] });
    await idle.wait({ for: "running" });
    assert.equal(starCgroupFile(node.dataDir, `no-ram-${tag}`, "memory", "memory.limit_in_bytes"), String(512 * 2 ** 20));
    await idle.remove({ force: true });
  });

  it("other stars' cgroups are hidden, its own readable; ptys are its own and few; a star at its pids limit keeps its init", async () => {
    const other = await sdk.create({ name: `other-tenant-${tag}`, command: ["sleep", "600"] });
    await other.wait({ for: "running" });
    const { out, name } = await run(
      [
        // Its group is constellation/<node>/<star>; its siblings are the node's other stars.
        'own=$(grep -m1 -E ":memory:|^0::" /proc/self/cgroup | cut -d: -f3); mem=/sys/fs/cgroup/memory; [ -d $mem ] || mem=/sys/fs/cgroup',
        'echo groups: $(ls $mem$(dirname $own) 2>/dev/null)',
        'echo own: $(cat $mem$own/memory.limit_in_bytes 2>/dev/null || cat $mem$own/memory.max)',
        "printf 'import os\\nn = 0\\ntry:\\n  while True:\\n    os.openpty()\\n    n += 1\\nexcept OSError:\\n  print(\"ptys:\", n)\\n' > /tmp/p.py; python3 /tmp/p.py",
      ].join("; "),
      { ram_mb: 96 },
    );
    assert.match(out, /^groups: /m, out);
    assert.doesNotMatch(out, /other-tenant/, "another star's cgroup is visible");
    assert.match(out, /^own: 100663296$/m);
    assert.match(out, /^ptys: 64$/m);
    void name;
    await other.remove({ force: true });

    // A fork bomb up to its pids limit, with an exec check every 50 ms: the check fails, the init
    // lives, and the program's own end is what is reported.
    const bomb = await sdk.create({
      name: `pid-bomb-${tag}`,
      command: [
        "python3",
        "-c",
        "import os, time\ntry:\n  while True:\n    if os.fork() == 0:\n      time.sleep(3)\n      os._exit(0)\nexcept OSError:\n  pass\ntime.sleep(1)\nos._exit(3)\n",
      ],
      pids: 16,
      health: { type: "exec", command: ["true"], interval_ms: 50 },
    });
    const end = await bomb.wait({ timeoutMs: 30_000 });
    assert.equal(end.status?.exitCode, 3, JSON.stringify(end.status));
    await bomb.remove({ force: true });
  });

  it("walks the star's view for writable places: only its own, each limited", async () => {
    const { out } = await run(
      "find / \\( -path /proc -o -path /sys \\) -prune -o -type d -writable -print 2>/dev/null | sort",
      { disk_mb: 20, ram_mb: 64 },
    );
    const writable = out.split("\n").filter(Boolean);
    const allowed = (p: string) => ["/tmp", "/var/tmp", "/run/lock", "/dev/shm", "/dev/mqueue"].some((a) => p === a || p.startsWith(`${a}/`)) || p.includes("/stars/");
    assert.deepEqual(writable.filter((p) => !allowed(p)), [], `writable outside the star's places:\n${out}`);
    assert.ok(writable.includes("/tmp") && writable.includes("/var/tmp"), out);
  });

  it("mounts give more of the host on purpose, read-only unless asked; root runs in a tree of its own", async () => {
    const shared = join(dir, "shared");
    await mkdir(shared, { mode: 0o777 });
    await chmod(shared, 0o777);
    const ro = await run("ls /mnt && touch /mnt/x 2>&1", { mounts: [{ host: shared, path: "/mnt" }] });
    assert.match(ro.out, /Read-only file system/);
    const rw = await run("echo hi > /mnt/x && cat /mnt/x", { mounts: [{ host: shared, path: "/mnt", readonly: false }] });
    assert.equal(rw.out.trim(), "hi");
    assert.equal(readFileSync(join(shared, "x"), "utf8"), "hi\n");
    // The same from the CLI, and its bad input.
    const made = await cli(node.dataDir, ["create", "--name", "cli-mount", "--no-wait", "--mount", `${shared}:/mnt:rw`, "--", "sh", "-c", "echo cli > /mnt/y"]);
    assert.equal(made.code, 0, made.stderr);
    await waitFor("the CLI star's write", () => existsSync(join(shared, "y")));
    const bad = await cli(node.dataDir, ["create", "--name", "cli-bad", "--mount", "a:b:c:d", "--", "true"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--mount takes HOST\[:PATH\]\[:ro\|rw\]/);

    // A root of its own: a static program that looks around.
    const root = join(dir, "rootfs");
    await mkdir(join(root, "bin"), { recursive: true });
    for (const d of ["proc", "dev", "tmp", "etc"]) await mkdir(join(root, d), { recursive: true });
    await writeFile(join(root, "etc", "motd"), "inside the root\n");
    const src = join(dir, "look.c");
    await writeFile(
      src,
      '#include <stdio.h>\n#include <unistd.h>\nint main(void){FILE*f=fopen("/etc/motd","r");char b[64]={0};if(f)fgets(b,63,f);printf("motd=%s",b);' +
        'printf("passwd=%d usr=%d\\n",access("/etc/passwd",F_OK)==0,access("/usr/bin",F_OK)==0);return 0;}\n',
    );
    const cc = spawnSync("cc", ["-static", "-o", join(root, "bin", "look"), src], { encoding: "utf8" });
    assert.equal(cc.status, 0, cc.stderr);
    const star = await sdk.create({ name: `rooted-${tag}`, command: ["/bin/look"], root });
    await star.wait();
    const lines: string[] = [];
    for await (const l of star.logs()) lines.push(l.line);
    assert.deepEqual(lines, ["motd=inside the root", "passwd=0 usr=0"]);
    await star.remove({ force: true });
  });

  it("bad mounts, roots and ceilings are refused at create, naming the field", async () => {
    await refused({ mounts: [{ host: "/no/such/dir" }] }, /^mounts\.0\.host$/, 400);
    await refused({ mounts: [{ host: "relative" }] }, /^mounts\.0\.host$/, 400);
    await refused({ mounts: [{ host: "/usr", path: "/no/such/place" }] }, /^mounts\.0\.path$/, 400);
    await refused({ mounts: [{ host: node.dataDir }] }, /^mounts\.0\.host$/, 400);
    await refused({ mounts: [{ host: "/var/lib" }] }, /^mounts\.0\.host$/, 400); // holds the test's data dir
    await refused({ cwd: "/root" }, /^cwd$/, 400);
    await refused({ root: "/no/such/root" }, /^root$/, 400);
    await refused({ root: join(dir, "empty-root") }, /^root$/, 400);
    await mkdir(join(dir, "empty-root"));
    await refused({ root: join(dir, "empty-root") }, /^root$/, 400);
  });
});
