/**
 * Control-plane benchmark (issue 4), one run:
 *  - create through the API until the star runs (SDK: POST /v1/stars, then wait for running),
 *    p50/p99, beside the process runtime's own start of the same program in this process;
 *  - wall time of `constellation list` (a new node process each time) with 100 stars;
 *  - the `constellation up` process's idle CPU and RSS with 0 and with 100 stars.
 *
 *   node dist/bench/api/api-bench.js [--n 100] [--stars 100] [--idle-s 30]
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connect } from "../../src/index.js";
import { ProcessRuntime } from "../../src/runtime/process/process-runtime.js";
import { machine, markdownTable, percentile } from "../lib/report.js";
import { up, kill9 } from "../../test/helpers/constellation.js";

const { values } = parseArgs({ options: { n: { type: "string", default: "100" }, stars: { type: "string", default: "100" }, "idle-s": { type: "string", default: "30" } } });
const N = Number(values.n);
const STARS = Number(values.stars);
const IDLE_S = Number(values["idle-s"]);
const CLI = fileURLToPath(new URL("../../src/cli/constellation.mjs", import.meta.url));
const here = fileURLToPath(new URL(".", import.meta.url));

const work = await mkdtemp("/var/tmp/constellation-apibench-");
chmodSync(work, 0o755);
const tiny = join(work, "tiny");
if (spawnSync("cc", ["-O2", "-static", "-o", tiny, join(here, "../../../bench/runtime/tiny.c")], { stdio: "inherit" }).status !== 0) throw new Error("needs cc");

const sorted = (a: number[]) => [...a].sort((x, y) => x - y);
const fmt = (a: number[]) => [`${percentile(sorted(a), 50).toFixed(2)} ms`, `${percentile(sorted(a), 99).toFixed(2)} ms`];

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, 100 Hz ticks
}
const rssMb = (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;

async function idle(pid: number): Promise<{ cpuPercent: number; rss: number }> {
  await new Promise((r) => setTimeout(r, 5000)); // settle (start-up work, the burst before)
  const c0 = cpuMs(pid);
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  return { cpuPercent: ((cpuMs(pid) - c0) / (Date.now() - t0)) * 100, rss: rssMb(pid) };
}

function timeCli(dataDir: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [CLI, "--data", dataDir, ...args], { stdio: ["ignore", "ignore", "inherit"] });
    child.once("exit", (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`constellation ${args.join(" ")} exited ${code}`))));
  });
}

// 1. The runtime's own start, in this process (the floor for create → running).
const rt = await ProcessRuntime.create({ dataDir: join(work, "rt") });
const own: number[] = [];
for (let i = 0; i < N; i++) {
  const t0 = performance.now();
  await rt.start(`own-${i}`, { name: `own-${i}`, command: [tiny], ram_mb: 64 });
  own.push(performance.now() - t0);
  await rt.remove(`own-${i}`);
}
await rt.close();

// 2. Through the API of `constellation up`.
const node = await up(join(work, "data"));
const pid = node.child.pid!;
const sdk = connect({ dataDir: node.dataDir });
try {
  const idle0 = await idle(pid);
  const viaApi: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const star = await sdk.create({ name: `api-${i}`, command: [tiny], ram_mb: 64 });
    const info = await star.wait({ for: "running" });
    viaApi.push(performance.now() - t0);
    if (info.status?.state !== "running") throw new Error(`api-${i}: ${info.status?.state}`);
    await star.remove({ force: true });
  }
  // 3. 100 stars held: `constellation list`, and the control plane idle.
  await Promise.all(Array.from({ length: STARS }, (_, i) => sdk.create({ name: `held-${i}`, command: [tiny], ram_mb: 16 })));
  for (let i = 0; i < STARS; i++) await sdk.star(`held-${i}`).wait({ for: "running" });
  const list: number[] = [];
  for (let i = 0; i < 20; i++) list.push(await timeCli(node.dataDir, ["list"]));
  const bare: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    spawnSync(process.execPath, ["-e", "0"]);
    bare.push(performance.now() - t0);
  }
  const idle100 = await idle(pid);

  console.log(`Machine: ${machine()}\n`);
  console.log(
    markdownTable(
      ["what", "n", "p50", "p99"],
      [
        ["process runtime's own start (in-process, tiny program)", N, ...fmt(own)],
        ["create via the API until running (SDK: POST, then wait)", N, ...fmt(viaApi)],
        [`\`constellation list\` with ${STARS} stars (new process each)`, 20, ...fmt(list)],
        ["`node -e 0` (Node's own start, for reference)", 20, ...fmt(bare)],
      ],
    ),
  );
  console.log(`\ncreate → running adds ${(percentile(sorted(viaApi), 50) - percentile(sorted(own), 50)).toFixed(2)} ms p50 to the runtime's own start.`);
  console.log(`\nControl plane (the \`constellation up\` process) over ${IDLE_S} s idle:\n`);
  console.log(
    markdownTable(
      ["stars", "CPU", "RSS"],
      [
        [0, `${idle0.cpuPercent.toFixed(2)} %`, `${idle0.rss.toFixed(1)} MB`],
        [STARS, `${idle100.cpuPercent.toFixed(2)} %`, `${idle100.rss.toFixed(1)} MB`],
      ],
    ),
  );
} finally {
  for (const s of await sdk.list().catch(() => [])) await sdk.star(s.name).remove({ force: true }).catch(() => undefined);
  sdk.close();
  await kill9(node);
  await rm(work, { recursive: true, force: true });
}
