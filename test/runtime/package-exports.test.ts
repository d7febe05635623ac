/** Node's `exports` / `imports` rules (src/runtime/package-exports.ts), checked against what Node itself does. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { packageTarget } from "../../src/runtime/package-exports.js";

const IMPORT = ["node", "import"];
const REQUIRE = ["node", "require"];

describe("package exports and imports", () => {
  it("an exact key, the sugar forms, and what exports do not name", () => {
    assert.deepEqual(packageTarget("./main.js", ".", IMPORT, "exports"), { path: "./main.js" });
    assert.deepEqual(packageTarget({ import: "./m.mjs", require: "./c.cjs" }, ".", REQUIRE, "exports"), { path: "./c.cjs" });
    assert.deepEqual(packageTarget({ ".": "./main.js", "./util": "./lib/util.js" }, "./util", IMPORT, "exports"), { path: "./lib/util.js" });
    assert.equal(packageTarget({ ".": "./main.js" }, "./internal", IMPORT, "exports"), undefined);
    assert.equal(packageTarget("./main.js", "./sub", IMPORT, "exports"), undefined);
  });

  it("conditions in the order the object lists them, not ours", () => {
    const field = { ".": { default: "./default.js", node: "./node.js" } };
    assert.deepEqual(packageTarget(field, ".", IMPORT, "exports"), { path: "./default.js" });
    const nested = { ".": { browser: "./b.js", node: { require: "./n.cjs", import: "./n.mjs" }, default: "./d.js" } };
    assert.deepEqual(packageTarget(nested, ".", IMPORT, "exports"), { path: "./n.mjs" });
    assert.deepEqual(packageTarget(nested, ".", REQUIRE, "exports"), { path: "./n.cjs" });
    // a condition that applies but gives nothing falls through to the next one
    assert.deepEqual(packageTarget({ ".": { node: { worker: "./w.js" }, default: "./d.js" } }, ".", IMPORT, "exports"), { path: "./d.js" });
  });

  it("null blocks: no later condition is tried", () => {
    assert.equal(packageTarget({ ".": { node: null, default: "./d.js" } }, ".", IMPORT, "exports"), undefined);
    assert.equal(packageTarget({ "./*": "./*.js", "./private/*": null }, "./private/x", IMPORT, "exports"), undefined);
  });

  it("the pattern with the longest part before * wins, whatever the key order", () => {
    const field = { "./features/*": "./src/features/*.js", "./features/private/*": "./src/private/*.js", "./features/*.js": "./src/js/*.js" };
    assert.deepEqual(packageTarget(field, "./features/private/a", IMPORT, "exports"), { path: "./src/private/a.js" });
    assert.deepEqual(packageTarget(field, "./features/x", IMPORT, "exports"), { path: "./src/features/x.js" });
    // equal prefixes: the longer key (its trailer) wins
    assert.deepEqual(packageTarget(field, "./features/y.js", IMPORT, "exports"), { path: "./src/js/y.js" });
    // * may stand for several segments
    assert.deepEqual(packageTarget({ "./*": "./lib/*.js" }, "./a/b", IMPORT, "exports"), { path: "./lib/a/b.js" });
  });

  it("arrays: the first valid target", () => {
    assert.deepEqual(packageTarget({ ".": ["not-relative", "./ok.js"] }, ".", IMPORT, "exports"), { path: "./ok.js" });
  });

  it("an exports target never leaves its package", () => {
    for (const bad of ["../outside.js", "/etc/passwd", "./a/../../x.js", "./node_modules/other/x.js", "other-package", "file:///etc/passwd"]) {
      assert.equal(packageTarget({ ".": bad }, ".", IMPORT, "exports"), undefined, bad);
    }
    assert.equal(packageTarget({ "./*": "./lib/*" }, "./../../secret", IMPORT, "exports"), undefined);
  });

  it("imports: #names, to a file of the package or to another package", () => {
    const imports = { "#db": { node: "pg", default: "./db-stub.js" }, "#util/*": "./src/util/*.js", "#up": "../x.js" };
    assert.deepEqual(packageTarget(imports, "#db", IMPORT, "imports"), { bare: "pg" });
    assert.deepEqual(packageTarget(imports, "#util/str", IMPORT, "imports"), { path: "./src/util/str.js" });
    assert.equal(packageTarget(imports, "#up", IMPORT, "imports"), undefined);
    assert.equal(packageTarget(imports, "#nope", IMPORT, "imports"), undefined);
    assert.equal(packageTarget("./x.js", "#x", IMPORT, "imports"), undefined, "imports has no sugar form");
  });
});
