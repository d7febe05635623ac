/** The controller's admission rules as pure functions, checked by properties (fast-check). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { effectiveLimits, fits, memoryBudget, withinParent } from "../../src/controller/admission.js";
import { holdsMemory, leftoverMemory, reportFacts } from "../../src/controller/controller.js";
import { orphans, subtree } from "../../src/controller/family.js";
import type { StarObserved, StarRecord } from "../../src/model/records.js";
import { ParentLimitError } from "../../src/model/errors.js";
import { DEFAULT_NODE_LIMITS, type StarSpecInput, parseStarSpec } from "../../src/model/spec.js";

const MB = 2 ** 20;

describe("memory budget", () => {
  it("a star fits exactly when the promised memory plus its own is at most overcommit × the node's", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 40 }),
        fc.double({ min: 0.1, max: 4, noNaN: true }),
        fc.array(fc.integer({ min: 1, max: 2 ** 34 }), { maxLength: 50 }),
        fc.integer({ min: 1, max: 2 ** 36 }),
        (memory, overcommit, committed, request) => {
          const b = memoryBudget(memory, overcommit, committed);
          const used = committed.reduce((a, x) => a + x, 0);
          assert.equal(b.usedBytes, used);
          assert.equal(b.allowedBytes, Math.floor(memory * overcommit));
          assert.equal(b.leftBytes, Math.max(0, b.allowedBytes - used));
          assert.equal(fits(b, request), used + request <= b.allowedBytes);
          if (fits(b, request)) assert.ok(request <= b.leftBytes);
        },
      ),
    );
  });

  it("admitting stars one by one until one is refused: never over the budget, and the refused one would not fit", () => {
    fc.assert(
      fc.property(fc.integer({ min: 64, max: 65_536 }), fc.constantFrom(1, 1.25, 1.5, 2), fc.array(fc.integer({ min: 1, max: 8192 }), { minLength: 1, maxLength: 100 }), (memMb, oc, asks) => {
        const admitted: number[] = [];
        for (const ask of asks) {
          const b = memoryBudget(memMb * MB, oc, admitted);
          if (!fits(b, ask * MB)) {
            assert.ok(b.usedBytes + ask * MB > b.allowedBytes);
            break;
          }
          admitted.push(ask * MB);
        }
        assert.ok(admitted.reduce((a, x) => a + x, 0) <= Math.floor(memMb * MB * oc));
      }),
    );
  });

  it("a star holds memory while it should run and has not ended for good on the latest request", () => {
    const record: StarRecord = { name: "s", uid: "u", spec: { name: "s", command: ["x"] }, desired: "running", createdAt: 0, generation: 2 };
    const report = (state: string, generation = 2, extra: object = {}) =>
      reportFacts({ uid: "u", node: "n", generation, updatedAt: 0, status: { id: "s", name: "s", state, restarts: 0, limits: { pids: 1 }, ready: false, limitsEnforced: true, ...extra } } as StarObserved);
    assert.equal(holdsMemory(record, undefined), true, "not started yet");
    assert.equal(holdsMemory(record, report("running")), true);
    assert.equal(holdsMemory(record, report("exited")), false);
    assert.equal(holdsMemory(record, report("failed", 2, { restartAt: 1 })), true, "a restart is pending");
    assert.equal(holdsMemory(record, report("exited", 1)), true, "started again: the report is about the run before");
    assert.equal(holdsMemory(record, { ...report("exited"), uid: "old" }), true, "a report about an earlier star of the name");
    assert.equal(holdsMemory({ ...record, desired: "stopped" }, report("running")), true, "asked to stop, still in its grace");
    assert.equal(holdsMemory({ ...record, desired: "stopped" }, report("stopped")), false);
    assert.equal(holdsMemory({ ...record, desired: "stopped" }, { ...report("running"), uid: "old" }), false, "another star's run is counted as a leftover");
  });

  it("a run whose star is gone or made again holds its memory until it ends", () => {
    const records: StarRecord[] = [{ name: "a", uid: "a2", spec: { name: "a", command: ["x"] }, desired: "running", createdAt: 0, generation: 1 }];
    const run = (uid: string, state: string, node = "n", memoryBytes?: number) =>
      reportFacts({ uid, node, generation: 1, updatedAt: 0, status: { id: "x", name: "x", state, restarts: 0, limits: { pids: 1, memoryBytes }, ready: false, limitsEnforced: true } } as StarObserved);
    const observed = new Map([
      ["a", run("a1", "running", "n", 100)], // made again: the old run still goes
      ["gone", run("g", "running", "n")], // removed, still stopping (no limit reported: the fallback)
      ["done", run("d", "stopped", "n", 300)],
      ["elsewhere", run("e", "running", "m", 400)],
    ]);
    assert.deepEqual(leftoverMemory(records, observed, "n", 7), [100, 7]);
    assert.deepEqual(leftoverMemory(records, new Map([["a", run("a2", "running", "n", 100)]]), "n", 7), [], "the star's own run is its record's");
  });
});

describe("a child within its parent's limits", () => {
  const limitFields = fc.record(
    {
      cpu_percent: fc.integer({ min: 1, max: 400 }),
      ram_mb: fc.integer({ min: 4, max: 4096 }),
      disk_mb: fc.integer({ min: 8, max: 4096 }),
      pids: fc.integer({ min: 1, max: 4096 }),
      nofile: fc.integer({ min: 16, max: 65_536 }),
      log_max_mb: fc.integer({ min: 1, max: 20 }),
      log_max_files: fc.integer({ min: 1, max: 5 }),
      stop_grace_ms: fc.integer({ min: 0, max: 60_000 }),
    },
    { requiredKeys: [] },
  );

  it("either refused naming a field, or every effective limit is at most the parent's, and left-out limits are the parent's", () => {
    fc.assert(
      fc.property(limitFields, limitFields, (p, c) => {
        const parent: StarSpecInput = { name: "p", command: ["x"], ...p };
        const child: StarSpecInput = { name: "c", command: ["x"], ...c };
        let out: StarSpecInput;
        try {
          out = withinParent(child, parent, "p", DEFAULT_NODE_LIMITS);
        } catch (err) {
          assert.ok(err instanceof ParentLimitError, String(err));
          assert.match(err.message, /but its parent star p has/);
          return;
        }
        const cl = effectiveLimits(parseStarSpec(out), DEFAULT_NODE_LIMITS);
        const pl = effectiveLimits(parseStarSpec(parent), DEFAULT_NODE_LIMITS);
        if (pl.cpuMillis !== undefined) assert.ok(cl.cpuMillis! <= pl.cpuMillis);
        assert.ok(cl.memoryBytes! <= pl.memoryBytes!);
        if (pl.diskBytes !== undefined) assert.ok(cl.diskBytes! <= pl.diskBytes);
        assert.ok(cl.pids <= pl.pids);
        assert.ok(cl.nofile! <= pl.nofile!);
        assert.ok(parseStarSpec(out).stop_grace_ms <= parseStarSpec(parent).stop_grace_ms);
        for (const f of Object.keys(p) as Array<keyof typeof p>) if (c[f] === undefined) assert.equal(out[f], p[f], f);
        for (const f of Object.keys(c) as Array<keyof typeof c>) assert.equal(out[f], c[f], `${f} as the child asked`);
      }),
      { numRuns: 500 },
    );
  });
});

describe("families of stars", () => {
  /** A random forest: star i's owner is one of the stars before it, or none. */
  const forest = fc.array(fc.option(fc.nat(), { nil: undefined }), { minLength: 1, maxLength: 30 }).map((owners) =>
    owners.map((o, i): StarRecord => {
      const r: StarRecord = { name: `s${i}`, uid: `u${i}`, spec: { name: `s${i}` }, desired: "running", createdAt: 0, generation: 1 };
      if (o !== undefined && i > 0) r.owner = { name: `s${o % i}`, uid: `u${o % i}` };
      return r;
    }),
  );
  const ancestors = (records: StarRecord[], r: StarRecord) => {
    const out: string[] = [];
    for (let at: StarRecord | undefined = r; at?.owner; at = records.find((x) => x.uid === at!.owner!.uid)) out.push(at.owner.uid);
    return out;
  };

  it("a subtree is the star and exactly the stars whose chain of owners reaches it, parents first", () => {
    fc.assert(
      fc.property(forest, fc.nat(), (records, pick) => {
        const root = records[pick % records.length]!;
        const tree = subtree(records, root);
        const expected = records.filter((r) => r === root || ancestors(records, r).includes(root.uid));
        assert.deepEqual(new Set(tree), new Set(expected));
        assert.equal(tree[0], root);
        for (const r of tree.slice(1)) assert.ok(tree.indexOf(tree.find((x) => x.uid === r.owner!.uid)!) < tree.indexOf(r));
        assert.deepEqual(subtree(records, { name: root.name, uid: "another-creation" }), [], "the same name, made again, is not the root");
      }),
    );
  });

  it("with a star gone, its descendants are orphans, and nothing else is", () => {
    fc.assert(
      fc.property(forest, fc.nat(), (records, pick) => {
        const gone = records[pick % records.length]!;
        const left = records.filter((r) => r !== gone);
        const below = subtree(records, gone).slice(1);
        assert.deepEqual(new Set(orphans(left)), new Set(below));
        assert.deepEqual(orphans(records), []);
      }),
    );
  });
});
