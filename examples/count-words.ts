// A star for fan-out.ts: counts the words of the file it is given and prints the count.
import { readFileSync } from "node:fs";

const file = process.argv[2];
if (!file) {
  console.error("usage: count-words.ts FILE");
  process.exit(2);
}
const words = readFileSync(file, "utf8").split(/\s+/).filter(Boolean).length;
console.log(JSON.stringify({ file, words }));
