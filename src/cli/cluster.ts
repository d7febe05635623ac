/** Cluster commands: status, events. */
import { type Command, Option } from "commander";
import { clientOf } from "./stars.js";
import { bytes, color, printJson, stateText, table } from "./output.js";

const examples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;

export function registerClusterCommands(program: Command): void {
  program
    .command("status")
    .description("the constellation at a glance: nodes, capacity, stars by state")
    .option("--json", "print as JSON")
    .addHelpText("after", examples(["constellation status"]))
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const s = await c.status();
        if (o.json) return printJson(s);
        const states = Object.entries(s.stars.byState).map(([k, v]) => `${v} ${stateText(k)}`).join(", ") || "none";
        process.stdout.write(
          [
            `${color.bold("nodes")}     ${s.nodes.length}  (${s.capacity.cpuCores} cores, ${bytes(s.capacity.memoryBytes)})`,
            `${color.bold("stars")}     ${s.stars.total}: ${states}`,
            "",
            table(
              ["NODE", "CORES", "MEMORY", "RUNTIMES", "LIMITS"],
              s.nodes.map((n) => [n.name, String(n.cpuCores), bytes(n.memoryBytes), n.runtimes.join(","), n.limitsEnforced ? "enforced" : color.yellow("not enforced (dev mode)")]),
            ),
          ].join("\n") + "\n",
        );
      } finally {
        c.close();
      }
    });

  program
    .command("token")
    .description("make an API token (printed once; the constellation keeps only its hash)")
    .addOption(new Option("--scope <scope>", "what it may do: read (look only) or admin (everything)").choices(["read", "admin"]).makeOptionMandatory())
    .option("--name <name>", "who it is for", "token")
    .addHelpText("after", examples(["constellation token --scope read --name dashboard"]))
    .action(async (o: { scope: "read" | "admin"; name: string }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const t = await c.createToken(o.scope, o.name);
        process.stdout.write(`${t.token}\n`);
      } finally {
        c.close();
      }
    });

  program
    .command("events")
    .description("what happened: every decision and state change, oldest first")
    .option("-f, --follow", "keep printing new events (Ctrl-C to stop)")
    .option("--star <name>", "only this star's events")
    .option("--json", "one JSON object per line")
    .addHelpText("after", examples(["constellation events", "constellation events -f --star web"]))
    .action(async (o: { follow?: boolean; star?: string; json?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      const print = (e: { at: number; kind: string; star?: string; message: string }) =>
        process.stdout.write(o.json ? `${JSON.stringify(e)}\n` : `${color.dim(new Date(e.at).toISOString())}  ${e.kind.padEnd(20)} ${e.star ?? "-"}  ${e.message}\n`);
      const abort = new AbortController();
      process.once("SIGINT", () => abort.abort());
      try {
        const filter = o.star ? { star: o.star } : {};
        if (!o.follow) {
          for (const e of await c.events(filter)) print(e);
          return;
        }
        for await (const e of c.followEvents({ ...filter, signal: abort.signal })) print(e);
      } finally {
        c.close();
      }
    });
}
