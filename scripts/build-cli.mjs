// Bundles the CLI into one file (dist/src/cli/constellation.mjs, the package's bin): one module
// to load instead of a dozen resolved one by one, which is most of a command's own start-up time
// (`constellation list` has to answer in well under 200 ms, Node's own start included). The
// server side (`up`) stays outside the bundle and loads only when `up` runs.
import { chmodSync } from "node:fs";
import { build } from "esbuild";

await build({
  entryPoints: ["src/cli/main.ts"],
  outfile: "dist/src/cli/constellation.mjs",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // `up` imports the server lazily, by this path relative to the CLI (dist/src/cli/ → dist/src/server/).
  // esbuild (apply bundles a file with it) is loaded from its package, on first use only.
  external: ["../server/single-node.js", "../server/agent-node.js", "esbuild"],
  // commander is CommonJS: give the bundle a require() for the built-in modules it asks for.
  banner: { js: 'import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);' },
  sourcemap: true,
  logLevel: "warning",
});
chmodSync("dist/src/cli/constellation.mjs", 0o755); // run directly, so its #! line (with V8 flags) applies
