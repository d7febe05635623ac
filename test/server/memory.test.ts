/**
 * A node's process gives back the memory malloc holds free (src/server/memory.ts): after a burst
 * whose allocations are freed around a few that stay, RSS stays up until malloc_trim hands the
 * free pages back. Run in a child process, so nothing else this test process does moves its RSS.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { trimMalloc } from "../../src/server/memory.js";
import { testDir } from "../helpers/dirs.js";

const MEMORY = fileURLToPath(new URL("../../src/server/memory.js", import.meta.url));

describe("giving free memory back", () => {
  it("is available here (glibc; the addon is built with the launcher)", () => {
    assert.equal(typeof trimMalloc(), "boolean");
  });

  it("returns the pages a burst freed around memory still in use", () => {
    // 40,000 blocks of 2 KB (80 MB, under malloc's mmap threshold: from its arenas), every
    // 64th kept: nearly all freed, but no arena can shrink past the kept ones.
    const child = `
      const { trimMalloc } = await import(${JSON.stringify(MEMORY)});
      const rss = () => process.memoryUsage.rss();
      const kept = [];
      let blocks = [];
      for (let i = 0; i < 40000; i++) blocks.push(Buffer.alloc(2048, i));
      blocks.forEach((b, i) => { if (i % 64 === 0) kept.push(b); });
      blocks = null;
      for (let i = 0; i < 4; i++) { gc(); await new Promise((r) => setTimeout(r, 50)); }
      const before = rss();
      const released = trimMalloc();
      const after = rss();
      console.log(JSON.stringify({ before, after, released, kept: kept.length }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", child], { encoding: "utf8" })) as { before: number; after: number; released: boolean };
    assert.equal(out.released, true);
    const mb = (b: number) => (b / 2 ** 20).toFixed(1);
    assert.ok(out.before - out.after > 40 * 2 ** 20, `RSS ${mb(out.before)} MB → ${mb(out.after)} MB: less than 40 MB given back`);
  });

  it("an addon in its place that is not it (no trim) is not used, and nothing throws", async () => {
    const dir = await testDir("constellation-trim-");
    try {
      // The module's layout: lib/server/memory.js loads native/malloc-trim.node.
      mkdirSync(join(dir, "lib", "server"), { recursive: true });
      mkdirSync(join(dir, "native"));
      copyFileSync(MEMORY, join(dir, "lib", "server", "memory.js"));
      writeFileSync(join(dir, "package.json"), '{"type":"module"}');
      const c = join(dir, "other.c");
      writeFileSync(c, "typedef struct napi_env__ *napi_env; typedef struct napi_value__ *napi_value;\n__attribute__((visibility(\"default\"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) { (void)env; return exports; }\n");
      execFileSync(process.env.CC ?? "cc", ["-shared", "-fPIC", "-o", join(dir, "native", "malloc-trim.node"), c]);
      const child = `
        const { trimMalloc, keepTrimmingMalloc } = await import(${JSON.stringify(join(dir, "lib", "server", "memory.js"))});
        const stop = keepTrimmingMalloc(10);
        console.log(JSON.stringify({ trimmed: trimMalloc() ?? null }));
        stop();
      `;
      const out = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", child], { encoding: "utf8" })) as { trimmed: boolean | null };
      assert.deepEqual(out, { trimmed: null });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
