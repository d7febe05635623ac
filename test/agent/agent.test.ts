/** The agent against an in-memory store and the fake runtime: failures are retried, not dropped. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Agent } from "../../src/agent/agent.js";
import { AgentService } from "../../src/controller/agent-service.js";
import { EventLog } from "../../src/controller/events.js";
import { type StarObserved, type StarRecord, starKey } from "../../src/model/records.js";
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

  it("a star's reports land in the order they were made: a slow early one never overwrites a later one", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    const runtime = new FakeRuntime();
    /** The first report of each star is held on its way (a slow link, a busy store) until let go. */
    class SlowFirstReport extends AgentService {
      readonly held = new Set<string>();
      release: (() => void) | undefined;
      landed: string[] = [];
      override async report(name: string, o: StarObserved): Promise<void> {
        if (!this.held.has(name)) {
          this.held.add(name);
          await new Promise<void>((r) => (this.release = r));
        }
        await super.report(name, o);
        this.landed.push(o.status.state);
      }
    }
    const link = new SlowFirstReport(store, "n1");
    const agent = new Agent({ link, node: { name: "n1", cpuCores: 4, memoryBytes: 2 ** 33, runtimes: ["process"], limitsEnforced: true, startedAt: 0 }, runtimes: { process: runtime } });
    try {
      await agent.start();
      const record: StarRecord = { name: "s1", uid: "u1", spec: { name: "s1", command: ["sleep", "9"], restart: "never" }, desired: "running", node: "n1", createdAt: 0, generation: 1 };
      await store.put(starKey("s1"), JSON.stringify(record));
      await waitFor("it to run, its first report held", () => (runtime.status("s1")?.state === "running" && link.release ? true : undefined));
      // It ends while its first report is on its way; then that report arrives.
      runtime.exit("s1", { exitCode: 1 });
      const ended = await waitFor("it to end", () => (runtime.status("s1")?.state !== "running" ? runtime.status("s1")?.state : undefined));
      link.release!();
      await waitFor("the reports to land, the end's among them", () => (link.landed.includes(ended!) && link.landed.length >= 2 ? true : undefined), { timeoutMs: 5000 });
      await agent.stop(); // nothing more on its way
      const stored = JSON.parse((await store.get("/constellation/status/s1"))!.value) as StarObserved;
      assert.equal(stored.status.state, ended, `the store keeps the latest state; landed in this order: ${link.landed.join(", ")}`);
    } finally {
      await agent.stop();
      await runtime.close();
      await store.close();
    }
  });

  it("a report that never lands holds the star's later reports and the agent's stop only until its deadline", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    const runtime = new FakeRuntime();
    /** The first report of each star never settles (a link that swallows it). */
    class Swallows extends AgentService {
      readonly seen = new Set<string>();
      override async report(name: string, o: StarObserved): Promise<void> {
        if (!this.seen.has(name)) {
          this.seen.add(name);
          return new Promise(() => undefined);
        }
        return super.report(name, o);
      }
    }
    const agent = new Agent({ link: new Swallows(store, "n1"), node: { name: "n1", cpuCores: 4, memoryBytes: 2 ** 33, runtimes: ["process"], limitsEnforced: true, startedAt: 0 }, runtimes: { process: runtime }, reportDeadlineMs: 300, retryMs: 50 });
    try {
      await agent.start();
      const record: StarRecord = { name: "s1", uid: "u1", spec: { name: "s1", command: ["sleep", "9"], restart: "never" }, desired: "running", node: "n1", createdAt: 0, generation: 1 };
      await store.put(starKey("s1"), JSON.stringify(record));
      await waitFor("it to run", () => (runtime.status("s1")?.state === "running" ? true : undefined));
      runtime.exit("s1", { exitCode: 1 });
      const ended = await waitFor("it to end", () => (runtime.status("s1")?.state !== "running" ? runtime.status("s1")?.state : undefined));
      // Its end is reported though the first report never landed.
      await waitFor("its end in the store", async () => {
        const kv = await store.get("/constellation/status/s1");
        return kv && (JSON.parse(kv.value) as StarObserved).status.state === ended ? true : undefined;
      }, { timeoutMs: 5000 });
    } finally {
      const stopped = agent.stop().then(() => true);
      assert.equal(await Promise.race([stopped, new Promise((r) => setTimeout(r, 5000, false))]), true, "the agent stopped");
      await runtime.close();
      await store.close();
    }
  });
});
