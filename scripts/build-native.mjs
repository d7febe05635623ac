// Builds the star launcher (src/runtime/process/native/star-shim.c) into dist/native/, and the
// addon a node's process gives its free memory back with (src/server/native/malloc-trim.c).
// Static when the C library allows it, so the shim maps almost nothing (it stays resident per star).
import { mkdirSync } from "node:fs";
import { spawnSync } from "node:child_process";

if (process.platform !== "linux") {
  console.log("build-native: not Linux; the process runtime is unavailable here (stars need Linux)");
  process.exit(0);
}
mkdirSync("dist/native", { recursive: true });
const cc = process.env.CC ?? "cc";
const dir = "src/runtime/process/native";
const sources = ["star-shim.c", "sandbox.c", "seccomp.c"].map((f) => `${dir}/${f}`);
const base = ["-O2", "-Wall", "-Wextra", "-o", "dist/native/star-shim", ...sources];
let res = spawnSync(cc, ["-static", ...base], { stdio: "inherit" });
if (res.status !== 0) {
  console.log("build-native: static link failed, building dynamically");
  res = spawnSync(cc, base, { stdio: "inherit" });
}
if (res.status !== 0) {
  console.error(`build-native: cannot compile the star launcher with ${cc}: install a C compiler (apt-get install -y gcc libc6-dev)`);
  process.exit(1);
}

// The memory addon needs glibc (malloc_trim); without it a node runs as well, keeping the memory.
res = spawnSync(cc, ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-shared", "-fPIC", "-o", "dist/native/malloc-trim.node", "src/server/native/malloc-trim.c"], { stdio: "inherit" });
if (res.status !== 0) console.log("build-native: the malloc-trim addon did not build (not glibc?): a node's process will not give freed memory back");
