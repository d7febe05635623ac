/**
 * The soak of issue 9: a real `up` driven for a bounded time (default 10 minutes) by a random
 * mix of creates, stops, starts, removals, stars that crash and restart by policy, programs
 * killed from outside, and kill -9 of `up` itself with a restart — and checked all along:
 *
 *   - every acknowledged star is listed once, and no removed one comes back;
 *   - each star shows the truth: a running one has a live pid (its program), one asked to run
 *     with restart "always" runs again within the deadline, one asked to stop does not run;
 *   - each running star's group holds one init; no group of the node holds a process that no
 *     running star accounts for;
 *   - `up`'s open files and memory stay bounded.
 *
 * Usage: node dist/bench/reliability/soak.js [--minutes 10] [--seed N]
 * Prints a table (docs/reliability.md has the last run); exit code 1 on any violation.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type Constellation, type StarInfo, connect } from "../../src/index.js";
import { alive, initsAmong, nodeGroups } from "../../test/helpers/cgroups.js";
import { type Up, kill9, up } from "../../test/helpers/constellation.js";
import { waitFor } from "../../test/helpers/wait.js";
import { machine, markdownTable } from "../lib/report.js";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const minutes = arg("minutes", 10);
let seed = arg("seed", Date.now() % 100_000);
const firstSeed = seed;
/** A small deterministic generator (mulberry32): a run can be repeated with --seed. */
function random(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(random() * xs.length)];

const MAX_STARS = 40;
const root = "/var/lib/constellation-bench";
mkdirSync(root, { recursive: true });
const dataDir = join(root, `soak-${process.pid}`, "data");

interface Known {
  desired: "running" | "stopped";
  kind: "steady" | "crasher";
  /** False while a stop or start of it was cut off by a crash: either desired state is true. */
  sure: boolean;
}
const known = new Map<string, Known>();
/** Stars whose create or removal was cut off by a crash of `up`: either outcome is true. */
const uncertain = new Set<string>();
const counts = { creates: 0, stops: 0, starts: 0, removes: 0, kills: 0, upCrashes: 0, checks: 0, refused: 0 };
const violations: string[] = [];
let node: Up;
let sdk: Constellation;
let peakFds = 0;
let n = 0;

function upStats(): { fds: number; rssMb: number; hwmMb: number } {
  const pid = node.child.pid!;
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
  return { fds: readdirSync(`/proc/${pid}/fd`).length, rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
}

async function restartUp(): Promise<void> {
  await kill9(node);
  sdk.close();
  node = await up(dataDir);
  sdk = connect({ dataDir });
  counts.upCrashes++;
}

async function step(): Promise<void> {
  const r = random() * 0.97; // (kill -9 of up is the crasher's)
  const names = [...known.keys()].filter((x) => !busy.has(x));
  let touched: string | undefined;
  try {
    if (r < 0.3 && known.size < MAX_STARS) {
      const name = `soak-${n++}`;
      const kind = random() < 0.3 ? "crasher" : "steady";
      const spec =
        kind === "crasher"
          ? { name, command: ["sh", "-c", `sleep ${1 + Math.floor(random() * 4)}; exit 3`], restart: "always" as const, backoff_ms: 200, max_backoff_ms: 1000, max_restarts: 1000 }
          : { name, command: ["sleep", "3600"], restart: "always" as const };
      uncertain.add(name);
      await sdk.create(spec);
      uncertain.delete(name);
      known.set(name, { desired: "running", kind, sure: true });
      counts.creates++;
    } else if (r < 0.6) {
      // A stop of a running star, or a start of a stopped one.
      const stop = r < 0.45;
      const name = pick(names.filter((x) => known.get(x)!.desired === (stop ? "running" : "stopped")));
      if (!name) return;
      touched = name;
      busy.add(name);
      known.get(name)!.sure = false;
      if (stop) await sdk.star(name).stop({ timeoutMs: 15_000 });
      else await sdk.star(name).start();
      Object.assign(known.get(name)!, { desired: stop ? "stopped" : "running", sure: true });
      if (stop) counts.stops++;
      else counts.starts++;
    } else if (r < 0.7) {
      const name = pick(names);
      if (!name) return;
      touched = name;
      busy.add(name);
      uncertain.add(name);
      await sdk.star(name).remove({ force: true });
      known.delete(name);
      uncertain.delete(name);
      counts.removes++;
    } else {
      // A program killed from outside (a steady star restarts by its policy).
      const name = pick(names.filter((x) => known.get(x)!.desired === "running"));
      const pid = name ? (await sdk.star(name).status())?.pid : undefined;
      if (!pid) return;
      try {
        process.kill(pid, "SIGKILL");
        counts.kills++;
      } catch {
        // ended meanwhile
      }
    }
  } catch (err) {
    // Cut off by a crash of `up`, or refused while it restarts: not a violation (what it asked
    // may or may not have happened, and the checks allow both).
    counts.refused++;
    void err;
  } finally {
    if (touched) busy.delete(touched);
  }
}

/** Names a worker is acting on (one action per star at a time, as a user would). */
const busy = new Set<string>();
/** While a check runs, the workers and the crasher wait. */
let gate: Promise<void> | undefined;

async function worker(deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    await gate;
    await step();
    await new Promise((r) => setTimeout(r, 20 + random() * 80));
  }
}

