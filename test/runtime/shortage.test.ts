/** The node's own shortage told from the star's failure (issue 9), by errno or by the launcher's words. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { StartFailedError } from "../../src/model/errors.js";
import { nodeShortage } from "../../src/runtime/shortage.js";

describe("the node's own shortage", () => {
  it("is found by errno anywhere in the causes, or by the C library's words the launcher passed on", () => {
    assert.equal(nodeShortage(Object.assign(new Error("open"), { code: "EMFILE" })), "EMFILE");
    assert.equal(nodeShortage(new Error("start failed", { cause: Object.assign(new Error("x"), { code: "ENOSPC" }) })), "ENOSPC");
    assert.equal(nodeShortage(new StartFailedError("dy", "/data/runtime/stars/dy/ctl: No space left on device")), "ENOSPC");
    assert.equal(nodeShortage(new StartFailedError("a", "clone: Cannot allocate memory")), "ENOMEM");
    assert.equal(nodeShortage(new StartFailedError("a", "pipe: Too many open files in system")), "ENFILE");
    assert.equal(nodeShortage(new StartFailedError("a", "pipe: Too many open files")), "EMFILE");
  });

  it("is not the star's own failure", () => {
    assert.equal(nodeShortage(new StartFailedError("a", "exec python3: Permission denied")), undefined);
    assert.equal(nodeShortage(Object.assign(new Error("no such file"), { code: "ENOENT" })), undefined);
    assert.equal(nodeShortage(undefined), undefined);
    assert.equal(nodeShortage("EMFILE"), undefined);
  });
});
