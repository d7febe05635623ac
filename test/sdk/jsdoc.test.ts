/**
 * The SDK documents itself (issue 10): every public function and method of the package's entry
 * has a JSDoc comment with an example, so an editor shows how to call it.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import ts from "typescript";

const ROOT = new URL("../../../", import.meta.url);

/** Exported functions and the public methods and getters of exported classes without an @example. */
function withoutExample(path: string): string[] {
  const file = fileURLToPath(new URL(path, ROOT));
  const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const hasExample = (n: ts.Node) => ts.getJSDocTags(n).some((t) => t.tagName.text === "example");
  const flags = (n: ts.Declaration) => ts.getCombinedModifierFlags(n);
  const missing: string[] = [];
  for (const st of sf.statements) {
    if (ts.isFunctionDeclaration(st) && flags(st) & ts.ModifierFlags.Export && !hasExample(st)) missing.push(st.name?.text ?? "?");
    if (!ts.isClassDeclaration(st) || !(flags(st) & ts.ModifierFlags.Export)) continue;
    for (const m of st.members) {
      if (!ts.isMethodDeclaration(m) && !ts.isGetAccessorDeclaration(m)) continue;
      if (flags(m) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected) || m.name.getText().startsWith("#")) continue;
      if (!hasExample(m)) missing.push(`${st.name?.text ?? "?"}.${m.name.getText()}`);
    }
  }
  return missing;
}

describe("SDK documentation", () => {
  it("every public function and method of the SDK has a JSDoc example", () => {
    assert.deepEqual(withoutExample("src/sdk/client.ts"), []);
  });
});
