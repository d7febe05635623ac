/** The agent's pure decision: store record × what the runtime has → one action. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { decide } from "../../src/agent/reconcile.js";
import type { StarRecord } from "../../src/model/records.js";
import type { StarStatus } from "../../src/model/status.js";

const record = (over: Partial<StarRecord> = {}): StarRecord => ({ name: "a", uid: "u1", spec: { name: "a", command: ["true"] }, desired: "running", node: "n", createdAt: 0, generation: 1, ...over });
const status = (state: StarStatus["state"], over: Partial<StarStatus> = {}): StarStatus => ({ id: "a", name: "a", state, restarts: 0, limits: { pids: 1 }, ready: false, limitsEnforced: true, ...over });

describe("agent reconcile decision", () => {
  it("covers each case", () => {
    assert.equal(decide(undefined, undefined), undefined);
    assert.equal(decide(undefined, { uid: "u1", generation: 1, status: status("running") }), "remove");
    assert.equal(decide(record(), undefined), "start");
    assert.equal(decide(record({ desired: "stopped" }), undefined), undefined);
    assert.equal(decide(record({ uid: "u2" }), { uid: "u1", generation: 1, status: status("running") }), "replace");
    assert.equal(decide(record(), { uid: "u1", generation: 1, status: status("running") }), undefined);
    // Ended by itself: the restart policy decided; only a newer request starts it again.
    assert.equal(decide(record(), { uid: "u1", generation: 1, status: status("exited") }), undefined);
    assert.equal(decide(record({ generation: 3 }), { uid: "u1", generation: 2, status: status("stopped") }), "resume");
    assert.equal(decide(record({ desired: "stopped", generation: 2 }), { uid: "u1", generation: 1, status: status("running") }), "stop");
    assert.equal(decide(record({ desired: "stopped", generation: 2 }), { uid: "u1", generation: 1, status: status("exited", { restartAt: 5 }) }), "stop");
    assert.equal(decide(record({ desired: "stopped" }), { uid: "u1", generation: 1, status: status("stopped") }), undefined);
  });

  it("property: applying the decision and reporting back reaches a fixed point (no action twice)", () => {
    const states = fc.constantFrom<StarStatus["state"]>("pending", "starting", "running", "exited", "failed", "oom_killed", "stopped");
    fc.assert(
      fc.property(fc.boolean(), fc.constantFrom<"running" | "stopped">("running", "stopped"), fc.integer({ min: 1, max: 5 }), fc.option(fc.record({ same: fc.boolean(), gen: fc.integer({ min: 0, max: 5 }), state: states })), (exists, desired, gen, loc) => {
        const rec = exists ? record({ desired, generation: gen }) : undefined;
        let local = loc ? { uid: loc.same ? "u1" : "u0", generation: Math.min(loc.gen, gen), status: status(loc.state) } : undefined;
        // What a runtime would do for each action.
        for (let step = 0; step < 4; step++) {
          const action = decide(rec, local);
          if (!action) return;
          if (action === "remove") local = undefined;
          else if (action === "stop") local = { ...local!, generation: rec!.generation, status: status("stopped") };
          else local = { uid: rec!.uid, generation: rec!.generation, status: status("running") };
        }
        assert.fail(`no fixed point for ${JSON.stringify({ rec, loc })}`);
      }),
    );
  });
});
