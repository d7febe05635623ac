/** The shared lifecycle (supervisor) through the fake runtime: no processes, same rules. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CapacityExceededError, StarNotFoundError, StartFailedError } from "../../src/model/errors.js";
import { FakeRuntime } from "../../src/runtime/fake/fake-runtime.js";
import type { StarStatus } from "../../src/model/status.js";
import { waitFor } from "../helpers/wait.js";

describe("fake runtime (shared lifecycle)", () => {
  it("start, crash, restart with backoff, give up at the cap; every state change is observed", async () => {
    const rt = new FakeRuntime();
    const states: string[] = [];
    rt.onChange((s) => states.push(s.state));
    await rt.start("web", { name: "web", command: ["srv"], restart: "always", backoff_ms: 5, max_restarts: 2 });
    for (let i = 0; i < 3; i++) {
      await waitFor(`run ${i + 1}`, () => rt.launches.length === i + 1 && rt.status("web")?.state === "running");
      rt.exit("web", { exitCode: 2 });
    }
    const end = await rt.wait("web");
    assert.equal(end.state, "failed");
    assert.equal(end.restarts, 2);
    assert.match(end.reason ?? "", /exited with code 2; restarted 2 times/);
    assert.deepEqual(states.slice(0, 6), ["starting", "running", "failed", "starting", "running", "failed"]);
  });

  it("stop ends a run as stopped with no restart; OOM is reported; unknown stars are typed errors", async () => {
    const rt = new FakeRuntime();
    await rt.start("a", { name: "a", command: ["x"], restart: "always" });
    const stopped = await rt.stop("a");
    assert.equal(stopped.state, "stopped");
    assert.equal(rt.launches.length, 1);
    await rt.start("b", { name: "b", command: ["x"], ram_mb: 10 });
    rt.exit("b", { signal: "SIGKILL", oomKilled: true });
    assert.equal((await rt.wait("b")).state, "oom_killed");
    assert.throws(() => rt.wait("nope"), StarNotFoundError);
    await assert.rejects(rt.start("c", { name: "c", command: ["x"], cpu_cores: 99 }), CapacityExceededError);
    rt.failNextLaunch.set("d", "image of nothing");
    await assert.rejects(rt.start("d", { name: "d", command: ["x"] }), StartFailedError);
    assert.equal(rt.status("d")?.state, "failed");
  });

  it("holds 10,000 stars in one process quickly (the 1,000-node simulations need this)", async () => {
    const rt = new FakeRuntime({ cpuCores: 64, memoryBytes: 2 ** 40 });
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 10_000 }, (_, i) => rt.start(`s-${i}`, { name: `s-${i}`, command: ["x"], ram_mb: 4 })));
    const running = rt.list().filter((s: StarStatus) => s.state === "running").length;
    assert.equal(running, 10_000);
    assert.ok(performance.now() - t0 < 10_000, `took ${(performance.now() - t0).toFixed(0)} ms`);
  });
});

describe("fake runtime: stop while starting", () => {
  it("a star stopped while it is still starting ends stopped, not running", async () => {
    const rt = new FakeRuntime();
    let stopped: Promise<StarStatus> | undefined;
    rt.onChange((s) => {
      if (s.id === "slow" && s.state === "starting" && !stopped) stopped = rt.stop("slow");
    });
    await rt.start("slow", { name: "slow", command: ["x"], restart: "always" });
    assert.ok(stopped, "stop was called while starting");
    const end = await stopped;
    assert.equal(end.state, "stopped");
    assert.equal(end.signal, "SIGTERM", "asked to stop first (a grace period), not killed outright");
    assert.equal(rt.status("slow")?.state, "stopped");
    assert.equal(rt.launches.length, 1, "and not restarted");
  });
});
