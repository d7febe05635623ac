import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { decideRestart, endState } from "../../src/runtime/restart.js";
import { type StarState } from "../../src/model/status.js";

const policy = { restart: "on-failure" as const, backoff_ms: 100, max_backoff_ms: 5000, max_restarts: 5, restart_window_s: 60 };

describe("restart rules", () => {
  it("maps a run's end to its state", () => {
    assert.equal(endState({ exitCode: 0, signal: null, oomKilled: false, stopRequested: false }), "exited");
    assert.equal(endState({ exitCode: 1, signal: null, oomKilled: false, stopRequested: false }), "failed");
    assert.equal(endState({ exitCode: null, signal: "SIGKILL", oomKilled: true, stopRequested: false }), "oom_killed");
    assert.equal(endState({ exitCode: null, signal: "SIGTERM", oomKilled: false, stopRequested: true }), "stopped");
  });

  it("follows the policy: never, on-failure, always; never after a requested stop", () => {
    const h = { restarts: [], streak: 0 };
    assert.equal(decideRestart({ ...policy, restart: "never" }, "failed", h, 0, 0).restart, false);
    assert.equal(decideRestart(policy, "exited", h, 0, 0).restart, false);
    assert.equal(decideRestart(policy, "failed", h, 0, 0).restart, true);
    assert.equal(decideRestart(policy, "oom_killed", h, 0, 0).restart, true);
    assert.equal(decideRestart({ ...policy, restart: "always" }, "exited", h, 0, 0).restart, true);
    assert.equal(decideRestart({ ...policy, restart: "always" }, "stopped", h, 0, 0).restart, false);
  });

  it("backs off exponentially up to the maximum and resets after a stable run", () => {
    let h = { restarts: [] as number[], streak: 0 };
    const delays: number[] = [];
    let now = 0;
    for (let i = 0; i < 5; i++) {
      const d = decideRestart({ ...policy, max_restarts: 100 }, "failed", h, now, 10);
      assert.ok(d.restart);
      delays.push(d.delayMs);
      h = d.history;
      now += d.delayMs + 10;
    }
    assert.deepEqual(delays, [100, 200, 400, 800, 1600]);
    const stable = decideRestart({ ...policy, max_restarts: 100 }, "failed", h, now, 60_000);
    assert.ok(stable.restart && stable.delayMs === 100, "a 60 s run resets the backoff");
  });

  it("property: never more than max_restarts within any window, delays within bounds", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ ranFor: fc.integer({ min: 0, max: 20_000 }), state: fc.constantFrom<StarState>("failed", "oom_killed", "exited") }), {
          maxLength: 60,
        }),
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 1, max: 30 }),
        (runs, maxRestarts, windowS) => {
          const p = { ...policy, restart: "always" as const, max_restarts: maxRestarts, restart_window_s: windowS };
          let h = { restarts: [] as number[], streak: 0 };
          let now = 0;
          const at: number[] = [];
          for (const run of runs) {
            now += run.ranFor;
            const d = decideRestart(p, run.state, h, now, run.ranFor);
            h = d.history;
            if (!d.restart) break;
            assert.ok(d.delayMs >= 0 && d.delayMs <= p.max_backoff_ms);
            now += d.delayMs;
            at.push(now);
          }
          for (const t of at) assert.ok(at.filter((u) => u > t - windowS * 1000 && u <= t).length <= maxRestarts);
        },
      ),
    );
  });
});
