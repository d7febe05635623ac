// The API's HTTP layer against fastify (the design's first choice): the same route with a token
// check, per-request latency (one client, keep-alive) and throughput (10 clients on one socket),
// and the resident memory each costs once loaded. Each side runs in a fresh process; run it a
// few times, alternating, since this machine is shared.
//
//   node bench/api/http-compare.mjs            (after npm run build; installs fastify 5 into
//                                               bench/.peers/fastify on first use)
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const prefix = join(here, "..", ".peers", "fastify");
const kind = process.argv[2];

if (!kind) {
  if (!existsSync(join(prefix, "node_modules", "fastify"))) {
    const r = spawnSync("npm", ["install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", prefix, "fastify@5"], { stdio: "inherit" });
    if (r.status !== 0) throw new Error("cannot install fastify");
  }
  console.log("| server | p50 | p99 | req/s (10 clients) | RSS when loaded |\n| --- | --- | --- | --- | --- |");
  for (const k of ["fastify", "router", "fastify", "router", "fastify", "router"]) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), k], { encoding: "utf8" });
    process.stdout.write(r.stdout);
  }
  process.exit(0);
}

const rss0 = process.memoryUsage().rss;
let url;
const auth = (headers) => {
  if (headers.authorization !== "Bearer x") throw new Error("no token");
};
if (kind === "fastify") {
  const { default: Fastify } = await import(pathToFileURL(join(prefix, "node_modules", "fastify", "fastify.js")).href);
  const app = Fastify({ logger: false });
  app.addHook("onRequest", async (req) => auth(req.headers));
  app.get("/v1/stars/:name", async (req) => ({ name: req.params.name, ok: true }));
  url = await app.listen({ port: 0, host: "127.0.0.1" });
} else {
  const { Router } = await import(pathToFileURL(join(here, "..", "..", "dist", "src", "api", "router.js")).href);
  const r = new Router({ bodyLimit: 1 << 20, onError: (res) => (res.writeHead(500), res.end()), before: async (req) => auth(req.headers) });
  r.route("GET", "/v1/stars/:name", async (req) => ({ body: { name: req.params.name, ok: true } }));
  url = await r.listen(0, "127.0.0.1");
}
const loaded = process.memoryUsage().rss - rss0;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const u = new URL(url);
const get = () =>
  new Promise((resolve, reject) =>
    http.get({ agent, host: u.hostname, port: u.port, path: "/v1/stars/abc", headers: { authorization: "Bearer x" } }, (r) => r.resume().on("end", resolve)).on("error", reject),
  );
for (let i = 0; i < 2000; i++) await get();
const lat = [];
for (let i = 0; i < 5000; i++) {
  const t = performance.now();
  await get();
  lat.push(performance.now() - t);
}
lat.sort((a, b) => a - b);
const t0 = performance.now();
await Promise.all(Array.from({ length: 10 }, async () => { for (let i = 0; i < 1000; i++) await get(); }));
const rps = 10_000 / ((performance.now() - t0) / 1000);
console.log(`| ${kind === "router" ? "node:http + src/api/router.ts" : "fastify 5"} | ${lat[2500].toFixed(3)} ms | ${lat[4950].toFixed(3)} ms | ${Math.round(rps)} | +${(loaded / 2 ** 20).toFixed(1)} MB |`);
process.exit(0);
