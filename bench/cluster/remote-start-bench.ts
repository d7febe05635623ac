/**
 * A star started on another node of a cluster against the same on a single node (issue 11):
 * from the create call until the API says running, for a tiny static C program with limits
 * (the process runtime, real cgroups and namespaces). Single node: `startSingleNode` as `up`
 * runs it. Cluster: a controller and a node joined to it over loopback (mutual TLS, RNP), the
 * controller's own node cordoned so that every star goes to the joined one. The same stars, one
 * after another, alternating the two each round; p50 and p99 of each, and the difference.
 * Target: the cluster within 10 ms of the single node.
 *
 *   node dist/bench/cluster/remote-start-bench.js [--n 40] [--rounds 3]
 */
import { spawnSync } from "node:child_process";
import { chmodSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startAgentNode } from "../../src/server/agent-node.js";
import { startSingleNode } from "../../src/server/single-node.js";
import { type Constellation, connect } from "../../src/sdk/client.js";
import { machine, markdownTable, percentile } from "../lib/report.js";

const { values } = parseArgs({ options: { n: { type: "string", default: "40" }, rounds: { type: "string", default: "3" } } });
const N = Number(values.n);
const ROUNDS = Number(values.rounds);

await mkdir("/var/lib/constellation-bench", { recursive: true, mode: 0o755 });
const work = await mkdtemp("/var/lib/constellation-bench/remote-");
chmodSync(work, 0o755);
const tiny = join(work, "tiny");
const src = join(fileURLToPath(new URL(".", import.meta.url)), "../../../bench/runtime/tiny.c");
if (spawnSync("cc", ["-O2", "-static", "-o", tiny, src], { stdio: "inherit" }).status !== 0) throw new Error("cannot compile tiny.c (needs cc)");

const single = await startSingleNode({ dataDir: join(work, "single"), port: 0, nodeName: "single" });
const ctl = await startSingleNode({ dataDir: join(work, "ctl"), port: 0, nodeName: "ctl", cluster: { name: "bench", port: 0, apiPort: 0, gossipPort: 0, host: "127.0.0.1", addresses: ["127.0.0.1"], log: () => undefined } });
const { token } = await ctl.cluster!.joinToken();
const remote = await startAgentNode({ gossipPort: 0, dataDir: join(work, "remote"), nodeName: "remote", join: { address: `127.0.0.1:${ctl.cluster!.port}`, token }, addresses: ["127.0.0.1"], log: () => undefined });
const onSingle = connect({ endpoint: single.url, token: single.token });
const onCluster = connect({ endpoint: ctl.url, token: ctl.token });
await onCluster.cordon("ctl"); // every star goes to the joined node
for (;;) {
  const nodes = (await onCluster.status()).nodes;
  if (nodes.some((n) => n.name === "remote")) break;
  await new Promise((r) => setTimeout(r, 100));
}

async function once(c: Constellation, name: string, expectNode: string): Promise<number> {
  const t = performance.now();
  const star = await c.create({ name, command: [tiny], ram_mb: 64, pids: 16 });
  const info = await star.wait({ for: "running" });
  const ms = performance.now() - t;
  if (info.node !== expectNode) throw new Error(`${name} ran on ${info.node}, not ${expectNode}`);
  await star.remove({ force: true });
  return ms;
}

const lat = { single: [] as number[], cluster: [] as number[] };
for (let i = 0; i < 5; i++) {
  await once(onSingle, `warm-s-${i}`, "single");
  await once(onCluster, `warm-c-${i}`, "remote");
}
for (let round = 0; round < ROUNDS; round++) {
  for (let i = 0; i < N; i++) {
    const first = (i + round) % 2 === 0;
    if (first) lat.single.push(await once(onSingle, `s-${round}-${i}`, "single"));
    lat.cluster.push(await once(onCluster, `c-${round}-${i}`, "remote"));
    if (!first) lat.single.push(await once(onSingle, `s-${round}-${i}`, "single"));
  }
}
for (const l of Object.values(lat)) l.sort((a, b) => a - b);
const ms = (v: number) => `${v.toFixed(1)} ms`;
const d = percentile(lat.cluster, 50) - percentile(lat.single, 50);
console.log(`Machine: ${machine()}; ${ROUNDS} rounds of ${N} stars each way.\n`);
console.log(
  markdownTable(
    ["where the star runs", "create → running p50", "p99"],
    [
      ["single node (`up`)", ms(percentile(lat.single, 50)), ms(percentile(lat.single, 99))],
      ["a joined node (RNP over mutual TLS, loopback)", ms(percentile(lat.cluster, 50)), ms(percentile(lat.cluster, 99))],
    ],
  ),
);
console.log(`\nThe cluster's p50 is ${d >= 0 ? "+" : ""}${ms(d)} from the single node's (target: within 10 ms: ${Math.abs(d) <= 10 ? "met" : "NOT met"}).`);
onSingle.close();
onCluster.close();
await remote.close();
await ctl.close();
await single.close();
await rm(work, { recursive: true, force: true });
process.exit(0);
