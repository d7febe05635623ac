// Parallel data processing: one star per input file, all at once; wait for all; collect results.
//   node dist/examples/fan-out.js [FILE...]      (default: examples/data/*.txt)
import { readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "constellation";

const constellation = connect();
const here = fileURLToPath(new URL("../../examples/", import.meta.url));
const inputs = process.argv.length > 2 ? process.argv.slice(2).map((f) => resolve(f)) : readdirSync(join(here, "data")).filter((f) => f.endsWith(".txt")).map((f) => join(here, "data", f));
const run = `fan-${process.pid}`;

const t0 = performance.now();
const stars = await Promise.all(
  inputs.map((file, i) => constellation.create({ name: `${run}-${i}`, script: join(here, "count-words.ts"), args: [file], cpu_percent: 50, ram_mb: 128 })),
);
const results = await Promise.all(
  stars.map(async (star) => {
    const end = await star.wait();
    const lines: string[] = [];
    for await (const l of star.logs()) if (l.stream === "stdout") lines.push(l.line);
    await star.remove();
    if (end.status?.exitCode !== 0) throw new Error(`${star.name} ended ${end.status?.state}: see its logs`);
    return JSON.parse(lines[0] ?? "{}") as { file: string; words: number };
  }),
);
for (const r of results) console.log(`${String(r.words).padStart(6)}  ${r.file}`);
console.log(`${results.reduce((a, r) => a + r.words, 0)} words in ${results.length} files, ${results.length} stars, ${Math.round(performance.now() - t0)} ms`);
constellation.close();
