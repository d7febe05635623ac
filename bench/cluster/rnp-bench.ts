/**
 * RNP's round trip (issue 11) against the obvious alternative, HTTPS/JSON with keep-alive: the
 * same call (a status report of ~600 bytes, answered with a small object) on one connection over
 * loopback, TLS 1.3 with mutual authentication for both (certificates of one cluster CA), in one
 * run. Sequential calls: p50 and p99 of each round trip. Then calls with 64 in flight on the one
 * connection: messages per second (HTTP/1.1 answers one request at a time per connection: its
 * "64 in flight" queue behind each other, which is the point of comparing).
 *
 *   node dist/bench/cluster/rnp-bench.js [--n 5000] [--seconds 3] [--rounds 3]
 */
import { createServer as createHttpsServer, request } from "node:https";
import { Agent } from "node:https";
import type { AddressInfo } from "node:net";
import { connect, createServer } from "node:tls";
import { parseArgs } from "node:util";
import { RnpPeer } from "../../src/cluster/rnp/peer.js";
import { createCa, createCsr, signCsr } from "../../src/cluster/tls/ca.js";
import { machine, markdownTable, percentile, perSec, us } from "../lib/report.js";

const { values } = parseArgs({ options: { n: { type: "string", default: "5000" }, seconds: { type: "string", default: "3" }, rounds: { type: "string", default: "3" } } });
const N = Number(values.n);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);

const report = {
  name: "web-frontend-7",
  observed: {
    uid: "2b1e6a0c-9f1d-4c1e-8a5e-2f4d6c7b8a90",
    node: "node-17",
    generation: 12,
    updatedAt: 1795902811666,
    status: { id: "web-frontend-7", name: "web-frontend-7", state: "running", pid: 48213, restarts: 2, ready: true, limitsEnforced: true, startedAt: 1795902800000, limits: { cpuMillis: 500, memoryBytes: 268435456, pids: 256, nofile: 1024 } },
  },
};

const ca = await createCa("bench");
const issue = async (node: string, role: "controller" | "agent") => {
  const { csr, key } = await createCsr(node);
  return { cert: (await signCsr(ca, csr, { cluster: "bench", node, role, addresses: ["127.0.0.1"] })).cert, key };
};
const server = await issue("controller", "controller");
const client = await issue("node-1", "agent");
const tlsServer = { cert: `${server.cert.trimEnd()}\n${ca.cert.trimEnd()}\n`, key: server.key, ca: ca.cert, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" as const };
const tlsClient = { ...client, ca: ca.cert, checkServerIdentity: () => undefined, minVersion: "TLSv1.3" as const };

// RNP: a peer per connection, one method.
const rnpServer = createServer(tlsServer, (socket) => {
  new RnpPeer(socket, { role: "server", hello: { node: "controller" }, handlers: { "agent.report": async () => ({ ok: true }) } });
});
await new Promise<void>((r) => rnpServer.listen(0, "127.0.0.1", r));
const socket = await new Promise<ReturnType<typeof connect>>((resolve, reject) => {
  const s = connect({ host: "127.0.0.1", port: (rnpServer.address() as AddressInfo).port, ...tlsClient });
  s.once("secureConnect", () => resolve(s));
  s.once("error", reject);
});
socket.setNoDelay(true);
const peer = new RnpPeer(socket, { role: "client", hello: { node: "node-1" } });
await peer.ready;
const rnpCall = () => peer.call("agent.report", report);

// HTTPS/JSON, keep-alive, one socket.
const httpsServer = createHttpsServer(tlsServer, (req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const body = JSON.stringify({ ok: true });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
  });
});
httpsServer.keepAliveTimeout = 60_000;
await new Promise<void>((r) => httpsServer.listen(0, "127.0.0.1", r));
const agent = new Agent({ keepAlive: true, maxSockets: 1, ...tlsClient });
const httpsPort = (httpsServer.address() as AddressInfo).port;
const httpsCall = () =>
  new Promise<unknown>((resolve, reject) => {
    const body = JSON.stringify(report);
    const req = request({ host: "127.0.0.1", port: httpsPort, path: "/v1/report", method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))));
    });
    req.on("error", reject);
    req.end(body);
  });

async function sequential(call: () => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 500; i++) await call(); // warm
  const lat: number[] = [];
  for (let i = 0; i < N; i++) {
    const t = performance.now();
    await call();
    lat.push((performance.now() - t) * 1000);
  }
  lat.sort((a, b) => a - b);
  return { p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

async function throughput(call: () => Promise<unknown>): Promise<number> {
  let done = 0;
  const until = performance.now() + SECONDS * 1000;
  const worker = async () => {
    while (performance.now() < until) {
      await call();
      done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: 64 }, worker));
  return (done / (performance.now() - start)) * 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results = { rnp: { p50: [] as number[], p99: [] as number[], tput: [] as number[] }, https: { p50: [] as number[], p99: [] as number[], tput: [] as number[] } };
for (let round = 0; round < ROUNDS; round++) {
  // Alternate which goes first, so drift hits both alike.
  const order: Array<"rnp" | "https"> = round % 2 === 0 ? ["rnp", "https"] : ["https", "rnp"];
  for (const which of order) {
    const call = which === "rnp" ? rnpCall : httpsCall;
    const s = await sequential(call);
    results[which].p50.push(s.p50);
    results[which].p99.push(s.p99);
    results[which].tput.push(await throughput(call));
  }
}
const row = (name: string, r: { p50: number[]; p99: number[]; tput: number[] }) => [name, us(median(r.p50)), us(median(r.p99)), perSec(median(r.tput))];
console.log(`Machine: ${machine()}; ${ROUNDS} rounds of ${N} sequential calls and ${SECONDS} s at 64 in flight each; medians of the rounds.\n`);
console.log(markdownTable(["protocol (one TLS 1.3 connection, mutual auth)", "round trip p50", "p99", "calls/s, 64 in flight"], [row("RNP (msgpackr frames)", results.rnp), row("HTTPS/JSON, keep-alive", results.https)]));
const ratio = median(results.https.p50) / median(results.rnp.p50);
console.log(`\nRNP p50 ${us(median(results.rnp.p50))} (target < 200 µs: ${median(results.rnp.p50) < 200 ? "met" : "NOT met"}); HTTPS/JSON p50 is ${ratio.toFixed(2)} × RNP's; throughput ${(median(results.rnp.tput) / median(results.https.tput)).toFixed(2)} × HTTPS's.`);
peer.close();
agent.destroy();
rnpServer.close();
httpsServer.close();
process.exit(0);
