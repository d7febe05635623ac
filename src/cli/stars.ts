/** Star commands: create, list, inspect, start, stop, rm, logs. Business logic lives in the API. */
import { readFileSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { type Command, InvalidArgumentError as CommanderArgError, Option } from "commander";
import { type Constellation, type StarInfo, connect } from "../sdk/client.js";
import type { StarSpecInput } from "../model/spec.js";
import { PORT_NAME } from "../model/names.js";
import type { Operator, Placement as StarPlacement } from "../model/placement.js";
import { age, bytes, color, parseSince, printJson, stateText, table } from "./output.js";
import { parseEnvFile } from "./env-file.js";

export interface GlobalOptions {
  data?: string;
  endpoint?: string;
  token?: string;
}

export function clientOf(cmd: Command): Constellation {
  const g = cmd.optsWithGlobals<GlobalOptions>();
  return connect({ ...(g.data ? { dataDir: g.data } : {}), ...(g.endpoint ? { endpoint: g.endpoint } : {}), ...(g.token ? { token: g.token } : {}) });
}

const number = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || v.trim() === "") throw new CommanderArgError(`${flag} takes a number, got "${v}"`);
  return n;
};

/** --port http or --port http=8080 (repeatable): the spec's `ports`. */
const portFlag = (v: string, prev: Record<string, number>) => {
  const m = /^([^=]+?)(?:=(.*))?$/.exec(v.trim());
  const name = m?.[1]?.trim() ?? "";
  const port = m?.[2] === undefined ? 0 : Number(m[2]);
  if (!PORT_NAME.test(name)) throw new CommanderArgError(`--port takes NAME or NAME=PORT with NAME lowercase letters, digits and '-' (e.g. http, http=8080), got "${v}"`);
  if (m?.[2] !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new CommanderArgError(`--port ${name}= takes a port from 1 to 65535 (or leave it out for any free one), got "${m[2]}"`);
  if (name in prev) throw new CommanderArgError(`--port ${name} is given twice`);
  return { ...prev, [name]: port };
};

/** "http=20341, admin=9000"; "" when none. */
function portsText(ports: Record<string, number> | undefined): string {
  return Object.entries(ports ?? {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

const since = (v: string) => {
  const at = parseSince(v);
  if (at === undefined) throw new CommanderArgError(`--since takes a duration back from now (10m, 2h, 1d) or a date (2026-11-28T19:40:00Z), got "${v}"`);
  return Math.max(0, Math.floor(at));
};

const envPair = (v: string, acc: Record<string, string>) => {
  const eq = v.indexOf("=");
  if (eq <= 0) throw new CommanderArgError(`--env takes KEY=VALUE, got "${v}"`);
  return { ...acc, [v.slice(0, eq)]: v.slice(eq + 1) };
};

/** --env-file FILE (repeatable; read in order, --env over them): KEY=VALUE lines. */
const envFile = (v: string, acc: Record<string, string>) => {
  let text: string;
  try {
    text = readFileSync(v, "utf8");
  } catch (err) {
    throw new CommanderArgError(`--env-file ${v}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
  try {
    return { ...acc, ...parseEnvFile(text, v) };
  } catch (err) {
    throw new CommanderArgError(`--env-file ${(err as Error).message}`);
  }
};

/** --health http:PORT[/PATH] | tcp:PORT | exec:COMMAND (run by sh -c in the star). */
const healthSpec = (v: string): Record<string, unknown> => {
  const m = /^(http|tcp|exec):(.+)$/.exec(v);
  if (m?.[1] === "exec") return { type: "exec", command: ["sh", "-c", m[2]!] };
  const p = m ? /^(\d+|[a-z][a-z0-9-]*)(\/.*)?$/.exec(m[2]!) : null;
  if (!m || !p || (m[1] === "tcp" && p[2])) throw new CommanderArgError(`--health takes http:PORT[/PATH], tcp:PORT or exec:COMMAND (PORT a number or the name of a --port), got "${v}"`);
  const port = /^\d+$/.test(p[1]!) ? Number(p[1]) : p[1];
  return m[1] === "http" ? { type: "http", port, path: p[2] ?? "/" } : { type: "tcp", port };
};

/** --mount HOST[:PATH][:ro|rw]: read-only unless :rw. */
const mountSpec = (v: string, acc: Array<{ host: string; path?: string; readonly: boolean }>) => {
  const parts = v.split(":");
  const mode = parts.length > 1 && (parts.at(-1) === "ro" || parts.at(-1) === "rw") ? parts.pop() : "ro";
  const [host, path, ...rest] = parts;
  if (!host || rest.length > 0) throw new CommanderArgError(`--mount takes HOST[:PATH][:ro|rw], got "${v}"`);
  return [...acc, { host, ...(path ? { path } : {}), readonly: mode === "ro" }];
};

/**
 * --constraint / --affinity: `zone=a`, `zone!=a`, `zone in a,b`, `zone not_in a,b`,
 * `disk~^ss`, `node.version version >=0.2` (an affinity ends with `@WEIGHT`, −100..100).
 */
export function placementRule(v: string, flag: string): { attribute: string; operator: Operator; value: string | string[]; weight?: number } {
  let text = v.trim();
  let weight: number | undefined;
  if (flag === "--affinity") {
    const m = /^(.*)@(-?\d+)$/.exec(text);
    if (!m) throw new CommanderArgError(`${flag} takes RULE@WEIGHT (weight −100..100, below 0 to avoid), e.g. disk=ssd@50; got "${v}"`);
    text = m[1]!.trim();
    weight = Number(m[2]);
  }
  // The attribute is a name (no =, !, ~ or space); what follows the first operator is the value.
  const sym = /^([^=!~\s]+)\s*(!=|=|~)\s*(.*)$/.exec(text);
  const words = /^([^=!~\s]+)\s+(in|not_in|version)\s+(.+)$/.exec(text);
  let rule: { attribute: string; operator: Operator; value: string | string[] };
  if (sym) {
    if (sym[3]!.startsWith("=")) throw new CommanderArgError(`${flag}: write one = (ATTR=VALUE), not ==; got "${v}"`);
    rule = { attribute: sym[1]!, operator: sym[2] === "~" ? "regexp" : (sym[2] as Operator), value: sym[3]! };
  } else if (words) rule = { attribute: words[1]!, operator: words[2] as Operator, value: words[2] === "version" ? words[3]!.trim() : words[3]!.split(",").map((x) => x.trim()) };
  else throw new CommanderArgError(`${flag} takes ATTR=VALUE, ATTR!=VALUE, ATTR~REGEXP, "ATTR in A,B", "ATTR not_in A,B" or "ATTR version RANGE"; got "${v}"`);
  return weight === undefined ? rule : { ...rule, weight };
}
const constraintRule = (v: string, acc: unknown[]) => [...acc, placementRule(v, "--constraint")];
const affinityRule = (v: string, acc: unknown[]) => [...acc, placementRule(v, "--affinity")];

const examples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;

function memoryText(s: StarInfo): string {
  const limit = s.status?.limits.memoryBytes;
  const used = s.usage?.memoryBytes;
  if (used === undefined && limit === undefined) return "-";
  return `${bytes(used)} / ${limit === undefined ? "no limit" : bytes(limit)}`;
}

/** The flags of a star's spec that create and deploy share (limits, env, health, restarts, placement, ports). */
export function starFlags(cmd: Command): Command {
  return cmd
    .addOption(new Option("--cpu-percent <n>", "CPU limit, % of one core").argParser(number("--cpu-percent")).conflicts("cpuCores"))
    .option("--cpu-cores <n>", "CPU limit in cores", number("--cpu-cores"))
    .addOption(new Option("--ram-mb <n>", "memory limit in MB").argParser(number("--ram-mb")).conflicts("ramGb"))
    .option("--ram-gb <n>", "memory limit in GB", number("--ram-gb"))
    .option("--disk-mb <n>", "disk quota in MB for the star's writable directory", number("--disk-mb"))
    .option("--env <KEY=VALUE>", "environment variable (repeatable)", envPair, {})
    .option("--cwd <dir>", "the program's working directory (default: a script's own directory, read-only to the star, or for a command a writable directory of its own)")
    .option("--env-file <file>", "environment variables from a file of KEY=VALUE lines (repeatable; --env wins)", envFile, {})
    .option("--health <check>", "health check: http:PORT[/PATH], tcp:PORT or exec:COMMAND (PORT: a number or a --port's name)", healthSpec)
    .option("--health-interval-ms <ms>", "how often the health check runs (default 1000)", number("--health-interval-ms"))
    .option("--stop-grace-ms <ms>", "on stop, SIGKILL this long after SIGTERM (default 10000)", number("--stop-grace-ms"))
    .option("--log-max-mb <mb>", "rotate each log stream at this size (default 10)", number("--log-max-mb"))
    .option("--log-max-files <n>", "log files kept per stream, the current one included (default 3)", number("--log-max-files"))
    .option("--pids <n>", "most processes and threads (default: the node's, 256)", number("--pids"))
    .option("--nofile <n>", "most open files per process (default: the node's, 1024)", number("--nofile"))
    .option("--mount <HOST[:PATH][:rw]>", "show a host path to the star, read-only unless :rw (repeatable; admin)", mountSpec, [])
    .option("--root <dir>", "run the command in this directory as its root filesystem (admin)")
    .addOption(new Option("--seccomp <profile>", "the system call filter; unconfined turns it off (admin)").choices(["default", "unconfined"]))
    .addOption(new Option("--restart <policy>", "restart policy").choices(["never", "on-failure", "always"]))
    .option("--exclusive", "at most once in a cluster: never two copies, even through a partition (docs/cluster.md)")
    .addOption(new Option("--runtime <kind>", "process (any program) or isolate (JS/TS in a V8 isolate)").choices(["process", "isolate"]))
    .addOption(new Option("--strategy <how>", "where among the nodes that can take it: spread (fewest stars; default) or binpack (the fullest)").choices(["spread", "binpack"]))
    .option("--spread-by <label>", "spread over this node label's values (e.g. zone) rather than over nodes")
    .option("--constraint <rule>", 'a node it may run on: zone=a, zone!=a, "zone in a,b", "zone not_in a,b", disk~^ss, "node.version version >=0.2" (repeatable)', constraintRule, [])
    .option("--port <name[=port]>", "a named port: --port http (any free one, given as PORT_HTTP and PORT) or --port http=8080 (repeatable)", portFlag, {})
    .option("--namespace <ns>", "the namespace it belongs to (default: default; a namespace's token: its own)")
    .option("--priority <0-100>", "when no node has room, stars of lower priority make room for it (default 50)", number("--priority"))
    .option("--affinity <rule@weight>", "a node it would rather run on (weight 1..100) or avoid (-100..-1): disk=ssd@50 (repeatable)", affinityRule, []);
}

/** The spec fields those flags give (each only if given). */
export function starFieldsOf(o: Record<string, unknown>, cmd: Command): Omit<StarSpecInput, "name"> {
  const spec: Omit<StarSpecInput, "name"> = {};
  if (o.cpuPercent !== undefined) spec.cpu_percent = o.cpuPercent as number;
  if (o.cpuCores !== undefined) spec.cpu_cores = o.cpuCores as number;
  if (o.ramMb !== undefined) spec.ram_mb = o.ramMb as number;
  if (o.ramGb !== undefined) spec.ram_gb = o.ramGb as number;
  if (o.diskMb !== undefined) spec.disk_mb = o.diskMb as number;
  const env = { ...(o.envFile as Record<string, string>), ...(o.env as Record<string, string>) };
  if (Object.keys(env).length > 0) spec.env = env;
  if (o.health !== undefined) spec.health = { ...(o.health as object), ...(o.healthIntervalMs === undefined ? {} : { interval_ms: o.healthIntervalMs }) } as StarSpecInput["health"];
  else if (o.healthIntervalMs !== undefined) cmd.error("error: --health-interval-ms needs --health", { exitCode: 2 });
  if (o.stopGraceMs !== undefined) spec.stop_grace_ms = o.stopGraceMs as number;
  if (o.cwd !== undefined) spec.cwd = resolvePath(o.cwd as string);
  if (o.logMaxMb !== undefined) spec.log_max_mb = o.logMaxMb as number;
  if (o.logMaxFiles !== undefined) spec.log_max_files = o.logMaxFiles as number;
  if (o.restart !== undefined) spec.restart = o.restart as "never";
  if (o.exclusive === true) spec.exclusive = true;
  if (o.runtime !== undefined) spec.runtime = o.runtime as "process";
  if (o.pids !== undefined) spec.pids = o.pids as number;
  if (o.nofile !== undefined) spec.nofile = o.nofile as number;
  if ((o.mount as unknown[]).length > 0) spec.mounts = o.mount as Array<{ host: string; readonly: boolean }>;
  if (o.root !== undefined) spec.root = o.root as string;
  if (o.seccomp !== undefined) spec.seccomp = o.seccomp as "default";
  if (o.priority !== undefined) spec.priority = o.priority as number;
  if (o.namespace !== undefined) spec.namespace = o.namespace as string;
  if (Object.keys(o.port as object).length > 0) spec.ports = o.port as Record<string, number>;
  const constraints = o.constraint as StarPlacement["constraints"];
  const affinities = o.affinity as StarPlacement["affinities"];
  if (o.strategy !== undefined || o.spreadBy !== undefined || constraints.length > 0 || affinities.length > 0) {
    spec.placement = {
      ...(o.strategy !== undefined ? { strategy: o.strategy as "spread" } : {}),
      ...(o.spreadBy !== undefined ? { spread_by: o.spreadBy as string } : {}),
      ...(constraints.length > 0 ? { constraints } : {}),
      ...(affinities.length > 0 ? { affinities } : {}),
    };
  }
  return spec;
}

export function registerStarCommands(program: Command): void {
  const create = program
    .command("create")
    .description("create a star and start it; waits until it runs (or says why it did not)")
    .requiredOption("--name <name>", "the star's name (a DNS label)")
    .option("--script <file>", "a .ts, .js, .mjs or .cjs file to run (bundled from its directory; its arguments after --)");
  starFlags(create)
    .option("--package", "bundle the script here and upload it (as on a cluster, where it is the default)")
    .option("--no-wait", "return once the star is recorded, without waiting for it to run")
    .option("--watch-ms <ms>", "once it runs, watch it this long; if it dies meanwhile, say why and exit non-zero (0: do not watch)", number("--watch-ms"), 1000)
    .option("--no-start", "only record the star (start it later with `constellation start`)")
    .option("--json", "print the star as JSON")
    .argument("[command...]", "a program and its arguments, after --")
    .addHelpText(
      "after",
      examples([
        "constellation create --name hello -- echo hello world",
        "constellation create --name worker --script worker.ts --cpu-percent 25 --ram-mb 512 --env MODE=batch",
        "constellation create --name count --script count-words.ts -- input.txt   # the script's arguments after --",
        "constellation create --name web --script server.mjs --restart always --runtime isolate",
        "constellation create --name etl --mount /srv/data:/data --mount /srv/out:/out:rw -- ./etl.sh",
        'constellation create --name db --ram-gb 8 --constraint "zone in a,b" --affinity disk=ssd@50 -- postgres',
      ]),
    )
    .action(async (command: string[], o: Record<string, unknown>, cmd: Command) => {
      const spec: StarSpecInput = { name: o.name as string };
      if (o.script !== undefined) spec.script = o.script as string;
      // With --script, what follows -- is the script's arguments (as `node app.ts a b` takes them).
      if (command.length > 0) {
        if (o.script !== undefined) spec.args = command;
        else spec.command = command;
      }
      if (o.script === undefined && command.length === 0) cmd.error("error: give --script FILE or a command after --, e.g. constellation create --name hello -- echo hi", { exitCode: 2 });
      Object.assign(spec, starFieldsOf(o, cmd));
      const c = clientOf(cmd);
      try {
        const star = await c.create(spec, { start: o.start !== false, ...(o.package === true ? { package: true } : {}) });
        let info = await star.info();
        if (o.wait !== false && o.start !== false) {
          if (process.stderr.isTTY && !o.json) process.stderr.write(color.dim(`starting ${spec.name}...\n`));
          info = await star.wait({ for: "running", timeoutMs: 120_000 });
          // A star that crashes right after it started is not a success (issue 10): its first
          // moments are watched, and a death or a restart in them is reported.
          const started = info.status;
          const until = Date.now() + (o.watchMs as number);
          while (started?.state === "running" && Date.now() < until) {
            await new Promise((r) => setTimeout(r, Math.min(100, Math.max(0, until - Date.now()))));
            const now = await star.info();
            if (now.status?.state !== "running" || now.status.restarts !== started.restarts || now.status.pid !== started.pid) {
              info = now;
              break;
            }
          }
        }
        const s = info.status;
        const watched = o.wait !== false && o.start !== false;
        // (A star that ended well on its own, exit code 0, did what it was made for.)
        const failed = s !== undefined && watched && (["failed", "oom_killed", "pending", "starting"].includes(s.state) || s.restarts > 0);
        if (o.json) {
          printJson(info);
          if (failed) process.exitCode = 1;
          return;
        }
        if (failed) {
          const why = s.reason ? ` (${s.reason})` : s.exitCode !== undefined && s.exitCode !== null ? ` (exit code ${s.exitCode})` : "";
          const what = s.restarts > 0 ? `died and was restarted (${s.restarts} restart${s.restarts === 1 ? "" : "s"} in its first moments)` : s.pid === undefined && s.startedAt === undefined ? `did not start: ${s.state}` : `died right after it started: ${s.state}`;
          process.stderr.write(`error: star ${spec.name} ${what}${why}; see \`constellation logs ${spec.name}\`\n`);
          process.exitCode = 1;
          return;
        }
        const ports = portsText(s?.ports);
        process.stdout.write(`${spec.name}: ${s ? `${stateText(s.state)}${s.pid ? ` (pid ${s.pid})` : ""}${ports ? `, ports ${ports}` : ""}` : info.desired === "running" ? "created" : "created (stopped)"}\n`);
      } finally {
        c.close();
      }
    });

  program
    .command("list")
    .alias("ls")
    .description("list the stars: name, state, node, CPU %, memory / limit, restarts, age, and the star that made it (parent)")
    .option("--json", "print as JSON")
    .option("-q, --quiet", "print the names only, one per line")
    .addHelpText("after", examples(["constellation list", "constellation list --json", "constellation list -q | xargs constellation restart"]))
    .action(async (o: { json?: boolean; quiet?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        // The table needs no specs (they may be large): asked for without them.
        const stars = await c.list(o.json ? {} : o.quiet ? { fields: ["name"] } : { fields: ["status", "desired", "node", "usage", "createdAt", "owner", "pending", "namespace"] });
        if (o.json) return printJson(stars);
        if (o.quiet) return void process.stdout.write(stars.map((s) => `${s.name}\n`).join(""));
        if (stars.length === 0) return void process.stdout.write("no stars yet: create one with `constellation create --name hello -- echo hello`\n");
        const rows = stars.map((s) => [
          s.name,
          stateText(s.status?.state ?? (s.desired === "running" ? "pending" : "stopped")) +
            (s.status && !s.status.limitsEnforced ? color.yellow(" (limits not enforced)") : "") +
            (!s.status && s.pending ? color.dim(` (${s.pending.reason})`) : ""),
          s.node ?? "-",
          s.usage ? `${s.usage.cpuPercent.toFixed(1)}%` : "-",
          memoryText(s),
          String(s.status?.restarts ?? 0),
          age(s.status?.startedAt ?? s.createdAt),
          s.owner?.name ?? "-",
        ]);
        // Namespaces shown once there is more than the default one.
        const spaced = stars.some((s) => (s.namespace ?? "default") !== "default");
        if (spaced) rows.forEach((r, i) => r.splice(1, 0, stars[i]!.namespace ?? "default"));
        process.stdout.write(`${table(["NAME", ...(spaced ? ["NAMESPACE"] : []), "STATE", "NODE", "CPU", "MEMORY", "RESTARTS", "AGE", "PARENT"], rows)}\n`);
      } finally {
        c.close();
      }
    });

  program
    .command("inspect")
    .description("a star in full: spec, state, host pid, limits, exit code, restarts, recent events")
    .argument("<name>", "the star")
    .option("--json", "print as JSON")
    .addHelpText("after", examples(["constellation inspect hello", "constellation inspect hello --json"]))
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const info = await c.star(name).info();
        if (o.json) return printJson(info);
        const s = info.status;
        const lines = [
          `${color.bold("name")}       ${info.name}`,
          `${color.bold("state")}      ${stateText(s?.state ?? (info.desired === "running" ? "pending" : "stopped"))} (wanted: ${info.desired})${s?.reason ? ` — ${s.reason}` : !s && info.pending ? ` — not placed: ${info.pending.reason}` : ""}`,
          `${color.bold("node")}       ${info.node ?? "-"}`,
          `${color.bold("ports")}      ${portsText(s?.ports) || "-"}`,
          `${color.bold("parent")}     ${info.owner ? `${info.owner.name} (made by its token; removed with it)` : "-"}`,
          `${color.bold("pid")}        ${s?.pid ?? "-"}`,
          `${color.bold("exit")}       ${s?.exitCode ?? (s?.signal ? `signal ${s.signal}` : "-")}`,
          `${color.bold("restarts")}   ${s?.restarts ?? 0}`,
          `${color.bold("limits")}     cpu ${s?.limits.cpuMillis !== undefined ? `${s.limits.cpuMillis / 10}%` : "no limit"}, memory ${bytes(s?.limits.memoryBytes)}, pids ${s?.limits.pids ?? "-"}${s?.limits.diskBytes !== undefined ? `, disk ${bytes(s.limits.diskBytes)}` : ""}${s && !s.limitsEnforced ? color.yellow(" (not enforced: dev mode)") : ""}`,
          `${color.bold("usage")}      ${info.usage ? `${info.usage.cpuPercent}% cpu, ${bytes(info.usage.memoryBytes)}` : "-"}`,
          `${color.bold("spec")}       ${JSON.stringify(info.spec)}`,
          `${color.bold("events")}`,
          ...(info.events ?? []).map((e) => `  ${new Date(e.at).toISOString()}  ${e.kind.padEnd(20)} ${e.message}`),
        ];
        process.stdout.write(`${lines.join("\n")}\n`);
      } finally {
        c.close();
      }
    });

  for (const verb of ["start", "stop"] as const) {
    program
      .command(verb)
      .description(verb === "start" ? "start a star (again, if it has ended); waits until it runs" : "stop a star (SIGTERM, then SIGKILL after its grace period); waits until it has")
      .argument("<name>", "the star")
      .option("--json", "print the star as JSON")
      .addHelpText("after", examples([`constellation ${verb} hello`]))
      .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
        const c = clientOf(cmd);
        try {
          const star = c.star(name);
          const info = verb === "start" ? (await star.start(), await star.wait({ for: "running", timeoutMs: 120_000 })) : await star.stop({ timeoutMs: 120_000 });
          if (o.json) return printJson(info);
          process.stdout.write(`${name}: ${stateText(info.status?.state)}\n`);
          if (verb === "start" && info.status?.state !== "running") process.exitCode = 1;
        } finally {
          c.close();
        }
      });
  }

  program
    .command("restart")
    .description("stop a star (SIGTERM, then SIGKILL after its grace period) and start it again; waits until it runs")
    .argument("<name>", "the star")
    .option("--json", "print the star as JSON")
    .addHelpText("after", examples(["constellation restart web"]))
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const star = c.star(name);
        await star.stop({ timeoutMs: 120_000 });
        await star.start();
        const info = await star.wait({ for: "running", timeoutMs: 120_000 });
        if (o.json) return printJson(info);
        process.stdout.write(`${name}: ${stateText(info.status?.state)}${info.status?.pid ? ` (pid ${info.status.pid})` : ""}\n`);
        if (info.status?.state !== "running") process.exitCode = 1;
      } finally {
        c.close();
      }
    });

  program
    .command("rm")
    .description("remove stars and the stars they made (their files and logs go with them)")
    .argument("[names...]", "the stars")
    .option("-f, --force", "remove them even if they or stars they made run (they are stopped first)")
    .option("--all", "every star you may see (with --yes)")
    .option("--yes", "with --all: yes, every one")
    .addHelpText("after", examples(["constellation rm hello", "constellation rm -f web worker-1 worker-2", "constellation rm --all --yes -f"]))
    .action(async (names: string[], o: { force?: boolean; all?: boolean; yes?: boolean }, cmd: Command) => {
      if (o.all && names.length > 0) cmd.error("error: give names or --all, not both", { exitCode: 2 });
      if (o.all && !o.yes) cmd.error("error: --all removes every star you may see: add --yes to say so", { exitCode: 2 });
      if (!o.all && names.length === 0) cmd.error("error: give the names of the stars to remove (or --all --yes)", { exitCode: 2 });
      const c = clientOf(cmd);
      try {
        const targets = o.all ? (await c.list({ fields: ["owner"] })).filter((s) => !s.owner).map((s) => s.name) : names;
        let failed = 0;
        for (const name of targets) {
          try {
            await c.star(name).remove(o.force ? { force: true } : {});
            process.stdout.write(`${name}: removed\n`);
          } catch (err) {
            // Each name stands alone: the rest are still removed, and the exit code says one failed.
            if (targets.length === 1) throw err;
            process.stderr.write(`error: ${name}: ${(err as Error).message}\n`);
            failed++;
          }
        }
        if (failed > 0) process.exitCode = 1;
      } finally {
        c.close();
      }
    });

  program
    .command("logs")
    .description("a star's output (stdout and stderr)")
    .argument("<name>", "the star")
    .option("-f, --follow", "keep printing new lines until the star ends (Ctrl-C to stop)")
    .option("--tail <n>", "only the last N lines of each stream", number("--tail"))
    .option("--since <when>", "only lines since then: 10m, 2h, 1d, 1h30m ago, or a date (2026-11-28T19:40:00Z)", since)
    .option("-t, --timestamps", "begin each line with the time the node read it")
    .option("--json", "one JSON object per line ({stream, line, time})")
    .addHelpText("after", examples(["constellation logs hello", "constellation logs web -f --tail 20", "constellation logs web --since 10m --timestamps"]))
    .action(async (name: string, o: { follow?: boolean; tail?: number; since?: number; timestamps?: boolean; json?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      const abort = new AbortController();
      process.once("SIGINT", () => abort.abort());
      try {
        const options = { follow: o.follow === true, signal: abort.signal, ...(o.tail === undefined ? {} : { tail: o.tail }), ...(o.since === undefined ? {} : { since: o.since }) };
        for await (const l of c.star(name).logs(options)) {
          if (o.json) process.stdout.write(`${JSON.stringify(l)}\n`);
          else (l.stream === "stderr" ? process.stderr : process.stdout).write(o.timestamps ? `${l.time ?? "-".padEnd(24)} ${l.line}\n` : `${l.line}\n`);
        }
      } finally {
        c.close();
      }
    });
}
