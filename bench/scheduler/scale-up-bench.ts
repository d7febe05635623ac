/**
 * A deployment scaled from 0 to 100 stars on three hosts (issue 13): network namespaces on a
 * bridge this benchmark makes (test/helpers/hosts.ts), each the built CLI's node (h0 the
 * controller). Each trial deploys 100 stars and times, from the deploy request, until all 100
 * run (the SDK inside h0 polling the deployment every 10 ms), then removes the deployment and
 * waits until its stars are gone. Two kinds: a tiny program with the process runtime (`sleep`),
 * and a small JS script with the isolate runtime. The floor, in the same run: spawning 100
 * `sleep` processes by hand inside h0 until each has started (Node's spawn, no isolation).
 * Needs root.
 *
 *   node dist/bench/scheduler/scale-up-bench.js [--trials 5]
 */
import { writeFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { CLI } from "../../test/helpers/constellation.js";
import { Hosts } from "../../test/helpers/hosts.js";
import { machine, markdownTable, percentile } from "../lib/report.js";

const { values } = parseArgs({ options: { trials: { type: "string", default: "5" }, stars: { type: "string", default: "100" } } });
const TRIALS = Number(values.trials);
const STARS = Number(values.stars);
const SDK = fileURLToPath(new URL("../../src/index.js", import.meta.url));

await mkdir("/var/lib/constellation-bench", { recursive: true, mode: 0o755 });
const work = await mkdtemp("/var/lib/constellation-bench/scale-up-");
await chmod(work, 0o755); // (stars' users reach their own directories under the data dirs)
await mkdir(join(work, "app"), { mode: 0o755 });
writeFileSync(join(work, "app", "tick.mjs"), "setInterval(() => {}, 60_000);\n", { mode: 0o644 });
const hosts = await Hosts.create(3);
const data = (i: number) => join(work, `h${i}`);
const cli = (i: number, ...args: string[]) => hosts.run(i, [process.execPath, CLI, "--data", data(i), ...args], { timeoutMs: 120_000 });

/** One trial inside h0: deploy, time until all run, remove, wait until gone. Prints the ms. */
const trial = (spec: object) => `
import { connect } from ${JSON.stringify(SDK)};
const c = connect({ dataDir: ${JSON.stringify(data(0))} });
const t0 = performance.now();
const d = await c.deploy("up", ${JSON.stringify(spec)});
for (;;) {
  const [v] = (await c.deployments()).filter((x) => x.name === "up");
  if (v && v.status.ready === ${STARS}) break;
  await new Promise((r) => setTimeout(r, 10));
}
const ms = performance.now() - t0;
await d.remove();
for (;;) {
  if ((await c.list({ fields: ["name"] })).filter((s) => s.name.startsWith("up-")).length === 0) break;
  await new Promise((r) => setTimeout(r, 50));
}
c.close();
console.log(ms.toFixed(1));
`;
/** The floor inside h0: spawn STARS sleeps until each has started, then end them. */
const floor = `
import { spawn } from "node:child_process";
const t0 = performance.now();
const kids = await Promise.all(Array.from({ length: ${STARS} }, () => new Promise((r) => { const k = spawn("sleep", ["600"], { stdio: "ignore" }); k.once("spawn", () => r(k)); })));
const ms = performance.now() - t0;
for (const k of kids) k.kill();
console.log(ms.toFixed(1));
`;
const inH0 = (code: string) => {
  const r = hosts.run(0, [process.execPath, "--input-type=module", "-e", code], { timeoutMs: 300_000 });
  if (r.status !== 0 || !/^\d/.test(r.stdout)) throw new Error(`exit ${r.status} ${r.signal ?? ""}: ${r.stdout}${r.stderr}${r.error?.message ?? ""}`);
  return Number(r.stdout.trim());
};

const rows: Array<[string, number[]]> = [];
try {
  const up = cli(0, "init", "--cluster", "bench", "--node", "h0", "--port", "0");
  if (up.status !== 0) throw new Error(up.stderr);
  const j = /constellation join (\S+) --token (\S+)/.exec(up.stdout)!;
  for (const i of [1, 2]) if (cli(i, "join", j[1]!, "--node", `h${i}`, "--token", j[2]!).status !== 0) throw new Error(`h${i} did not join`);
  const kinds: Array<[string, object]> = [
    ["process runtime: `sleep 600`, 16 MB each", { instances: STARS, command: ["sleep", "600"], ram_mb: 16 }],
    ["isolate runtime: a small JS script, 32 MB each", { instances: STARS, script: join(work, "app", "tick.mjs"), runtime: "isolate", ram_mb: 32 }],
  ];
  for (const [what, spec] of kinds) {
    const ms: number[] = [];
    for (let t = 0; t < TRIALS; t++) {
      ms.push(inH0(trial(spec)));
      process.stderr.write(`${what}: ${ms.at(-1)} ms\n`);
    }
    rows.push([what, ms]);
  }
  const f: number[] = [];
  for (let t = 0; t < TRIALS; t++) f.push(inH0(floor));
  rows.push([`floor: ${STARS} plain spawns of \`sleep\` in one host`, f]);
} finally {
  cli(0, "deployments", "rm", "up");
  hosts.destroy();
  await rm(work, { recursive: true, force: true });
}
const p50 = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
const floorMs = p50(rows.at(-1)![1]);
console.log(`\n${machine()}\n`);
console.log(
  markdownTable(
    ["what", "trials", `0 → ${STARS} running (p50)`, "max", "× the floor"],
    rows.map(([what, ms]) => [what, ms.length, `${(p50(ms) / 1000).toFixed(2)} s`, `${(Math.max(...ms) / 1000).toFixed(2)} s`, `${(p50(ms) / floorMs).toFixed(1)} ×`]),
  ),
);
