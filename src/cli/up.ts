/** `constellation up`: a single-node constellation in the foreground. */
import type { Command } from "commander";
import { InvalidArgumentError as CommanderArgError } from "commander";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { color } from "./output.js";

export function registerUp(program: Command): void {
  program
    .command("up")
    .description("run a single-node constellation in the foreground (Ctrl-C stops the control plane; stars keep running)")
    .option("--port <n>", "API port on 127.0.0.1 (0: any free port)", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CommanderArgError(`--port takes a port number 0-65535, got "${v}"`);
      return n;
    }, 7070)
    .option("--dev", "run without root: limits are not enforced, and every star says so")
    .addHelpText(
      "after",
      `\nThe data dir (--data, CONSTELLATION_DATA, default ~/.constellation) keeps the store, the stars'\nfiles and the admin token; starting again with it keeps all state.\n\nExamples:\n  $ sudo constellation up\n  $ constellation up --data ./.constellation --port 0 --dev\n`,
    )
    .action(async (o: { port: number; dev?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals<{ data?: string }>();
      const dataDir = resolve(g.data ?? process.env.CONSTELLATION_DATA ?? join(homedir(), ".constellation"));
      const { startSingleNode } = await import("../server/single-node.js"); // the server loads only here
      const node = await startSingleNode({ dataDir, port: o.port, devMode: o.dev === true }).catch((err: unknown) => {
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
          "  constellation create --name hello -- echo hello world",
          "  constellation list",
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
