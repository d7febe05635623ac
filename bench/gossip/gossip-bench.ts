/**
 * The gossip at 1,000 members (issue 12), simulated (bench/gossip/network.ts: the real state
 * machine, simulated time and wire): at 0 %, 1 % and 5 % packet loss, with our timing and with
 * memberlist's LAN profile side by side, it reports the time for a member's failure to be seen by
 * the first member and by all, false positives (live members declared dead) over two minutes,
 * the time for a newcomer to be known by all, and the bytes each member sends per second.
 *
 *   node dist/bench/gossip/gossip-bench.js [--members 1000] [--steady-s 120] [--trials 5]
 */
import { parseArgs } from "node:util";
import { DEFAULT_GOSSIP, type GossipConfig, MEMBERLIST_LAN } from "../../src/cluster/gossip/config.js";
import { machine, markdownTable, percentile } from "../lib/report.js";
import { SimNetwork } from "./network.js";

const { values } = parseArgs({ options: { members: { type: "string", default: "1000" }, "steady-s": { type: "string", default: "120" }, trials: { type: "string", default: "5" } } });
const N = Number(values.members);
const STEADY_MS = Number(values["steady-s"]) * 1000;
const TRIALS = Number(values.trials);

interface Result {
  profile: string;
  loss: number;
  firstMs: number[];
  allMs: number[];
  falseDead: number;
  suspicions: number;
  joinMs: number[];
  bytesPerS: number;
}

function allAlive(net: SimNetwork): boolean {
  const live = net.live();
  for (const a of live) if (a.swim.size !== live.length) return false;
  return true;
}

function run(profile: string, config: GossipConfig, loss: number): Result {
  const net = new SimNetwork({ seed: 42, loss, config });
  net.add("m0");
  // Members join through m0, a few at a time (as machines are added), then all converge.
  for (let i = 1; i < N; i++) {
    net.add(`m${i}`, ["m0"]);
    if (i % 50 === 0) net.run(100);
  }
  const converged = net.runUntilTrue(() => allAlive(net), 300_000, 500);
  if (converged === undefined) throw new Error(`${profile} at ${loss * 100} % loss: ${N} members did not converge in 300 s`);
  net.run(10_000);
  // Steady: false positives and bytes over STEADY_MS.
  const t0 = net.now;
  for (const m of net.members.values()) m.bytesSent = 0;
  net.countBytes = true;
  net.run(STEADY_MS);
  net.countBytes = false;
  const bytes = [...net.members.values()].reduce((s, m) => s + m.bytesSent, 0);
  const steady = net.changes.filter((c) => c.at >= t0);
  const falseDead = steady.filter((c) => c.state === "dead").length;
  const suspicions = steady.filter((c) => c.state === "suspect").length;
  // Failures: kill a member, time until the first and until every live member sees it dead.
  const firstMs: number[] = [];
  const allMs: number[] = [];
  const joinMs: number[] = [];
  for (let t = 0; t < TRIALS; t++) {
    const victim = `m${1 + Math.floor(net.random() * (N - 1))}`;
    if (!net.members.get(victim)!.up) continue;
    const at = net.now;
    net.kill(victim);
    const all = net.runUntilTrue(() => net.live().every((m) => net.stateOf(m.name, victim) === "dead"), 120_000, 50);
    const first = net.changes.find((c) => c.at >= at && c.member === victim && c.state === "dead");
    if (first) firstMs.push(first.at - at);
    allMs.push(all ?? Number.POSITIVE_INFINITY);
    net.run(5000);
    // A newcomer: time until every live member knows it alive.
    const name = `new${t}`;
    net.add(name, [`m0`]);
    const known = net.runUntilTrue(() => net.live().every((m) => m.name === name || net.stateOf(m.name, name) === "alive"), 120_000, 50);
    joinMs.push(known ?? Number.POSITIVE_INFINITY);
    net.run(5000);
  }
  return { profile, loss, firstMs, allMs, falseDead, suspicions, joinMs, bytesPerS: bytes / N / (STEADY_MS / 1000) };
}

const med = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
const mx = (xs: number[]) => Math.max(...xs);
const s = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "never");

const rows: Array<Array<string | number>> = [];
const results: Result[] = [];
for (const loss of [0, 0.01, 0.05]) {
  for (const [profile, config] of [
    ["ours", DEFAULT_GOSSIP],
    ["memberlist LAN", MEMBERLIST_LAN],
  ] as const) {
    const started = performance.now();
    const r = run(profile, config, loss);
    results.push(r);
    console.error(`${profile} at ${loss * 100} % loss: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    rows.push([
      r.profile,
      `${loss * 100} %`,
      `${s(med(r.firstMs))} (max ${s(mx(r.firstMs))})`,
      `${s(med(r.allMs))} (max ${s(mx(r.allMs))})`,
      `${r.falseDead} dead, ${r.suspicions} suspect`,
      `${s(med(r.joinMs))} (max ${s(mx(r.joinMs))})`,
      `${((r.bytesPerS * 8) / 1000).toFixed(1)} kbit/s`,
    ]);
  }
}
console.log(`Machine: ${machine()}.\n`);
console.log(`${N} members, simulated; failures and joins: ${TRIALS} trials each (median, max); false positives over ${STEADY_MS / 1000} s of steady state (changes seen by any member).\n`);
console.log(markdownTable(["timing", "loss", "failure seen by the first", "failure seen by all", "false positives", "newcomer known by all", "sent per member"], rows));
const ours = results.filter((r) => r.profile === "ours");
const allWithin5 = ours.every((r) => r.loss > 0.01 || mx(r.allMs) <= 5000);
const noFalse = ours.filter((r) => r.loss <= 0.01).every((r) => r.falseDead === 0);
const bw = ours.every((r) => r.bytesPerS * 8 < 1e6);
console.log(`\nTargets (ours): every member sees a failure within 5 s at ≤ 1 % loss: ${allWithin5 ? "met" : "NOT met"}; no false positive at 1 % loss: ${noFalse ? "met" : "NOT met"}; < 1 Mbit/s per member: ${bw ? "met" : "NOT met"}.`);
