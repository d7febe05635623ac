#!/usr/bin/env node
/**
 * The `constellation` command. One file per command group lives beside this one; this file
 * only wires them together and turns errors into one line and an exit code.
 * (Commands arrive with their features: see the README for what works today.)
 */
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";

const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };

const program = new Command("constellation")
  .description("Run isolated, resource-limited workloads (stars) on one machine or many.")
  .version(pkg.version, "-v, --version", "print the version")
  .showSuggestionAfterError(true)
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(str) });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version "errors" are successful exits; usage errors exit 2 with commander's message.
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  process.stderr.write(`error: ${(err as Error).message}\n`);
  process.exit(1);
}
