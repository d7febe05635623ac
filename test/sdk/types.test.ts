/**
 * The SDK is a TypeScript package (issue 10): a consumer project under `module: nodenext`
 * compiles against it by package name, with its types checked (a wrong call is an error).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { testDirSync } from "../helpers/dirs.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));
const tsc = join(repo, "node_modules", "typescript", "bin", "tsc");

describe("the SDK's types", () => {
  const dir = testDirSync("constellation-types-");
  after(() => rmSync(dir, { recursive: true, force: true }));

  const project = (code: string) => {
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", type: "module", private: true }));
    const compilerOptions = { module: "nodenext", moduleResolution: "nodenext", target: "ES2022", strict: true, noEmit: true, types: ["node"], typeRoots: [join(repo, "node_modules", "@types")] };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["index.ts"] }));
    mkdirSync(join(dir, "node_modules"), { recursive: true });
    rmSync(join(dir, "node_modules", "constellation"), { force: true });
    symlinkSync(repo, join(dir, "node_modules", "constellation"));
    writeFileSync(join(dir, "index.ts"), code);
    return spawnSync(process.execPath, [tsc, "-p", dir], { encoding: "utf8" });
  };

  it("a consumer compiles by package name under nodenext, and a wrong call does not", () => {
    const good = project(
      'import { connect, constellation, type StarInfo } from "constellation";\n' +
        'const c = connect({ dataDir: "/srv/constellation" });\n' +
        "const stars: Promise<StarInfo[]> = c.list();\n" +
        'const made = constellation.create({ name: "web", command: ["python3", "-m", "http.server"], ram_mb: 256 });\n' +
        "// The seed's other spelling of limits.\n" +
        'const w = constellation.create({ name: "processor-a", script: "process.ts", env: { INPUT_FILE: "/data/raw/a.csv" }, resources: { cpu_cores: 8, ram_gb: 16 } });\n' +
        'const db = constellation.create({ name: "db-primary", command: ["postgres"], cpu_cores: 4, ram_gb: 8, placement: { strategy: "spread" } });\n' +
        "void stars; void made; void w; void db;\n",
    );
    assert.equal(good.status, 0, good.stdout + good.stderr);
    const bad = project('import { connect } from "constellation";\nconnect({ dataDir: 42 });\n');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stdout, /TS2322|TS2345/);
    assert.doesNotMatch(bad.stdout, /TS7016/, "declarations found");
  });
});
