/**
 * The isolate runtime on two Node.js versions, side by side in one run (issue 10): isolate star
 * start (start call → first line in its log), 100 isolates at once, and the host's memory per
 * isolate, each beside the bare-Worker floor of the same Node. Rounds alternate between the two
 * so the machine's drift hits both alike; medians over rounds are reported.
 *
 *   node dist/bench/runtime/node-versions.js --other /path/to/node24/bin/node [--rounds 3] [--n 50] [--hold 100]
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { machine, markdownTable, percentile } from "../lib/report.js";

const { values } = parseArgs({
  options: { other: { type: "string" }, rounds: { type: "string", default: "3" }, n: { type: "string", default: "50" }, hold: { type: "string", default: "100" } },
});
if (!values.other) {
  console.error("usage: node-versions.js --other PATH_TO_ANOTHER_NODE [--rounds 3] [--n 50] [--hold 100]");
  process.exit(2);
}
const BENCH = fileURLToPath(new URL("./isolate-bench.js", import.meta.url));
const nodes = [process.execPath, values.other];

interface Figures {
  node: string;
  bareP50: number;
  isoP50: number;
  isoP99: number;
  allUp: number;
  bareUp: number;
  pssPerIsolateMb: number;
}

const runs = new Map<string, Figures[]>(nodes.map((n) => [n, []]));
for (let r = 0; r < Number(values.rounds); r++) {
  for (const node of nodes) {
    const out = spawnSync(node, ["--expose-gc", BENCH, "--json", "--n", values.n, "--hold", values.hold], { encoding: "utf8" });
    const line = out.stdout.trim().split("\n").at(-1) ?? "";
    if (out.status !== 0 || !line.startsWith("{")) throw new Error(`${node} ${BENCH} failed (${out.status}): ${out.stderr}`);
    runs.get(node)!.push(JSON.parse(line) as Figures);
  }
}

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
const [a, b] = nodes.map((n) => runs.get(n)!);
const va = a![0]!.node;
const vb = b![0]!.node;
const row = (what: string, pick: (f: Figures) => number, unit: string, digits = 1) => {
  const x = median(a!.map(pick));
  const y = median(b!.map(pick));
  return [what, `${x.toFixed(digits)} ${unit}`, `${y.toFixed(digits)} ${unit}`, `${(y / x).toFixed(2)}×`];
};
console.log(`Machine: ${machine()}; ${values.rounds} rounds each, alternating; medians over rounds.\n`);
console.log(
  markdownTable(
    ["what", `Node ${va}`, `Node ${vb}`, `${vb} / ${va}`],
    [
      row(`isolate star start, p50 of ${values.n}`, (f) => f.isoP50, "ms", 2),
      row(`isolate star start, p99 of ${values.n}`, (f) => f.isoP99, "ms", 2),
      row(`bare Worker start (floor), p50 of ${values.n}`, (f) => f.bareP50, "ms", 2),
      row(`${values.hold} isolate stars at once, all up`, (f) => f.allUp, "ms", 0),
      row(`${values.hold} bare Workers at once (floor)`, (f) => f.bareUp, "ms", 0),
      row(`host PSS per isolate, ${values.hold} held`, (f) => f.pssPerIsolateMb, "MB", 1),
    ],
  ),
);