/** kill -9 of `up` at random moments (every 5 to 30 s), whatever the workers are doing. */
async function crasher(deadline: number): Promise<void> {
  for (;;) {
    await new Promise((r) => setTimeout(r, 5000 + random() * 25_000));
    if (Date.now() >= deadline) return;
    await gate;
    await restartUp();
  }
}

/** The invariants, once the node has had time to act on what was asked. */
async function check(final: boolean): Promise<void> {
  counts.checks++;
  let last: string[] = [];
  const ok = await waitFor(
    "the node to settle",
    async () => {
      const problems: string[] = [];
      const list: StarInfo[] = await sdk.list();
      const names = list.map((s) => s.name);
      if (new Set(names).size !== names.length) problems.push("a star listed twice");
      for (const name of known.keys()) if (!names.includes(name) && !uncertain.has(name)) problems.push(`${name} acknowledged but missing`);
      for (const s of list) {
        if (!known.has(s.name) && !uncertain.has(s.name)) problems.push(`${s.name} listed but removed or never acknowledged`);
        const k = known.get(s.name);
        const st = s.status;
        if (st?.state === "running" && (!st.pid || !alive(st.pid))) problems.push(`${s.name} shown running with dead pid ${st.pid}`);
        if (k?.sure && k.desired !== s.desired) problems.push(`${s.name} asked to be ${k.desired} but recorded ${s.desired}`);
        if (s.desired === "stopped" && st && ["running", "starting"].includes(st.state)) problems.push(`${s.name} asked to stop but ${st.state}`);
        if (s.desired === "running" && k?.kind !== "crasher" && st?.state !== "running") problems.push(`${s.name} asked to run but ${st?.state}`);
      }
      const groups = nodeGroups(dataDir);
      const running = new Set(list.filter((s) => s.status?.state === "running").map((s) => s.name));
      for (const [group, pids] of groups) {
        const live = pids.filter(alive);
        if (live.length === 0) continue;
        if (!running.has(group) && !list.some((s) => s.name === group && ["starting", "pending"].includes(s.status?.state ?? ""))) {
          problems.push(`group ${group} holds ${live.join(",")} but its star is ${list.find((s) => s.name === group)?.status?.state ?? "absent"}`);
        } else if (running.has(group) && initsAmong(live).length !== 1) problems.push(`${group} runs ${initsAmong(live).length} copies`);
      }
      last = problems;
      if (problems.length > 0) return undefined;
      // What a crash left uncertain is settled now: as the node shows it.
      for (const name of uncertain) {
        const s = list.find((x) => x.name === name);
        if (s) known.set(name, { desired: s.desired === "stopped" ? "stopped" : "running", kind: known.get(name)?.kind ?? "steady", sure: true });
        else known.delete(name);
      }
      uncertain.clear();
      for (const [name, k] of known) {
        const s = list.find((x) => x.name === name);
        if (!k.sure && s) Object.assign(k, { desired: s.desired === "stopped" ? "stopped" : "running", sure: true });
      }
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 250 },
  ).catch(() => false);
  if (!ok) violations.push(...last.map((p) => `${final ? "final" : `check ${counts.checks}`}: ${p}`));
  peakFds = Math.max(peakFds, upStats().fds);
}

node = await up(dataDir);
sdk = connect({ dataDir });
const started = Date.now();
const deadline = started + minutes * 60_000;
const fdsAtStart = upStats().fds;
try {
  const work = Promise.all([worker(deadline), worker(deadline), worker(deadline), crasher(deadline)]);
  const checks = (async () => {
    while (Date.now() < deadline - 30_000) {
      await new Promise((r) => setTimeout(r, 30_000));
      let open!: () => void;
      gate = new Promise((r) => (open = r));
      await new Promise((r) => setTimeout(r, 500)); // what is under way lands
      await check(false);
      gate = undefined;
      open();
    }
  })();
  const sampler = setInterval(() => {
    try {
      peakFds = Math.max(peakFds, upStats().fds);
    } catch {
      // between lives of up
    }
  }, 500);
  await Promise.all([work, checks]);
  clearInterval(sampler);
  await check(true);
  const s = upStats();
  console.log(`soak: ${minutes} min, seed ${firstSeed}; ${machine()}\n`);
  console.log(markdownTable(
    ["measure", "value"],
    [
      ["creates / stops / starts / removes", `${counts.creates} / ${counts.stops} / ${counts.starts} / ${counts.removes}`],
      ["programs killed from outside", counts.kills],
      ["kill -9 of up, and restarts", counts.upCrashes],
      ["requests refused or cut off (not violations)", counts.refused],
      ["checks of every invariant", counts.checks],
      ["stars at the end", known.size],
      ["up's open files: at start / most seen", `${fdsAtStart} / ${peakFds}`],
      ["up's memory now / peak of its last life (MB)", `${s.rssMb.toFixed(0)} / ${s.hwmMb.toFixed(0)}`],
      ["violations", violations.length],
    ],
  ));
  for (const v of violations.slice(0, 50)) console.log(`VIOLATION ${v}`);
} finally {
  for (const s of await sdk.list().catch(() => [])) await sdk.star(s.name).remove({ force: true }).catch(() => undefined);
  sdk.close();
  await kill9(node);
  rmSync(join(root, `soak-${process.pid}`), { recursive: true, force: true });
}
process.exit(violations.length === 0 ? 0 : 1);
