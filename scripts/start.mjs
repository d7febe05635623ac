// `npm start`: a single-node constellation in the foreground, its data in ./.constellation (or
// CONSTELLATION_DATA), with the example star `hello` (examples/hello.ts). Ctrl-C stops it.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const cli = join(root, "dist/src/cli/constellation.mjs");
if (!existsSync(cli) || !existsSync(join(root, "dist/native/star-shim"))) {
  console.log("building (npm run build)...");
  if (spawnSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" }).status !== 0) process.exit(1);
}
const isRoot = process.getuid?.() === 0;
const data = process.env.CONSTELLATION_DATA ?? join(root, ".constellation");
// With a node's flags and environment, as `init` starts one (src/model/node-files.ts).
const { DAEMON_ENV, DAEMON_NODE_FLAGS } = await import(join(root, "dist/src/model/node-files.js"));
const args = [...DAEMON_NODE_FLAGS, cli, "up", "--data", data, ...process.argv.slice(2)];
if (!isRoot && !args.includes("--dev")) {
  args.push("--dev");
  console.log("not root: starting in dev mode — stars run as plain processes and are marked \"limits not enforced\".");
  console.log("For real isolation (cgroups, namespaces, a user per star): sudo npm start\n");
}
const up = spawn(process.execPath, args, { stdio: ["inherit", "pipe", "inherit"], env: { ...process.env, ...DAEMON_ENV } });
let out = "";
let created = false;
up.stdout.on("data", async (d) => {
  process.stdout.write(d);
  out += d.toString();
  if (created || !/constellation up\s+http/.test(out)) return;
  created = true;
  try {
    const { connect } = await import(join(root, "dist/src/index.js"));
    const c = connect({ dataDir: data });
    try {
      await c.create({ name: "hello", script: join(root, "examples/hello.ts"), cpu_percent: 10, ram_mb: 64, restart: "on-failure" });
      console.log("example star `hello` created (examples/hello.ts). Try:");
    } catch (err) {
      if (err.code !== "STAR_EXISTS") throw err;
      console.log("example star `hello` is there from before. Try:");
    }
    c.close();
    console.log(`  ./constellation --data ${data} list`);
    console.log(`  ./constellation --data ${data} logs hello -f\n`);
  } catch (err) {
    console.error(`could not create the example star: ${err.message}`);
  }
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => up.kill(sig));
up.on("exit", (code, signal) => process.exit(code ?? (signal ? 0 : 1)));
