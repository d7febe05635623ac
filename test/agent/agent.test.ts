/** The agent against an in-memory store and the fake runtime: failures are retried, not dropped. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Agent } from "../../src/agent/agent.js";
import { AgentService } from "../../src/controller/agent-service.js";
import { EventLog } from "../../src/controller/events.js";
import { type StarRecord, starKey } from "../../src/model/records.js";
import { FakeRuntime } from "../../src/runtime/fake/fake-runtime.js";
import { openStore } from "../../src/store/open.js";
import { waitFor } from "../helpers/wait.js";

/** A runtime whose first remove fails (a cgroup that will not go, say). */
class StubbornRuntime extends FakeRuntime {
  failures = 1;
  override async remove(id: string): Promise<void> {
    if (this.failures-- > 0) throw new Error("device or resource busy");
    return super.remove(id);
  }
}

describe("agent", () => {
  it("a star whose removal fails stays watched, the failure is an event, and the removal is tried again", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    const runtime = new StubbornRuntime();
    const agent = new Agent({
      link: new AgentService(store, "n1"),
      node: { name: "n1", cpuCores: 4, memoryBytes: 2 ** 33, runtimes: ["process"], limitsEnforced: true, startedAt: 0 },
      runtimes: { process: runtime },
      retryMs: 50,
    });
    try {
      await agent.start();
      const record: StarRecord = { name: "s1", uid: "u1", spec: { name: "s1", command: ["sleep", "9"] }, desired: "running", node: "n1", createdAt: 0, generation: 1 };
      await store.put(starKey("s1"), JSON.stringify(record));
      await waitFor("it to run", () => (runtime.status("s1")?.state === "running" ? true : undefined));
      await store.delete({ key: starKey("s1") });
      await waitFor("the retried removal", () => (runtime.status("s1") === undefined ? true : undefined));
      const kinds = (await new EventLog(store, "test").list({ star: "s1" })).map((e) => e.kind);
      assert.ok(kinds.includes("star.remove-failed"), kinds.join());
      await waitFor("its report to go", async () => ((await store.get("/constellation/status/s1")) ? undefined : true));
    } finally {
      await agent.stop();
      await runtime.close();
      await store.close();
    }
  });
});
