/** This constellation's version (the package's), as nodes report it. */
import { readFileSync } from "node:fs";

export const VERSION: string = (() => {
  try {
    // dist/src/model/ (and the CLI's bundle, dist/src/cli/) → the package's root.
    return (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
})();

/** Node labels: keys and values of letters, digits, '.', '_', '-' (keys up to 63, values up to 255). */
export const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;
export const LABEL_VALUE = /^[A-Za-z0-9._-]{0,255}$/;
