/**
 * A stand-in agent for the recovery test: opens a process runtime on a data dir, starts the
 * stars given as JSON in argv[3], prints "ready", and waits to be killed. argv[2]: the data dir.
 */
import { ProcessRuntime } from "../../src/runtime/process/process-runtime.js";
import type { StarSpecInput } from "../../src/model/spec.js";

const rt = await ProcessRuntime.create({ dataDir: process.argv[2]! });
const stars = JSON.parse(process.argv[3]!) as Record<string, StarSpecInput>;
for (const [id, spec] of Object.entries(stars)) await rt.start(id, spec);
process.stdout.write(`${JSON.stringify(rt.list())}\nready\n`);
setInterval(() => {}, 1 << 30);
