// The seed's first example: create a limited star, start it, wait for it, stop it.
//   node dist/examples/create-start-wait.js      (with a constellation up: npm start)
import { fileURLToPath } from "node:url";
import { connect } from "constellation";

const constellation = connect(); // CONSTELLATION_DATA / _ENDPOINT + _TOKEN, or ~/.constellation
const script = fileURLToPath(new URL("../../examples/worker.ts", import.meta.url));
const name = `web-worker-${process.pid}`;

const star = await constellation.create({ name, cpu_percent: 25, ram_mb: 512, script }, { start: false });
await star.start();
const done = await star.wait(); // until it has ended
console.log(`${name}: ${done.status?.state}, exit code ${done.status?.exitCode}`);
for await (const line of star.logs()) console.log(`  ${line.line}`);
await star.stop(); // already ended: returns at once
await star.remove();
constellation.close();
