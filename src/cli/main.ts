#!/usr/bin/env -S node --max-semi-space-size=1 --optimize-for-size --single-threaded
/**
 * (The V8 flag in the first line keeps the young generation small: `up` is a long-running daemon
 * whose young generation otherwise grows to 2 × 16 MB after a burst of work and stays there —
 * 83 MB resident with 100 stars instead of 67 MB.)
 *
 * The `constellation` command. One file per command group lives beside this one; this file
 * only wires them together and turns errors into one line and an exit code.
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { isConstellationError } from "../model/errors.js";
import { registerClusterCommands, registerQuotaCommands } from "./cluster.js";
import { registerCompletion } from "./completion.js";
import { registerDeployCommands } from "./deploy.js";
import { registerServiceCommands } from "./service.js";
import { registerStarCommands } from "./stars.js";
import { registerInit } from "./init.js";
import { registerLogin } from "./login.js";
import { registerUp } from "./up.js";

const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };

const program = new Command("constellation")
  .description("Run isolated, resource-limited workloads (stars) on one machine or many.")
  .version(pkg.version, "-v, --version", "print the version")
  .showSuggestionAfterError(true)
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(str) })
  .option("--data <dir>", "data dir of a local constellation (default: CONSTELLATION_DATA or ~/.constellation)")
  .option("--endpoint <url>", "the API's URL (default: CONSTELLATION_ENDPOINT, or the data dir's)")
  .option("--token <token>", "API token (default: CONSTELLATION_TOKEN, or the data dir's admin token)");
program.addHelpText(
  "after",
  `
Examples:
  $ constellation up                                       # a single-node constellation (as root)
  $ constellation create --name hello -- echo hello world  # in another shell
  $ constellation list
  $ constellation logs hello
  $ constellation <command> --help                         # each command, with examples

Connection: --data DIR (or CONSTELLATION_DATA; default ~/.constellation), or
--endpoint URL --token T (or CONSTELLATION_ENDPOINT, CONSTELLATION_TOKEN).`,
);
registerUp(program);
registerInit(program);
registerStarCommands(program);
registerClusterCommands(program);
registerQuotaCommands(program);
registerDeployCommands(program);
registerLogin(program);
registerServiceCommands(program);
registerCompletion(program); // last: it lists the commands above
const quiet = (cmds: readonly Command[]): void => {
  for (const c of cmds) {
    c.exitOverride().configureOutput({ outputError: (str, write) => write(str) });
    quiet(c.commands);
  }
};
quiet(program.commands);

// `constellation logs x | head -1`: a reader that went away is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
  });
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // `create --name x ls -la`: the program's own options were taken for ours.
    const args = process.argv.slice(2);
    if (err.code === "commander.unknownOption" && args.includes("create") && !args.includes("--")) {
      process.stderr.write("hint: a program's own options go after --, e.g. constellation create --name list -- ls -la\n");
    }
    // Help and version "errors" are successful exits; usage errors exit 2 with commander's message.
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  // Our errors carry a message that says what to do; anything else is a bug, shown briefly.
  // (A cluster's refusal — RnpError — says what to do, as ours do.)
  const ours = isConstellationError(err) || (err as Error).name === "RnpError";
  const message = `${(err as Error).message}${ours ? "" : " (unexpected: please report it)"}`;
  if (process.argv.slice(2).includes("--json")) {
    // Under --json the error is JSON too (on stdout, where the answer would have been).
    const e = err as { code?: string; status?: number; field?: string };
    process.stdout.write(`${JSON.stringify({ error: { code: ours ? e.code : "UNEXPECTED", message, ...(e.field ? { field: e.field } : {}) } })}\n`);
  } else process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}
