/** The deployment controller's pure core (src/deploy/rollout.ts): rolling updates, failures, rollback, keeping the count. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type PlanInput, type StarFact, plan } from "../../src/deploy/rollout.js";
import type { UpdatePolicy } from "../../src/model/deployment.js";

const update = (u: Partial<UpdatePolicy> = {}): UpdatePolicy => ({ strategy: "rolling", max_surge: 1, max_unavailable: 0, min_ready_ms: 0, progress_deadline_ms: 60_000, auto_rollback: true, ...u });
const star = (name: string, hash: string, s: Partial<StarFact> = {}): StarFact => ({ name, hash, createdAt: 0, state: "running", ready: true, runningSince: 0, restarts: 0, ...s });
const input = (p: Partial<PlanInput>): PlanInput => ({ count: 3, hash: "new", revision: 2, update: update(), rollout: { revision: 2, state: "progressing" }, stars: [], now: 1000, ...p });

describe("rollout plan", () => {
  it("a first deploy makes every star at once (nothing old to keep available)", () => {
    const p = plan(input({ update: update({ max_surge: 1 }) }));
    // count + surge − 0 stars: room for 4, 3 needed.
    assert.equal(p.create, 3);
    assert.deepEqual(p.remove, []);
    assert.equal(p.rollout.state, "progressing");
  });

  it("max_surge 1, max_unavailable 0: one new star, then one old goes once it is available", () => {
    const old = ["a", "b", "c"].map((n) => star(n, "old"));
    const p1 = plan(input({ stars: old }));
    assert.equal(p1.create, 1);
    assert.deepEqual(p1.remove, []);
    const p2 = plan(input({ stars: [...old, star("n1", "new", { ready: false, state: "pending" })] }));
    assert.deepEqual([p2.create, p2.remove.length], [0, 0], "waits for the new star");
    const p3 = plan(input({ stars: [...old, star("n1", "new")] }));
    assert.equal(p3.remove.length, 1);
    assert.equal(p3.create, 1, "the room freed is used at once");
    assert.match(p3.remove[0]!.why, /replaced by revision 2/);
    const done = plan(input({ stars: ["n1", "n2", "n3"].map((n) => star(n, "new")) }));
    assert.equal(done.rollout.state, "complete");
    assert.equal(done.rollout.message, "3 of 3 stars of revision 2 available");
  });

  it("old stars that are not available go first; min_ready_ms holds a new star back", () => {
    const stars = [star("a", "old"), star("b", "old", { ready: false }), star("c", "old"), star("n1", "new", { runningSince: 900 })];
    const held = plan(input({ stars, update: update({ min_ready_ms: 500 }) }));
    assert.deepEqual(held.remove.map((r) => r.name), ["b"], "only the unready old one: n1 is not available yet");
    assert.equal(held.create, 1, "b's room is used (count + surge)");
    const after = plan(input({ stars: [star("a", "old"), star("c", "old"), star("n1", "new", { runningSince: 900 }), star("n2", "new", { runningSince: 900 })], now: 2000, update: update({ min_ready_ms: 500 }) }));
    assert.deepEqual(after.remove.map((r) => r.name), ["a"], "one old star per new one available beyond the count");
  });

  it("an old star that serves counts as available even before min_ready_ms (it was deployed a moment ago): removed only within max_unavailable", () => {
    const young = ["a", "b", "c"].map((n) => star(n, "old", { runningSince: 900 }));
    const p = plan(input({ stars: young, update: update({ max_surge: 0, max_unavailable: 1, min_ready_ms: 500 }) }));
    assert.equal(p.remove.length, 1, JSON.stringify(p.remove));
    assert.equal(p.create, 1);
  });

  it("a new star that fails fails the rollout, and goes back to the last good revision", () => {
    const stars = [star("a", "old"), star("b", "old"), star("c", "old"), star("n1", "new", { state: "failed", ready: false, why: "exit code 1" })];
    const p = plan(input({ stars, lastGood: 1 }));
    assert.deepEqual(p.rollback, { to: 1, reason: "star n1 of revision 2 failed: exit code 1" });
    assert.equal(p.create, 0);
    const noGood = plan(input({ stars }));
    assert.equal(noGood.rollback, undefined);
    assert.equal(noGood.rollout.state, "failed");
    assert.match(noGood.rollout.message, /no earlier revision completed to go back to/);
    // Crash loops and the deadline fail it too.
    assert.match(plan(input({ stars: [star("n1", "new", { restarts: 3, why: "exit code 2" })], lastGood: 1 })).rollback!.reason, /restarted 3 times \(exit code 2\)/);
    assert.match(plan(input({ stars: [star("n1", "new", { ready: false, createdAt: 0 })], now: 61_000, lastGood: 1 })).rollback!.reason, /not ready within 60 s \(failing its health check\)/);
    // A failed rollout holds.
    const held = plan(input({ stars, rollout: { revision: 2, state: "failed" } }));
    assert.deepEqual([held.create, held.remove.length, held.rollout.state], [0, 0, "failed"]);
  });

  it("once complete it keeps its count: a failed star is replaced after the backoff; scale up and down", () => {
    const steady = { rollout: { revision: 2, state: "complete" as const } };
    const stars = [star("n1", "new"), star("n2", "new", { state: "failed", ready: false }), star("n3", "new")];
    const waiting = plan(input({ ...steady, stars, replaceFrom: 5000 }));
    assert.deepEqual([waiting.create, waiting.remove.length, waiting.wakeAt], [0, 0, 5000]);
    const replaced = plan(input({ ...steady, stars, now: 5000, replaceFrom: 5000 }));
    assert.deepEqual(replaced.remove.map((r) => r.name), ["n2"]);
    assert.equal(replaced.create, 1);
    assert.equal(replaced.rollout.state, "complete");
    // Scaled down: the ones worth least go (not running, not ready, then newest).
    const four = [star("n1", "new", { createdAt: 1 }), star("n2", "new", { createdAt: 2 }), star("n3", "new", { createdAt: 3, ready: false }), star("n4", "new", { createdAt: 4 })];
    assert.deepEqual(plan(input({ ...steady, count: 2, stars: four })).remove.map((r) => r.name), ["n3", "n4"]);
    assert.equal(plan(input({ ...steady, count: 6, stars: four })).create, 2);
    assert.deepEqual(plan(input({ ...steady, count: 0, stars: four })).remove.length, 4);
  });

  it("property: a rolling update never has more than count + max_surge stars, nor fewer than count − max_unavailable available, and ends with every star new", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 3 }),
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 64, maxLength: 64 }),
        (count, surge, unavailable, readyAfter) => {
          fc.pre(surge + unavailable > 0);
          const u = update({ max_surge: surge, max_unavailable: unavailable });
          let stars: StarFact[] = Array.from({ length: count }, (_, i) => star(`o${i}`, "old"));
          let made = 0;
          const bornAt = new Map<string, number>();
          for (let step = 0; step < 200; step++) {
            // Stars become ready some steps after they are made.
            stars = stars.map((s) => (s.hash === "new" && !s.ready && step >= bornAt.get(s.name)! ? { ...s, ready: true, state: "running" } : s));
            const p = plan({ count, hash: "new", revision: 2, update: u, rollout: { revision: 2, state: "progressing" }, stars, now: step });
            stars = stars.filter((s) => !p.remove.some((r) => r.name === s.name));
            const avail = stars.filter((s) => s.ready).length;
            assert.ok(avail >= count - unavailable, `step ${step}: ${avail} available of ${count} (max_unavailable ${unavailable})`);
            for (let i = 0; i < p.create; i++) {
              const name = `n${made}`;
              bornAt.set(name, step + readyAfter[made % readyAfter.length]!);
              made++;
              stars.push(star(name, "new", { ready: false, state: "pending", createdAt: step }));
            }
            assert.ok(stars.length <= count + surge, `step ${step}: ${stars.length} stars (count ${count} + surge ${surge})`);
            if (p.rollout.state === "complete") {
              assert.equal(stars.length, count);
              assert.ok(stars.every((s) => s.hash === "new" && s.ready));
              return;
            }
          }
          assert.fail("did not complete in 200 steps");
        },
      ),
      { numRuns: 300 },
    );
  });
});
