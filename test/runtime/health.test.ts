import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type HealthState, initialHealth, nextHealth } from "../../src/runtime/health.js";

const cfg = { failure_threshold: 2, success_threshold: 2, kill_after: 4 };
const ok = { ok: true as const };
const bad = { ok: false as const, error: "503" };

describe("health rules", () => {
  it("becomes ready after success_threshold successes, unready after failure_threshold failures, kills at kill_after", () => {
    let s: HealthState = initialHealth;
    const step = (r: typeof ok | typeof bad) => {
      const n = nextHealth(s, r, cfg);
      s = n.state;
      return [s.ready, n.kill];
    };
    assert.deepEqual(step(ok), [false, false]);
    assert.deepEqual(step(ok), [true, false]);
    assert.deepEqual(step(bad), [true, false], "one failure is tolerated");
    assert.deepEqual(step(ok), [true, false], "and forgotten after a success");
    assert.deepEqual(step(bad), [true, false]);
    assert.deepEqual(step(bad), [false, false]);
    assert.equal(s.lastError, "503");
    assert.deepEqual(step(bad), [false, false]);
    assert.deepEqual(step(bad), [false, true]);
    assert.deepEqual(nextHealth(s, bad, { ...cfg, kill_after: 0 }).kill, false, "kill_after 0 never kills");
  });
});
