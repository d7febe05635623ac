/**
 * The controller at scale (issue 11): 100 simulated nodes and 10,000 stars. The controller (its
 * store, control loop and cluster port, as `init` runs them, without a node of its own) runs in
 * this process; the nodes run in a child process, each a real Agent with a fake runtime and its
 * own mutual-TLS RNP connection over loopback, so what is measured is the controller alone:
 * its RSS once every star runs, and its CPU share at steady state (heartbeats every ~3.3 s,
 * usage sent every 5 s by each node), against the targets < 100 MB and < 5 % of a core.
 *
 *   node --expose-gc dist/bench/cluster/controller-bench.js [--nodes 100] [--stars 10000] [--steady-s 30]
 *
 * (It runs with the flags and environment of a node's process, DAEMON_NODE_FLAGS and DAEMON_ENV
 * in src/model/node-files.ts, starting itself again with them if it was not given them.)
 */
import { fork } from "node:child_process";
import type { Duplex } from "node:stream";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setImmediate } from "node:timers/promises";
import { parseArgs } from "node:util";
import { ClusterNodes } from "../../src/cluster/nodes.js";
import { type ClusterServer, serveCluster } from "../../src/cluster/server.js";
import { createCa, createCsr, signCsr } from "../../src/cluster/tls/signer.js";
import { Controller } from "../../src/controller/controller.js";
import { type CertRecord, KEYS } from "../../src/model/records.js";
import { openStore } from "../../src/store/open.js";
import { keepTrimmingMalloc, trimMalloc } from "../../src/server/memory.js";
import { machine, markdownTable } from "../lib/report.js";

const { values } = parseArgs({ options: { nodes: { type: "string", default: "100" }, stars: { type: "string", default: "10000" }, "steady-s": { type: "string", default: "30" }, child: { type: "boolean", default: false } } });
const NODES = Number(values.nodes);
const STARS = Number(values.stars);
const STEADY_S = Number(values["steady-s"]);
/** Creates under way at once. */
const CALLERS = 8;

// The controller runs with a node's flags and environment, as `init` starts it: if this process
// was not started so, it starts itself again so.
const { DAEMON_ENV, DAEMON_NODE_FLAGS } = await import("../../src/model/node-files.js");
if (!values.child && (DAEMON_NODE_FLAGS.some((f) => !process.execArgv.includes(f)) || Object.entries(DAEMON_ENV).some(([k, v]) => process.env[k] !== v))) {
  const { spawnSync } = await import("node:child_process");
  const flags = [...new Set([...process.execArgv, ...DAEMON_NODE_FLAGS])];
  const res = spawnSync(process.execPath, [...flags, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: "inherit", env: { ...process.env, ...DAEMON_ENV } });
  process.exit(res.status ?? 1);
}

/**
 * The longest the event loop was held since the last `take` (a timer's lateness, every 50 ms).
 * (perf_hooks' monitorEventLoopDelay missed a hold of 14 s here: a chain of promises that the
 * store answers at once.)
 */
function stalls(): { take(): number } {
  let longest = 0;
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last - 50);
    last = now;
  }, 50).unref();
  return {
    take() {
      const l = longest;
      longest = 0;
      return l;
    },
  };
}

