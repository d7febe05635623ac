/**
 * Dependencies point inward (docs/architecture.md): the shared vocabulary in src/model imports
 * nothing else of ours; the SDK imports only the model and itself, so a program using the SDK
 * loads no controller, runtime or store code; the agent reaches its controller only through
 * the AgentLink (issue 11), so it holds no store. Read from the sources' import lines.
 */
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const SRC = join(ROOT, "src");

/** Every module of ours that `dir`'s files import, as "file → target" (paths under src/). */
function importsOf(dir: string): Array<{ from: string; to: string }> {
  const out: Array<{ from: string; to: string }> = [];
  for (const e of readdirSync(join(SRC, dir), { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !e.name.endsWith(".ts")) continue;
    const file = join(e.parentPath, e.name);
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^"';]*?from\s+"(\.[^"]+)"/g)) {
      out.push({ from: relative(SRC, file), to: relative(SRC, resolve(dirname(file), m[1]!)).replace(/\.js$/, ".ts") });
    }
  }
  return out;
}

describe("module boundaries", () => {
  it("src/model imports nothing of ours outside it", () => {
    const out = importsOf("model").filter((i) => !i.to.startsWith("model/"));
    assert.deepEqual(out, []);
  });

  it("the SDK imports only itself and the model", () => {
    const sdk = importsOf("sdk");
    assert.ok(sdk.length > 0);
    assert.deepEqual(sdk.filter((i) => !i.to.startsWith("sdk/") && !i.to.startsWith("model/")), []);
  });

  it("the agent talks only to its controller: it imports no controller, store, API or server code", () => {
    const agent = importsOf("agent");
    assert.ok(agent.length > 0);
    assert.deepEqual(agent.filter((i) => /^(controller|store|api|server|cli)\//.test(i.to)), []);
  });

  it("the API reaches nodes only through the model's NodeLink: it imports no agent or runtime code", () => {
    const api = importsOf("api");
    assert.ok(api.length > 0);
    assert.deepEqual(api.filter((i) => /^(agent|runtime)\//.test(i.to)), []);
  });

  it("the reader finds the imports it checks", () => {
    assert.ok(importsOf("sdk").some((i) => i.to === "model/records.ts"));
  });
});
