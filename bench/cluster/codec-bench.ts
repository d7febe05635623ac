/**
 * The wire format for RNP (issue 11): msgpackr against @msgpack/msgpack, with JSON beside them
 * as the floor everyone knows, on the messages RNP carries most — an assignment (a star's record
 * with its spec), a status report, and a batch of 100 log lines. Encode and decode separately,
 * ops/s as the median of rounds; bytes per message. Rounds rotate the codecs so the machine's
 * drift hits all alike.
 *
 *   node dist/bench/cluster/codec-bench.js [--rounds 7] [--ms 300]
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import { Packr, Unpackr } from "msgpackr";
import { parseArgs } from "node:util";
import { machine, markdownTable } from "../lib/report.js";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "7" }, ms: { type: "string", default: "300" } } });
const ROUNDS = Number(values.rounds);
const MS = Number(values.ms);

const assignment = {
  t: 1,
  id: 4711,
  m: "assignments.item",
  b: {
    name: "web-frontend-7",
    uid: "2b1e6a0c-9f1d-4c1e-8a5e-2f4d6c7b8a90",
    generation: 12,
    desired: "running",
    node: "node-17",
    createdAt: 1795902811666,
    spec: {
      name: "web-frontend-7",
      command: ["node", "server.js", "--port", "8080"],
      args: [],
      env: Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`VAR_${i}`, `value-${i}-${"x".repeat(i * 3)}`])),
      cpu_cores: 0.5,
      ram_mb: 256,
      disk_mb: 1024,
      restart: "on-failure",
      health: { http: { path: "/healthz", port: 8080 }, interval_ms: 5000 },
      labels: { team: "web", tier: "frontend" },
    },
  },
};
const status = {
  t: 1,
  id: 90210,
  m: "status.report",
  b: { name: "web-frontend-7", uid: "2b1e6a0c-9f1d-4c1e-8a5e-2f4d6c7b8a90", generation: 12, state: "running", pid: 41234, restarts: 0, ready: true, updatedAt: 1795902811666 },
};
const logs = {
  t: 4,
  id: 77,
  b: Array.from({ length: 100 }, (_, i) => ({ stream: i % 7 === 0 ? "stderr" : "stdout", time: "2026-11-28T21:40:01.123Z", line: `GET /api/items/${i} 200 ${(i * 1.7).toFixed(1)}ms user=${i % 13}` })),
};
const messages = { assignment, status, "log batch (100 lines)": logs };

interface Codec {
  name: string;
  encode: (v: unknown) => Uint8Array;
  decode: (b: Uint8Array) => unknown;
}
const mp = { enc: new Encoder(), dec: new Decoder() };
// Each side has its own instance, as two peers would: nothing learnt while encoding helps decoding.
const packr = { enc: new Packr({ useRecords: false }), dec: new Unpackr({ useRecords: false, mapsAsObjects: true }) };
const packrRecords = { enc: new Packr({ useRecords: true, sequential: true }), dec: new Unpackr({ useRecords: true, mapsAsObjects: true, sequential: true }) };
const codecs: Codec[] = [
  { name: "JSON", encode: (v) => Buffer.from(JSON.stringify(v)), decode: (b) => JSON.parse(Buffer.from(b.buffer, b.byteOffset, b.length).toString("utf8")) },
  { name: "@msgpack/msgpack", encode: (v) => mp.enc.encode(v), decode: (b) => mp.dec.decode(b) },
  { name: "msgpackr", encode: (v) => packr.enc.pack(v), decode: (b) => packr.dec.unpack(b) },
  { name: "msgpackr (records, self-describing)", encode: (v) => packrRecords.enc.pack(v), decode: (b) => packrRecords.dec.unpack(b) },
];

/** Operations per second of `op` over about MS milliseconds. */
function rate(op: () => void): number {
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < MS) {
    for (let i = 0; i < 200; i++) op();
    n += 200;
    now = performance.now();
  }
  return (n / (now - start)) * 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results = new Map<string, { enc: number[]; dec: number[]; bytes: number }>();
for (const [mname, msg] of Object.entries(messages)) {
  for (const c of codecs) {
    const bytes = c.encode(msg);
    if (JSON.stringify(c.decode(bytes)) !== JSON.stringify(msg)) throw new Error(`${c.name} does not round-trip the ${mname}`);
    results.set(`${mname}\0${c.name}`, { enc: [], dec: [], bytes: bytes.length });
  }
}
for (let r = 0; r < ROUNDS; r++) {
  const order = [...codecs.slice(r % codecs.length), ...codecs.slice(0, r % codecs.length)];
  for (const [mname, msg] of Object.entries(messages)) {
    for (const c of order) {
      const res = results.get(`${mname}\0${c.name}`)!;
      const bytes = c.encode(msg);
      res.enc.push(rate(() => c.encode(msg)));
      res.dec.push(rate(() => c.decode(bytes)));
    }
  }
}

const rows: Array<Array<string | number>> = [];
for (const mname of Object.keys(messages)) {
  const json = results.get(`${mname}\0JSON`)!;
  for (const c of codecs) {
    const res = results.get(`${mname}\0${c.name}`)!;
    const enc = median(res.enc);
    const dec = median(res.dec);
    rows.push([mname, c.name, res.bytes, `${Math.round(enc).toLocaleString("en-US")}/s`, `${Math.round(dec).toLocaleString("en-US")}/s`, `${(enc / median(json.enc)).toFixed(2)}× / ${(dec / median(json.dec)).toFixed(2)}×`]);
  }
}
console.log(`RNP wire format, median of ${ROUNDS} rounds of ${MS} ms each — ${machine()}\n`);
console.log(markdownTable(["message", "codec", "bytes", "encode", "decode", "vs JSON (enc / dec)"], rows));
