import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseEnvFile } from "../../src/cli/env-file.js";

describe("--env-file", () => {
  it("reads KEY=VALUE lines, comments, export, quotes and escapes", () => {
    const env = parseEnvFile(['# settings', "", "MODE=batch", "export PORT = 8080", 'GREETING="hello\\n\\"world\\""', "RAW='a\\nb'", "EMPTY=", "NOTE=x # a comment"].join("\n"), "app.env");
    assert.deepEqual(env, { MODE: "batch", PORT: "8080", GREETING: 'hello\n"world"', RAW: "a\\nb", EMPTY: "", NOTE: "x" });
  });

  it("says which line is wrong, and why", () => {
    assert.throws(() => parseEnvFile("A=1\njust words\n", "app.env"), /^Error: app\.env:2: not KEY=VALUE: "just words"$/);
    assert.throws(() => parseEnvFile("1A=x", "e"), /e:1: "1A" is not a variable name/);
    assert.throws(() => parseEnvFile('A="open', "e"), /e:1: the value of A opens a double quote it does not close/);
  });
});
