/**
 * Scripts as users expect (issue 10): a star's script is bundled with esbuild from its own
 * directory — relative imports, packages, JSON, `require`, its own `import.meta.url` and
 * `__dirname`, stack traces that name the user's files and lines — rebuilt when any file it
 * bundles changes, and a bundle that fails says where, before anything starts.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, mkdir, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ScriptError } from "../../src/model/errors.js";
import { ProcessRuntime } from "../../src/runtime/process/process-runtime.js";
import type { LogLine } from "../../src/model/status.js";
import { testDir } from "../helpers/dirs.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

describe("a star's script is bundled from its own directory", { skip }, () => {
  let dir: string;
  let proj: string;
  let rt: ProcessRuntime;
  let n = 0;
  const put = async (rel: string, text: string, mode = 0o644) => {
    const path = join(proj, rel);
    await mkdir(join(path, ".."), { recursive: true, mode: 0o755 });
    await writeFile(path, text);
    await chmod(path, mode);
    return path;
  };
  const run = async (script: string, opts: { trusted: boolean; args?: string[] }) => {
    const star = `bundle-${n++}`;
    await rt.start(star, { name: star, script, args: opts.args ?? [] }, { trusted: opts.trusted });
    const end = await rt.wait(star);
    const out: LogLine[] = [];
    for await (const l of rt.logs(star)) out.push(l);
    const text = (stream: string) => out.filter((l) => l.stream === stream).map((l) => l.line).join("\n");
    return { end, star, stdout: text("stdout"), stderr: text("stderr") };
  };

  before(async () => {
    dir = await testDir("constellation-bundle-");
    await chmod(dir, 0o755);
    proj = join(dir, "proj");
    await mkdir(proj, { mode: 0o755 });
    await put("lib/util.ts", 'export const greet = (who: string): string => `hello ${who}`;\nexport const where = import.meta.url;\n');
    await put("data.json", '{ "who": "json" }\n');
    await put("node_modules/pad-cjs/package.json", '{ "name": "pad-cjs", "main": "index.js" }\n');
    await put("node_modules/pad-cjs/index.js", 'const path = require("node:path");\nmodule.exports = { dir: path.basename(__dirname), file: path.basename(__filename) };\n');
    await put(
      "main.ts",
      [
        'import { greet, where } from "./lib/util.js";',
        'import data from "./data.json";',
        'import pad from "pad-cjs";',
        'const os = require("node:os");',
        "console.log(greet(data.who));",
        'console.log("util", where);',
        'console.log("main", import.meta.url);',
        'console.log("pkg", pad.dir, pad.file, typeof os.cpus);',
        'if (process.argv[2] === "throw") throw new Error("boom");',
        "",
      ].join("\n"),
    );
    rt = await ProcessRuntime.create({ dataDir: join(dir, "data") });
  });
  after(async () => {
    for (const s of rt?.list() ?? []) await rt.remove(s.id).catch(() => undefined);
    await rt?.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const trusted of [true, false]) {
    it(`relative imports, JSON, packages, require and each module's own URL and __dirname (${trusted ? "an admin's star" : "a star's child"})`, async () => {
      const { end, stdout, stderr } = await run(join(proj, "main.ts"), { trusted });
      assert.equal(end.state, "exited", stderr);
      assert.equal(stdout, [
        "hello json",
        `util file://${proj}/lib/util.ts`,
        `main file://${proj}/main.ts`,
        "pkg pad-cjs index.js function",
      ].join("\n"));
    });
  }

  it("a script's star starts in its script's directory, read-only to it; its HOME is its own", async () => {
    const where = await put(
      "where.mjs",
      'import { readFileSync, writeFileSync } from "node:fs";\nconsole.log(process.cwd());\nconsole.log(JSON.parse(readFileSync("./data.json", "utf8")).who);\n' +
        'writeFileSync(`${process.env.HOME}/mine`, "x");\ntry { writeFileSync("./not-mine", "x"); console.log("wrote"); } catch (e) { console.log(e.code); }\n',
    );
    for (const trusted of [true, false]) {
      const { end, stdout, stderr } = await run(where, { trusted });
      assert.equal(end.state, "exited", stderr);
      assert.match(stdout, new RegExp(`^${proj}\njson\n(EROFS|EACCES)$`), stdout);
    }
  });

  it("a stack trace names the user's file and line, not the bundle's", async () => {
    const { end, stderr } = await run(join(proj, "main.ts"), { trusted: true, args: ["throw"] });
    assert.equal(end.exitCode, 1);
    assert.match(stderr, /Error: boom/);
    assert.match(stderr, new RegExp(`at .*${proj}/main\\.ts:9:\\d+`), stderr);
    assert.doesNotMatch(stderr, /at .*script\/[0-9a-f]{32}\.mjs/, stderr);
  });

  it("a change to any file the bundle holds is in the next start; no change, the same bundle", async () => {
    const first = await run(join(proj, "main.ts"), { trusted: true });
    const again = await run(join(proj, "main.ts"), { trusted: true });
    const bundleOf = async (star: string) => (await readdir(join(dir, "data", "stars", star, "script"))).filter((f) => f.endsWith(".mjs"));
    assert.deepEqual(await bundleOf(again.star), await bundleOf(first.star), "unchanged sources: the same bundle");
    await put("lib/util.ts", 'export const greet = (who: string): string => `changed ${who}`;\nexport const where = import.meta.url;\n');
    const changed = await run(join(proj, "main.ts"), { trusted: true });
    assert.match(changed.stdout, /^changed json$/m);
    assert.notDeepEqual(await bundleOf(changed.star), await bundleOf(first.star));
  });

  it("argv[1] is the script (main-module checks hold); a file added beside an import is seen; a BOM and #! line are kept", async () => {
    const main = await put("is-main.mjs", 'import { pathToFileURL } from "node:url";\nimport { v } from "./pick";\nconsole.log(import.meta.url === pathToFileURL(process.argv[1]).href ? "main" : "not main", v, __filename.endsWith("is-main.mjs"));\n');
    await put("pick.js", 'export const v = "js";\n');
    assert.equal((await run(main, { trusted: true })).stdout, "main js true");
    await put("pick.ts", 'export const v: string = "ts";\n');
    assert.equal((await run(main, { trusted: true })).stdout, "main ts true", "the new file, not the cached bundle");
    const bom = await put("bom.cjs", '\uFEFF#!/usr/bin/env node\nconsole.log(require("node:path").basename(__dirname));\n');
    const { stdout, stderr } = await run(bom, { trusted: false });
    assert.equal(stdout, "proj", stderr);
  });

  it("a bundle that fails is an error with the file and line, and nothing starts", async () => {
    const broken = await put("broken-import.ts", 'console.log("first");\nimport { nope } from "./lib/missing.js";\nconsole.log(nope);\n');
    const before = rt.list().length;
    await assert.rejects(rt.start("broken", { name: "broken", script: broken }, { trusted: true }), (e: unknown) => {
      assert.ok(e instanceof ScriptError, String(e));
      assert.match(e.message, new RegExp(`cannot bundle it: ${proj}/broken-import\\.ts:2:\\d+: Could not resolve "./lib/missing.js"`));
      return true;
    });
    await put("lib/bad.ts", "export const x: number = ;\n");
    const bad = await put("imports-bad.ts", 'import { x } from "./lib/bad.js";\nconsole.log(x);\n');
    await assert.rejects(rt.start("bad", { name: "bad", script: bad }, { trusted: true }), new RegExp(`${proj}/lib/bad\\.ts:1:26: `));
    assert.equal(rt.list().length, before, "nothing was started");
  });

  it("package imports (#x), exports by the order of their conditions and by the longest pattern; a module's source map comment reads nothing", async () => {
    await put("mods/package.json", '{ "imports": { "#util": "./util.js", "#dep": "dep-pkg" } }\n');
    await put("mods/util.js", 'export const u = "util";\n');
    await put(
      "mods/node_modules/dep-pkg/package.json",
      JSON.stringify({ exports: { ".": { default: "./default.js", node: "./node.js" }, "./features/*": "./f/*.js", "./features/private/*": "./p/*.js" } }),
    );
    await put("mods/node_modules/dep-pkg/default.js", 'export const which = "default";\n');
    await put("mods/node_modules/dep-pkg/node.js", 'export const which = "node";\n');
    await put("mods/node_modules/dep-pkg/f/a.js", 'export const f = "f-a";\n');
    await put("mods/node_modules/dep-pkg/p/a.js", 'export const f = "p-a";\n');
    // A module whose source map is a file only root may read: esbuild would read it (as root)
    // and carry its sources into the bundle the star's user reads.
    const hidden = join(dir, "hidden-maps");
    await mkdir(hidden, { mode: 0o700 });
    await writeFile(join(hidden, "m.js.map"), JSON.stringify({ version: 3, sources: ["cst_SECRET_SOURCE.ts"], sourcesContent: ["cst_SECRET_CONTENT"], names: [], mappings: "AAAA" }));
    // (the comment's text in a string is the star's own, kept as written)
    await put("mods/mapped.js", `export const m = "mapped" + "//# sourceMappingURL=".length;\n//# sourceMappingURL=${join(hidden, "m.js.map")}\n`);
    const main = await put(
      "mods/main.mjs",
      'import { u } from "#util";\nimport { which } from "#dep";\nimport { f } from "dep-pkg/features/private/a";\nimport { f as g } from "dep-pkg/features/a";\nimport { m } from "./mapped.js";\nconsole.log(u, which, f, g, m);\n',
    );
    for (const trusted of [true, false]) {
      const { end, star, stdout, stderr } = await run(main, { trusted });
      assert.equal(end.state, "exited", stderr);
      assert.equal(stdout, "util default p-a f-a mapped21", `${trusted ? "admin" : "star's child"}: ${stderr}`);
      if (trusted) continue;
      const scripts = join(dir, "data", "stars", star, "script");
      for (const f of await readdir(scripts)) {
        const text = await readFile(join(scripts, f), "utf8");
        const map = Buffer.from(/sourceMappingURL=data:application\/json;base64,(\S+)/.exec(text)?.[1] ?? "", "base64").toString("utf8");
        assert.match(map, /mapped\.js/, "the bundle's own map names the star's files");
        assert.doesNotMatch(text + map, /cst_SECRET/, "nothing of the hidden map in the bundle or its map");
      }
    }
  });

  it("a star's child cannot bundle in a file its user may not read, and learns nothing of it", async () => {
    await put("secret.json", '{ "token": "cst_SECRET" }\n', 0o600);
    const peek = await put("peek.ts", 'import s from "./secret.json";\nconsole.log(s);\n');
    const missing = await put("peek-missing.ts", 'import s from "./not-there.json";\nconsole.log(s);\n');
    const answers: string[] = [];
    for (const script of [peek, missing]) {
      await assert.rejects(rt.validate({ name: "peek", script }, { trusted: false }), (e: unknown) => {
        assert.ok(e instanceof ScriptError, String(e));
        assert.doesNotMatch(e.message, /SECRET/);
        answers.push(e.message.replaceAll(script, "<script>").replace(/"\.\/[a-z-]+\.json"/, "<import>"));
        return true;
      });
    }
    assert.equal(answers[0], answers[1], "one answer for a file it may not read and one that is not there");
    // Files esbuild would read on its own (tsconfig.json, package.json) are not read for a star's
    // script: a link to the secret there changes nothing and says nothing; a FIFO stalls nothing.
    const trap = join(proj, "trap");
    await mkdir(join(trap, "node_modules", "pkg"), { recursive: true, mode: 0o755 });
    await symlink(join(proj, "secret.json"), join(trap, "tsconfig.json"));
    await symlink(join(proj, "secret.json"), join(trap, "node_modules", "pkg", "package.json"));
    await writeFile(join(trap, "node_modules", "pkg", "index.js"), "module.exports = 1;\n", { mode: 0o644 });
    execFileSync("mkfifo", ["-m", "644", join(trap, "package.json")]);
    const plain = join(trap, "plain.ts");
    await writeFile(plain, 'const n: number = 1;\nconsole.log(n);\n', { mode: 0o644 });
    await rt.validate({ name: "plain", script: plain }, { trusted: false });
    const usesPkg = join(trap, "uses-pkg.ts");
    await writeFile(usesPkg, 'import p from "pkg";\nconsole.log(p);\n', { mode: 0o644 });
    // The package's package.json is not the user's to read: as Node run by that user would, the
    // resolver takes the package as one without it (its index.js), and reads nothing of the link.
    const pkgRun = await run(usesPkg, { trusted: false });
    assert.equal(pkgRun.stdout, "1", pkgRun.stderr);
    // An admin's star may: root reads it.
    const { stdout } = await run(peek, { trusted: true });
    assert.match(stdout, /cst_SECRET/);
    // A file made unreadable after a bundle was built is not taken from the cache either.
    await put("later.json", '{ "v": "readable" }\n');
    const later = await put("later.ts", 'import v from "./later.json";\nconsole.log(v.v);\n');
    assert.equal((await run(later, { trusted: false })).stdout, "readable");
    await chmod(join(proj, "later.json"), 0o600);
    await assert.rejects(rt.start("later-again", { name: "later-again", script: later }, { trusted: false }), /Could not resolve/);
  });
});
