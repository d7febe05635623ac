/**
 * The README shows what works (issue 10): every `sh` block after the Quick start is run, in
 * order, from the checkout, against a fresh node that holds what `npm start` makes (the example
 * star `hello`), with CONSTELLATION_DATA pointing at it as the README's first block says. A
 * block that fails fails this test, with its output.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { connect, type Constellation } from "../../src/index.js";
import { type Up, kill9, makeDataDir, removeDataDir, up } from "../helpers/constellation.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root" : false;

/** The README's `sh` blocks after its Quick start, each with the heading it is under. */
export function readmeBlocks(text: string): Array<{ heading: string; code: string }> {
  const blocks: Array<{ heading: string; code: string }> = [];
  let heading = "";
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith("## ")) heading = line.slice(3);
    if (line.trim() !== "```sh") continue;
    const code: string[] = [];
    for (i++; i < lines.length && lines[i]!.trim() !== "```"; i++) code.push(lines[i]!);
    if (heading !== "Quick start" && heading !== "Development") blocks.push({ heading, code: code.join("\n") });
  }
  return blocks;
}

function sh(code: string, env: Record<string, string>, timeoutMs = 90_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn("bash", ["-eo", "pipefail", "-c", code], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("exit", (c) => {
      clearTimeout(timer);
      resolve({ code: c, out });
    });
  });
}

describe("the README's commands work as printed", { skip }, () => {
  let dir: string;
  let node: Up;
  let sdk: Constellation;
  const blocks = readmeBlocks(readFileSync(join(ROOT, "README.md"), "utf8"));

  before(async () => {
    dir = makeDataDir();
    node = await up(join(dir, "data"));
    sdk = connect({ dataDir: node.dataDir });
    // What `npm start` makes (scripts/start.mjs).
    await sdk.create({ name: "hello", script: join(ROOT, "examples/hello.ts"), cpu_percent: 10, ram_mb: 64, restart: "on-failure" });
  });
  after(async () => {
    for (const s of (await sdk?.list().catch(() => [])) ?? []) await sdk.star(s.name).remove({ force: true }).catch(() => undefined);
    sdk?.close();
    if (node) await kill9(node);
    removeDataDir(dir);
  });

  it("has blocks to run, and the first sets CONSTELLATION_DATA", () => {
    assert.ok(blocks.length >= 5, `${blocks.length} blocks`);
    assert.match(blocks[0]!.code, /^export CONSTELLATION_DATA=/m);
  });

  it("runs every block, in order, without an error", async () => {
    // The first block's export, pointed at this test's node; the rest as printed.
    const env = { CONSTELLATION_DATA: node.dataDir, NO_COLOR: "1", CONSTELLATION_ENDPOINT: "", CONSTELLATION_TOKEN: "" };
    for (const [i, b] of blocks.entries()) {
      const code = b.code.replace(/^export CONSTELLATION_DATA=.*$/m, "true  # pointed at this test node by its env");
      const r = await sh(code, env);
      assert.equal(r.code, 0, `block ${i + 1} (under "${b.heading}") failed:\n${b.code}\n--- output:\n${r.out}`);
    }
  });
});
