/**
 * The HA control plane's fail-over (issue 12): three controllers, each the built CLI's detached
 * `init --store etcd://… --server`, on a three-member etcd (loopback). Each trial: the leader's
 * process is SIGKILLed and a star is created through another controller at once; the fail-over
 * is the time from the kill to that star's placement (its event's time: only the loops place
 * stars). The killed controller is started again (it queues behind the new leader) before the
 * next trial. Reports p50, p90 and max over the trials. Target: within 5 s.
 *
 *   node dist/bench/cluster/failover-bench.js [--trials 10]
 */
import { spawnSync } from "node:child_process";
import { chmodSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startEtcd } from "../../test/helpers/etcd-harness.js";
import { endProcess, waitFor } from "../../test/helpers/wait.js";
import { machine, markdownTable, percentile } from "../lib/report.js";

const { values } = parseArgs({ options: { trials: { type: "string", default: "10" } } });
const TRIALS = Number(values.trials);
const BIN = fileURLToPath(new URL("../../src/cli/constellation.mjs", import.meta.url));
const dev = process.getuid?.() === 0 ? [] : ["--dev"];
const CONTROLLERS = ["c1", "c2", "c3"];

await mkdir("/var/lib/constellation-bench", { recursive: true, mode: 0o755 });
const work = await mkdtemp("/var/lib/constellation-bench/failover-");
chmodSync(work, 0o755);
// Mutual TLS to etcd and between its members, as docs/ha.md runs it.
const etcd = await startEtcd({ members: 3, tls: true });
const store = `etcd://${etcd.endpoints.map((e) => e.replace("https://", "")).join(",")}`;
const tls = ["--store-ca", etcd.tls!.ca, "--store-cert", etcd.tls!.cert, "--store-key", etcd.tls!.key];
const data = (n: string) => join(work, n);
const cli = (n: string, ...args: string[]) => spawnSync(process.execPath, [BIN, "--data", data(n), ...args], { encoding: "utf8", timeout: 60_000 });
const pidOf = (n: string) => (JSON.parse(readFileSync(join(data(n), "ready.json"), "utf8")) as { pid: number }).pid;
const start = (n: string) => {
  const r = cli(n, "init", "--store", store, ...tls, "--server", "--cluster", "bench", "--node", n, "--port", "0", "--cluster-port", "0", "--api-port", "0", "--gossip-port", "0", ...dev);
  if (r.status !== 0) throw new Error(`init ${n}: ${r.stderr}`);
};
const leader = () => {
  for (const n of CONTROLLERS) {
    const r = cli(n, "status", "--json");
    if (r.status === 0) return (JSON.parse(r.stdout) as { controllers: Array<{ node: string; leads: boolean }> }).controllers.find((c) => c.leads)?.node;
  }
  return undefined;
};
const times: number[] = [];
try {
  for (const n of CONTROLLERS) start(n);
  for (let t = 0; t < TRIALS; t++) {
    const l = await waitFor("a leader", () => leader(), { timeoutMs: 30_000, intervalMs: 200 });
    const survivor = CONTROLLERS.find((n) => n !== l)!;
    const name = `t${t}`;
    const at = Date.now();
    process.kill(pidOf(l), "SIGKILL");
    const made = cli(survivor, "create", "--name", name, "--no-wait", "--restart", "never", "--ram-mb", "16", "--", "true");
    if (made.status !== 0) throw new Error(`create: ${made.status} ${made.stdout} ${made.stderr} ${String(made.error)}`);
    const placedAt = await waitFor(
      `${name} placed`,
      () =>
        cli(survivor, "events", "--star", name, "--json")
          .stdout.split("\n")
          .filter(Boolean)
          .map((line) => JSON.parse(line) as { kind: string; at: number })
          .find((e) => e.kind === "star.assigned")?.at,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    times.push(placedAt - at);
    process.stderr.write(`trial ${t + 1}: killed ${l}, loops again after ${placedAt - at} ms\n`);
    start(l); // back, behind the new leader
  }
} finally {
  for (const n of CONTROLLERS) await endProcess(pidOf(n), n).catch(() => undefined);
  await etcd.stop();
  await rm(work, { recursive: true, force: true });
}
const sorted = [...times].sort((a, b) => a - b);
console.log(`\n${machine()}\n`);
console.log(
  markdownTable(
    ["what", "trials", "p50", "p90", "max", "target"],
    [["leader's controller SIGKILLed → loops place a star (3 controllers, 3-member etcd, loopback)", TRIALS, `${(percentile(sorted, 50) / 1000).toFixed(2)} s`, `${(percentile(sorted, 90) / 1000).toFixed(2)} s`, `${(sorted.at(-1)! / 1000).toFixed(2)} s`, "< 5 s"]],
  ),
);
