/**
 * Leader election, run against each backend: three contender processes, the leader killed
 * (SIGKILL) and then another paused past its lease (SIGSTOP) and resumed. Checked from the
 * store's own history: a successor leads within TTL + 1 s, at no revision do two contenders
 * hold office, and no write fenced with a stale token is ever accepted.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { Election } from "../../src/store/election.js";
import { type StoreConfig, openStore } from "../../src/store/open.js";
import { InvalidArgumentError, NotLeaderError } from "../../src/model/errors.js";
import type { Store, WatchBatch } from "../../src/store/types.js";
import { waitFor } from "../helpers/wait.js";

interface Report {
  pid: number;
  event: "started" | "leader" | "write" | "rejected";
  token?: number;
  wonAt?: number;
  key?: string;
  rev?: number;
  at: number;
}

const CONTENDER = fileURLToPath(new URL("./election-contender.js", import.meta.url));

export function electionSuite(name: string, setup: () => Promise<{ config: StoreConfig; cleanup: () => Promise<void> }>): void {
  describe(`leader election: ${name}`, () => {
    const children: ChildProcess[] = [];
    let cleanup: (() => Promise<void>) | undefined;
    after(async () => {
      for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
      await cleanup?.();
    });

    it("in-process: fencing rejects a stale leader's write, resign hands over, observe follows", async () => {
      const env = await setup();
      const store = await openStore(env.config);
      try {
        const a = new Election(store, "unit", { ttl: 2 });
        const b = new Election(store, "unit", { ttl: 2 });
        const seen: Array<string | undefined> = [];
        const ac = new AbortController();
        const observing = (async () => {
          for await (const l of a.observe(ac.signal)) seen.push(l?.value);
        })();
        const la = await a.campaign("A");
        const pendingB = b.campaign("B");
        const ok = await la.txn({ success: [{ type: "put", key: "unit/work", value: "by A" }] });
        assert.equal(ok.succeeded, true);
        // A's own compare failing is not a fencing failure.
        const miss = await la.txn({ compare: [{ key: "unit/work", target: "value", op: "=", value: "nope" }], success: [] });
        assert.equal(miss.succeeded, false);
        // Take A's lease away behind its back (as if it were paused past its TTL).
        const leaseOfA = la.key.slice(la.key.lastIndexOf("/") + 1);
        await store.revokeLease(leaseOfA);
        await assert.rejects(la.txn({ success: [{ type: "put", key: "unit/work", value: "stale A" }] }), NotLeaderError);
        assert.equal((await store.get("unit/work"))?.value, "by A");
        await la.lost;
        assert.equal(la.active, false);
        const lb = await pendingB;
        assert.ok(lb.token > la.token, "tokens grow with each leader");
        assert.ok(lb.wonAt >= la.token);
        assert.equal((await b.leader())?.value, "B");
        // A fenced txn's failure branch may not write: it would run for a stale leader too.
        await assert.rejects(
          lb.txn({ compare: [{ key: "unit/work", target: "value", op: "=", value: "x" }], failure: [{ type: "put", key: "unit/work", value: "y" }] }),
          InvalidArgumentError,
        );
        // A contender that queued before history was compacted still leads once it wins.
        const c = new Election(store, "unit", { ttl: 2 });
        const pendingC = c.campaign("C");
        await waitFor("C to queue", async () => (await store.range({ prefix: "elections/unit/" })).count === 2 || undefined);
        for (let i = 0; i < 20; i++) await lb.txn({ success: [{ type: "put", key: "unit/work", value: `B ${i}` }] });
        await store.compact(await store.revision());
        await lb.resign();
        const lc = await pendingC;
        const windowClosed = new Promise((resolve) => setTimeout(resolve, 500, "still leading"));
        assert.equal(await Promise.race([lc.lost.then(() => "lost"), windowClosed]), "still leading");
        assert.equal(lc.active, true);
        assert.equal((await lc.txn({ success: [{ type: "put", key: "unit/work", value: "by C" }] })).succeeded, true);
        await lc.resign();
        await lb.lost;
        assert.equal(await b.leader(), undefined);
        await waitFor("observe to see nobody, A, B, C, nobody", () => seen.join(",") === ",A,B,C," || undefined);
        ac.abort();
        await observing;
      } finally {
        await store.close();
        await env.cleanup();
      }
    });

    it("a key written by hand under the election's prefix leads nothing (said once), and a contender still wins", async () => {
      const env = await setup();
      const store = await openStore(env.config);
      try {
        const lines: string[] = [];
        await store.put("elections/hand/zzz", "garbage");
        const other = await store.grantLease(30);
        await store.put("elections/hand/1", "named by another lease", { lease: other.id });
        const e = new Election(store, "hand", { ttl: 2, log: (l) => lines.push(l) });
        assert.equal(await e.leader(), undefined);
        const won = await Promise.race([e.campaign("A"), new Promise<undefined>((r) => setTimeout(r, 10_000, undefined).unref())]);
        assert.ok(won, "A leads though hand-written keys are older");
        assert.equal((await e.leader())?.value, "A");
        assert.equal(lines.filter((l) => l.includes("elections/hand/zzz") && /no lease/.test(l)).length, 1, lines.join("\n"));
        assert.equal(lines.filter((l) => l.includes("elections/hand/1") && /not named by its lease/.test(l)).length, 1, lines.join("\n"));
        await won.resign();
        await store.revokeLease(other.id);
      } finally {
        await store.close();
        await env.cleanup();
      }
    });

    it("three processes: kill -9 and pause the leader; a successor leads within TTL + 1 s; never two leaders", async () => {
      const env = await setup();
      cleanup = env.cleanup;
      const ttl = 2;
      const electionName = `proc-${Date.now()}`;
      const workKey = `work/${electionName}`;
      const store: Store = await openStore(env.config);
      const history: WatchBatch[] = [];
      const start = (await store.revision()) + 1;
      const watch = store.watch({ prefix: "" }, { fromRevision: start });
      const recording = (async () => {
        for await (const b of watch) history.push(b);
      })();
      const reports: Report[] = [];
      const spawnContender = () => {
        const child = spawn(process.execPath, [CONTENDER, JSON.stringify({ store: env.config, election: electionName, ttl, workKey })], {
          stdio: ["ignore", "pipe", "inherit"],
        });
        let buf = "";
        child.stdout!.on("data", (d: Buffer) => {
          buf += d.toString();
          let nl: number;
          while ((nl = buf.indexOf("\n")) >= 0) {
            reports.push({ ...(JSON.parse(buf.slice(0, nl)) as Report), at: Date.now() });
            buf = buf.slice(nl + 1);
          }
        });
        children.push(child);
        return child;
      };
      const procs = [spawnContender(), spawnContender(), spawnContender()];
      const leaders = () => reports.filter((r) => r.event === "leader");
      const writesBy = (pid: number) => reports.filter((r) => r.event === "write" && r.pid === pid).length;
      try {
        const first = await waitFor("a first leader", () => leaders()[0], { timeoutMs: 20_000 });
        await waitFor("writes by the first leader", () => writesBy(first.pid) >= 3);
        await waitFor("all contenders queued", () => reports.filter((r) => r.event === "started").length === 3 || undefined);

        // 1. kill -9 the leader: a successor within TTL + 1 s.
        const killedAt = Date.now();
        procs.find((p) => p.pid === first.pid)!.kill("SIGKILL");
        const second = await waitFor("a second leader", () => leaders()[1], { timeoutMs: 20_000 });
        assert.notEqual(second.pid, first.pid);
        const takeover1 = second.at - killedAt;
        assert.ok(takeover1 <= ttl * 1000 + 1000, `successor after ${takeover1} ms (TTL ${ttl} s)`);
        await waitFor("writes by the second leader", () => writesBy(second.pid) >= 3);

        // 2. pause the leader past its lease; the third takes over; the resumed one is refused.
        const paused = procs.find((p) => p.pid === second.pid)!;
        const pausedAt = Date.now();
        paused.kill("SIGSTOP");
        const third = await waitFor("a third leader", () => leaders()[2], { timeoutMs: 20_000 });
        const takeover2 = third.at - pausedAt;
        assert.ok(takeover2 <= ttl * 1000 + 1000, `successor after ${takeover2} ms (TTL ${ttl} s)`);
        await waitFor("writes by the third leader", () => writesBy(third.pid) >= 3);
        paused.kill("SIGCONT");
        await waitFor("the resumed stale leader to be refused", () =>
          reports.find((r) => r.event === "rejected" && r.pid === second.pid),
        );

        // 3. A write fenced with the first leader's (stale) token is rejected by the store.
        const stale = await store.txn({
          compare: [{ key: first.key!, target: "createRevision", op: "=", value: first.token! }],
          success: [{ type: "put", key: workKey, value: "stale" }],
        });
        assert.equal(stale.succeeded, false);

        for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
        const end = await store.revision();
        await waitFor("the history to be recorded", () => (history.at(-1)?.revision ?? 0) >= end || undefined);
      } finally {
        watch.close();
        await recording;
        await store.close();
      }

      // Replay the store's history: who led at each revision, and who wrote.
      const prefix = `elections/${electionName}/`;
      const claims = new Map<string, number>(); // live election key -> createRevision
      const offices: Array<{ token: number; from: number; to: number }> = [];
      let current: { token: number; from: number } | undefined;
      let accepted = 0;
      for (const b of history) {
        for (const ev of b.events) {
          if (ev.kv.key === workKey && ev.type === "put") {
            const { token } = JSON.parse(ev.kv.value) as { token: number };
            assert.equal(token, current?.token, `write at revision ${b.revision} carries the token of the leader at that revision`);
            accepted++;
          }
        }
        for (const ev of b.events) {
          if (!ev.kv.key.startsWith(prefix)) continue;
          if (ev.type === "put") claims.set(ev.kv.key, ev.kv.createRevision);
          else claims.delete(ev.kv.key);
        }
        const leaderToken = claims.size ? Math.min(...claims.values()) : undefined;
        if (leaderToken !== current?.token) {
          if (current) offices.push({ ...current, to: b.revision });
          current = leaderToken === undefined ? undefined : { token: leaderToken, from: b.revision };
        }
      }
      // Every write a contender saw succeed is in the history (the killed leader's last one may be
      // there unreported); each of the three leaders made at least three.
      const reportedWrites = reports.filter((r) => r.event === "write").length;
      assert.ok(reportedWrites >= 9, `${reportedWrites} writes reported`);
      assert.ok(accepted >= reportedWrites, `${accepted} writes in the store's history, ${reportedWrites} reported`);
      // Each reported leadership is the store's leader for the revisions it claimed office at.
      for (const l of leaders()) {
        const office: { from: number; to: number } | undefined =
          offices.find((o) => o.token === l.token) ?? (current && current.token === l.token ? { from: current.from, to: Infinity } : undefined);
        assert.ok(office, `leader with token ${l.token} held office in the store`);
        assert.ok(l.wonAt! >= office.from && l.wonAt! < office.to, `won at ${l.wonAt} within its office [${office.from}, ${office.to})`);
      }
      // Leaders took office in queue order: tokens only grow.
      for (let i = 1; i < offices.length; i++) assert.ok(offices[i]!.token > offices[i - 1]!.token);
    });
  });
}
