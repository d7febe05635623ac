/**
 * Gossip between five real hosts (issue 12): network namespaces on a bridge this benchmark makes
 * (test/helpers/hosts.ts), each the built CLI's node, members on UDP 7947. At 0, 1 and 5 % of
 * every host's received packets dropped (nftables): a host killed (SIGKILL, every process) —
 * when the first survivor and when every survivor saw it dead (each survivor's own time of the
 * change, from its view file) — then started again; how long until every member sees all five
 * alive again (convergence after a join); live hosts declared dead or suspected meanwhile (false
 * positives); and the gossip's bytes sent per member (an nftables counter on UDP from 7947).
 * Needs root.
 *
 *   node dist/bench/gossip/hosts-bench.js [--trials 3]
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { MembersView } from "../../src/model/node-files.js";
import { CLI } from "../../test/helpers/constellation.js";
import { Hosts } from "../../test/helpers/hosts.js";
import { waitFor } from "../../test/helpers/wait.js";
import { machine, markdownTable, percentile } from "../lib/report.js";

const { values } = parseArgs({ options: { trials: { type: "string", default: "3" } } });
const TRIALS = Number(values.trials);
const N = 5;
const VICTIM = 4;

await mkdir("/var/lib/constellation-bench", { recursive: true, mode: 0o755 });
const work = await mkdtemp("/var/lib/constellation-bench/gossip-hosts-");
const hosts = await Hosts.create(N);
const data = (i: number) => join(work, `h${i}`);
const cli = (i: number, ...args: string[]) => hosts.run(i, [process.execPath, CLI, "--data", data(i), ...args]);
const view = (i: number): MembersView | undefined => {
  try {
    return JSON.parse(readFileSync(join(data(i), "gossip-members.json"), "utf8")) as MembersView;
  } catch {
    return undefined;
  }
};
const nft = (i: number, ...args: string[]) => spawnSync("ip", ["netns", "exec", hosts.ns(i), "nft", ...args], { encoding: "utf8" });
const sentBytes = (i: number) => Number(/bytes (\d+)/.exec(nft(i, "list", "chain", "inet", "gstats", "out").stdout)?.[1] ?? 0);
const logOf = (i: number) => readFileSync(join(data(i), "node.log"), "utf8");
const allAlive = (among: number[]) => among.every((i) => view(i)?.members.filter((m) => m.state === "alive").length === N);

interface Row {
  loss: number;
  first: number[];
  all: number[];
  converge: number[];
  falseDead: number;
  falseSuspect: number;
  kbps: number;
}
const rows: Row[] = [];
try {
  const up = cli(0, "init", "--cluster", "bench", "--node", "h0", "--port", "0");
  if (up.status !== 0) throw new Error(up.stderr);
  const address = /constellation join (\S+) --token/.exec(up.stdout)![1]!;
  for (let i = 1; i < N; i++) {
    const token = /--token (\S+)/.exec(cli(0, "init").stdout)![1]!;
    const r = cli(i, "join", address, "--node", `h${i}`, "--token", token);
    if (r.status !== 0) throw new Error(r.stderr);
  }
  const all = Array.from({ length: N }, (_, i) => i);
  await waitFor("all five alive", () => allAlive(all) || undefined, { timeoutMs: 30_000, intervalMs: 100 });
  for (const i of all) {
    nft(i, "add", "table", "inet", "gstats");
    nft(i, "add", "chain", "inet", "gstats", "out", "{ type filter hook output priority 0 ; }");
    nft(i, "add", "rule", "inet", "gstats", "out", "udp", "sport", "7947", "counter");
  }
  for (const loss of [0, 1, 5]) {
    for (const i of all) hosts.drop(i, loss);
    const row: Row = { loss, first: [], all: [], converge: [], falseDead: 0, falseSuspect: 0, kbps: 0 };
    // Bytes in a quiet 30 s (no kill).
    const before = all.map(sentBytes);
    const t0 = Date.now();
    await waitFor("30 s", () => Date.now() - t0 >= 30_000 || undefined, { timeoutMs: 40_000, intervalMs: 500 });
    const secs = (Date.now() - t0) / 1000;
    row.kbps = all.reduce((a, i) => a + (sentBytes(i) - before[i]!) * 8, 0) / N / secs / 1000;
    const marks = all.map((i) => logOf(i).length);
    for (let t = 0; t < TRIALS; t++) {
      const survivors = all.filter((i) => i !== VICTIM);
      const killed = Date.now();
      hosts.kill(VICTIM);
      const seen = await waitFor("every survivor to see the victim dead", () => {
        const at = survivors.map((i) => view(i)?.members.find((m) => m.name === `h${VICTIM}`));
        return at.every((m) => m?.state === "dead") ? at.map((m) => m!.since - killed) : undefined;
      }, { timeoutMs: 60_000, intervalMs: 50 });
      row.first.push(Math.min(...seen));
      row.all.push(Math.max(...seen));
      // Back: started again from its data dir (it joins through its controller's member).
      const back = cli(VICTIM, "init");
      if (back.status !== 0 || !back.stdout.includes("constellation is up")) throw new Error(`h${VICTIM} was not started again: ${back.stdout}${back.stderr}`);
      const started = Date.now();
      await waitFor("all five alive again", () => allAlive(all) || undefined, { timeoutMs: 60_000, intervalMs: 50 }).catch((err: Error) => {
        for (const i of all) process.stderr.write(`h${i}: ${JSON.stringify(view(i)?.members.map((m) => `${m.name} ${m.state} ${m.incarnation} ${m.address}`))}\n${logOf(i).split("\n").slice(-8).join("\n")}\n`);
        throw err;
      });
      row.converge.push(Date.now() - started);
    }
    // False positives: live hosts (not the victim) said suspect or dead by anyone meanwhile.
    for (const i of all) {
      const said = [...logOf(i).slice(marks[i]!).matchAll(/gossip: node (h\d) is (suspect|dead)/g)].filter((m) => m[1] !== `h${VICTIM}`);
      row.falseDead += said.filter((m) => m[2] === "dead").length;
      row.falseSuspect += said.filter((m) => m[2] === "suspect").length;
    }
    rows.push(row);
    process.stderr.write(`${loss} %: ${JSON.stringify(row)}\n`);
  }
} finally {
  hosts.destroy();
  await rm(work, { recursive: true, force: true });
}
const p50 = (xs: number[]) => `${(percentile([...xs].sort((a, b) => a - b), 50) / 1000).toFixed(2)} s`;
const max = (xs: number[]) => `${(Math.max(...xs) / 1000).toFixed(2)} s`;
console.log(`\n${machine()}\n`);
console.log(
  markdownTable(
    ["packet loss", "kills", "dead to the first (p50)", "dead to all (p50 / max)", "all alive again after a restart (p50)", "live hosts said dead / suspect", "gossip sent per member"],
    rows.map((r) => [`${r.loss} %`, r.first.length, p50(r.first), `${p50(r.all)} / ${max(r.all)}`, p50(r.converge), `${r.falseDead} / ${r.falseSuspect}`, `${r.kbps.toFixed(1)} kbit/s`]),
  ),
);