if (values.child) {
  // The simulated nodes: one Agent each, a fake runtime, an RNP client with its own certificate.
  const { Agent } = await import("../../src/agent/agent.js");
  const { RnpAgentLink, nodeHandlers } = await import("../../src/cluster/agent-protocol.js");
  const { RnpClient } = await import("../../src/cluster/rnp/client.js");
  const { FakeRuntime } = await import("../../src/runtime/fake/fake-runtime.js");
  const { connect } = await import("node:tls");
  // Each heartbeat's round trip: a node is dead to the controller when its beats come back late.
  const beats: number[] = [];
  const { port, ca, certs } = await new Promise<{ port: number; ca: string; certs: Array<{ node: string; cert: string; key: string }> }>((r) => process.once("message", r as never));
  for (const c of certs) {
    const dial = () =>
      new Promise<Duplex>((resolve, reject) => {
        const s = connect({ host: "127.0.0.1", port, cert: c.cert, key: c.key, ca, checkServerIdentity: () => undefined, minVersion: "TLSv1.3" });
        s.once("secureConnect", () => {
          s.setNoDelay(true); // as a node's agent does (src/server/agent-node.ts)
          resolve(s);
        });
        s.once("error", reject);
      });
    const runtime = new FakeRuntime({ cpuCores: 64, memoryBytes: 1024 * 2 ** 30 });
    const held: { agent?: InstanceType<typeof Agent> } = {};
    const client = new RnpClient({ dial, hello: { node: c.node }, handlers: nodeHandlers({ logs: (s, o) => held.agent!.logs(s, o), usage: (s) => held.agent!.usage(s), unsentStatus: (s) => held.agent!.unsentStatus(s) }) });
    const link = new RnpAgentLink(client);
    const beat = link.heartbeat.bind(link);
    link.heartbeat = async () => {
      const t = performance.now();
      try {
        return await beat();
      } finally {
        beats.push(performance.now() - t);
      }
    };
    const agent = (held.agent = new Agent({ link, node: { name: c.node, cpuCores: 64, memoryBytes: 1024 * 2 ** 30, runtimes: ["process"], limitsEnforced: true, startedAt: Date.now() }, runtimes: { process: runtime } }));
    await agent.start();
  }
  process.send!("ready");
  // A late heartbeat here is the simulation's, not the controller's: say when this process lags.
  const stall = stalls();
  setInterval(() => {
    const longest = stall.take();
    if (longest > 1000) console.error(`simulated nodes' process: event loop held up to ${longest.toFixed(0)} ms in the last 10 s`);
    const sorted = beats.splice(0).sort((a, b) => a - b);
    if (sorted.length > 0 && sorted.at(-1)! > 1000) console.error(`heartbeats in the last 10 s: ${sorted.length}, round trip p50 ${sorted[sorted.length >> 1]!.toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms`);
  }, 10_000).unref();
  await new Promise(() => undefined);
}

const dir = mkdtempSync(join("/var/lib", "constellation-bench-"));
const store = await openStore({ backend: "sqlite", path: join(dir, "store.db") });
const ca = await createCa("bench");
const issue = async (node: string, role: "controller" | "agent") => {
  const { csr, key } = await createCsr(node);
  const signed = await signCsr(ca, csr, { cluster: "bench", node, role, addresses: ["127.0.0.1"] });
  if (role === "agent") await store.put(`${KEYS.certs}${signed.serial}`, JSON.stringify({ node, role, issuedAt: Date.now(), notAfter: signed.notAfter } satisfies CertRecord));
  return { node, cert: signed.cert, key };
};
const controllerCert = await issue("controller", "controller");
const certs = [];
for (let i = 0; i < NODES; i++) certs.push(await issue(`sim-${String(i).padStart(3, "0")}`, "agent"));
const controller = new Controller({ store });
controller.start();
// As a node's process does (src/server/memory.ts): malloc's free pages given back every 10 s.
keepTrimmingMalloc();
// Events by kind: a node taken for dead during the run (it missed its heartbeats) is reported.
const kinds = new Map<string, number>();
const record = controller.events.record.bind(controller.events);
controller.events.record = (kind, ...rest) => {
  kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  return record(kind, ...rest);
};
const nodes = new ClusterNodes();
const server: ClusterServer = await serveCluster({ store, cluster: "bench", caCert: ca.cert, cert: controllerCert.cert, key: controllerCert.key, host: "127.0.0.1", port: 0, nodes, log: () => undefined });

// (Without LD_PRELOAD: a native heap profiler run on the controller, e.g. heaptrack, profiles it alone.)
const child = fork(fileURLToPath(import.meta.url), ["--child"], { stdio: "inherit", env: { ...process.env, LD_PRELOAD: undefined } });
child.send({ port: server.port, ca: ca.cert, certs });
await new Promise((r) => child.once("message", r));
console.error(`${NODES} nodes connected: ${server.connected().length}`);

