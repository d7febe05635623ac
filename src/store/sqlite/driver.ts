/**
 * The SQLite driver for this Node: better-sqlite3 12 on Node 20 (13 needs Node 22 and crashes
 * on 20), better-sqlite3 13 (installed as `better-sqlite3-napi`, a Node-API build that runs on
 * every later Node) on Node 22 and later, where 12 aborts the process when the GC frees a
 * statement (its ObjectWrap removes a cleanup hook outside any environment: Node 24's
 * `Assertion failed: (env) != nullptr`). Both have one API.
 */
import type BetterSqlite3 from "better-sqlite3";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

function load(): typeof BetterSqlite3 {
  if (Number(process.versions.node.split(".")[0]) >= 22) {
    try {
      return require("better-sqlite3-napi") as typeof BetterSqlite3;
    } catch (err) {
      throw new Error(
        `Node ${process.versions.node} needs better-sqlite3 13 (the optional dependency better-sqlite3-napi), which is not installed or not built here: run npm install (with a C compiler) — ${(err as Error).message}`,
      );
    }
  }
  return require("better-sqlite3") as typeof BetterSqlite3;
}

/** better-sqlite3's Database class, of the version this Node runs (its types are 12's and 13's both). */
export const Sqlite: typeof BetterSqlite3 = load();
