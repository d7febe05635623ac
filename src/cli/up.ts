/** `constellation up`: a single-node constellation in the foreground. */
import type { Command } from "commander";
import { InvalidArgumentError as CommanderArgError } from "commander";
import { accessSync, constants, existsSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { NodeLimits } from "../model/spec.js";
import { dataDirOf } from "../model/node-files.js";
import { color } from "./output.js";

/**
 * `up`'s flags for the node's defaults and ceilings (NodeLimits; the defaults, in the help, are
 * DEFAULT_NODE_LIMITS's — a test keeps them in step without loading the spec module here).
 */
export const LIMIT_FLAGS: Array<{ key: keyof NodeLimits; flag: string; what: string; whole: boolean }> = [
  { key: "defaultRamMb", flag: "--default-ram-mb <mb>", what: "memory of a star that asks for none, in MB (default 512)", whole: false },
  { key: "defaultDiskMb", flag: "--default-disk-mb <mb>", what: "disk of a star that asks for none, in MB: a filesystem of its own (default: none, the node's disk unbounded)", whole: false },
  { key: "defaultPids", flag: "--default-pids <n>", what: "processes of a star that asks for no pids (default 256)", whole: true },
  { key: "maxPids", flag: "--max-pids <n>", what: "most processes a star may ask for (default 4096)", whole: true },
  { key: "defaultNofile", flag: "--default-nofile <n>", what: "open files of a star that asks for no nofile (default 1024)", whole: true },
  { key: "maxNofile", flag: "--max-nofile <n>", what: "most open files a star may ask for (default 65536)", whole: true },
  { key: "maxLogMb", flag: "--max-log-mb <mb>", what: "most MB of logs a star may keep (default 1024)", whole: false },
  { key: "memoryOvercommit", flag: "--memory-overcommit <x>", what: "promise at most x × the node's memory to stars that should run (default 1)", whole: false },
];

const limitArg = (flag: string, whole: boolean) => (v: string) => {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n <= 0 || (whole && !Number.isInteger(n))) {
    throw new CommanderArgError(`${flag.split(" ")[0]} takes a ${whole ? "whole " : ""}number greater than 0, got "${v}"`);
  }
  return n;
};

export function registerUp(program: Command): void {
  const up = program
    .command("up")
    .description("run a single-node constellation in the foreground (Ctrl-C stops the control plane; stars keep running)")
    .option("--port <n>", "API port on 127.0.0.1 (0: any free port)", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CommanderArgError(`--port takes a port number 0-65535, got "${v}"`);
      return n;
    }, 7070)
    .option("--dev", "run without root: limits are not enforced, and every star says so")
    .option("--reset", "start even if the store is missing or empty while this node has stars' files: those stars are ended and removed")
    .option("--adopt", "start even if the store is missing or empty while this node has stars' files: their records are rebuilt from them");
  for (const f of LIMIT_FLAGS) up.option(f.flag, f.what, limitArg(f.flag, f.whole));
  up.option("--tree-max-stars <n>", "most stars an admin's star and the stars below it may number (default 1000)", limitArg("--tree-max-stars", true));
  up.option("--tree-max-spec-mb <mb>", "most MB of specs an admin's star and the stars below it may hold (default 16)", limitArg("--tree-max-spec-mb", false));
  up
    .addHelpText(
      "after",
      `\nThe data dir (--data, CONSTELLATION_DATA, default ~/.constellation) keeps the store, the stars'\nfiles and the admin token; starting again with it keeps all state.\n\nExamples:\n  $ sudo constellation up\n  $ constellation up --data ./.constellation --port 0 --dev\n  $ sudo constellation up --default-ram-mb 256 --memory-overcommit 1.5\n`,
    )
    .action(async (o: { port: number; dev?: boolean; reset?: boolean; adopt?: boolean; treeMaxStars?: number; treeMaxSpecMb?: number } & Partial<NodeLimits>, cmd: Command) => {
      const g = cmd.optsWithGlobals<{ data?: string }>();
      const dataDir = dataDirOf(g.data);
      const limits: Partial<NodeLimits> = {};
      for (const f of LIMIT_FLAGS) if (o[f.key] !== undefined) limits[f.key] = o[f.key]!;
      const { startSingleNode } = await import("../server/single-node.js"); // the server loads only here
      const quotas = {
        ...(o.treeMaxStars === undefined ? {} : { stars: o.treeMaxStars }),
        ...(o.treeMaxSpecMb === undefined ? {} : { specBytes: Math.round(o.treeMaxSpecMb * 2 ** 20) }),
      };
      const node = await startSingleNode({ dataDir, port: o.port, devMode: o.dev === true, limits, quotas, reset: o.reset === true, adopt: o.adopt === true }).catch((err: unknown) => {
        // Not root: say which flag runs it anyway.
        if (!o.dev && process.getuid?.() !== 0 && (err as { code?: string }).code === "RUNTIME_UNAVAILABLE") {
          (err as Error).message += " — as this user: constellation up --dev (limits not enforced), or run it as root";
        }
        throw err;
      });
      process.stdout.write(
        [
          `${color.green("constellation up")}  ${node.url}${o.dev ? color.yellow("  (dev mode: limits not enforced)") : ""}`,
          `data     ${dataDir}`,
          `token    ${join(dataDir, "admin.token")} (admin)`,
          "",
          "Connect from another shell:",
          `  export CONSTELLATION_DATA=${dataDir}`,
          `  ${cliCommand()} create --name greeting -- echo hello world`,
          `  ${cliCommand()} list`,
          "",
          "Add machines: `up` is one machine; a cluster is made with init (stop this one first, or give",
          "init another --data), and init prints the command that joins each next machine:",
          `  sudo ${cliCommand()} init --cluster default`,
          "",
        ].join("\n"),
      );
      await new Promise<void>((done) => {
        const stop = () => {
          process.stdout.write("stopping the control plane (stars keep running)...\n");
          // Whatever still holds the event loop after the close (a client's open stream) must not
          // keep a stopped control plane alive: exit, at the latest after 5 s.
          setTimeout(() => process.exit(0), 5000).unref();
          void node.close().then(done);
        };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      process.exit(0);
    });
}

/**
 * How to call this CLI from another shell, as printed in the banner (it must work as printed):
 * `constellation` when that is on PATH, else the checkout's `./constellation` (or its full path),
 * else node and this very file.
 */
function cliCommand(): string {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (!dir) continue;
    try {
      accessSync(join(dir, "constellation"), constants.X_OK);
      return "constellation";
    } catch {
      // not here
    }
  }
  const wrapper = fileURLToPath(new URL("../../../constellation", import.meta.url));
  if (existsSync(wrapper)) {
    const rel = relative(process.cwd(), wrapper);
    return rel === "constellation" ? "./constellation" : wrapper;
  }
  return `node ${process.argv[1] ?? "constellation"}`;
}