const stall = stalls();
const created = performance.now();
// Creates come as API requests do, each in its own turn of the event loop (SQLite answers at
// once: a loop of awaited creates would hold the process, and every node's heartbeat with it),
// from a few callers at a time.
let next = 0;
await Promise.all(
  Array.from({ length: CALLERS }, async () => {
    for (let i = next++; i < STARS; i = next++) {
      await setImmediate();
      await controller.create({ name: `s-${i}`, command: ["sleep", "600"], ram_mb: 64 });
    }
  }),
);
const createS = (performance.now() - created) / 1000;
for (;;) {
  const summary = await controller.summary();
  if ((summary.stars.byState.running ?? 0) === STARS) break;
  await new Promise((r) => setTimeout(r, 500));
}
const allRunningS = (performance.now() - created) / 1000;
(globalThis as { gc?: () => void }).gc?.();
await new Promise((r) => setTimeout(r, 5000)); // settle
// BENCH_CPU_PROFILE=file: a CPU profile of the steady state alone (for finding what it spends on).
const { Session } = await import("node:inspector/promises");
const profiler = process.env.BENCH_CPU_PROFILE ? new Session() : undefined;
if (profiler) {
  profiler.connect();
  await profiler.post("Profiler.enable");
  await profiler.post("Profiler.start");
}
console.error(`all ${STARS} stars running after ${allRunningS.toFixed(1)} s; steady state: measuring for ${STEADY_S} s`);
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let rssMax = 0;
const sampler = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage().rss)), 500);
await new Promise((r) => setTimeout(r, STEADY_S * 1000));
clearInterval(sampler);
const cpu = process.cpuUsage(cpu0);
if (profiler) {
  const { profile } = await profiler.post("Profiler.stop");
  (await import("node:fs")).writeFileSync(process.env.BENCH_CPU_PROFILE!, JSON.stringify(profile));
}
console.error(`events: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(", ")}; the controller's event loop held up to ${stall.take().toFixed(0)} ms at a time`);
const trimStart = performance.now();
const trimmed = trimMalloc();
console.error(`one malloc trim: ${(performance.now() - trimStart).toFixed(2)} ms (${trimmed === undefined ? "not available" : "available"})`);
const mem = process.memoryUsage();
if (process.env.BENCH_HEAP_SNAPSHOT) console.error(`heap snapshot: ${(await import("node:v8")).writeHeapSnapshot(process.env.BENCH_HEAP_SNAPSHOT)}`);
// BENCH_EXIT_AT_STEADY=1: exit here, holding everything (for a native heap profiler's "leaked" view).
if (process.env.BENCH_EXIT_AT_STEADY) {
  child.kill("SIGKILL");
  process.exit(0);
}
console.error(`memory: rss ${(mem.rss / 2 ** 20).toFixed(1)} MB, heap used ${(mem.heapUsed / 2 ** 20).toFixed(1)} of ${(mem.heapTotal / 2 ** 20).toFixed(1)} MB, external ${(mem.external / 2 ** 20).toFixed(1)} MB, array buffers ${(mem.arrayBuffers / 2 ** 20).toFixed(1)} MB`);
const cpuShare = ((cpu.user + cpu.system) / 1000 / (performance.now() - t0)) * 100;
const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
// The floor: a Node process with the same flags that does nothing.
const { execFileSync } = await import("node:child_process");
const floor = Number(execFileSync(process.execPath, [...process.execArgv.filter((a) => !a.startsWith("--expose-gc")), "-e", "setTimeout(() => console.log(process.memoryUsage().rss), 300)"], { encoding: "utf8" }).trim());
console.log(`Machine: ${machine()}.\n`);
console.log(
  markdownTable(
    ["nodes", "stars", `create all (${CALLERS} at a time, in-process)`, "all running after", "controller RSS at steady state (max)", "an idle Node's RSS (floor)", "controller CPU at steady state"],
    [[NODES, STARS, `${createS.toFixed(1)} s`, `${allRunningS.toFixed(1)} s`, mb(rssMax), `${mb(floor)} (${(rssMax / floor).toFixed(2)} ×)`, `${cpuShare.toFixed(1)} % of a core`]],
  ),
);
console.log(`\nTargets: RSS < 100 MB (${rssMax < 100 * 2 ** 20 ? "met" : "NOT met"}), CPU < 5 % of a core (${cpuShare < 5 ? "met" : "NOT met"}).`);
child.kill("SIGKILL");
await server.close();
await controller.stop();
await store.close();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
