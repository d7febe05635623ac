/**
 * Deployments from the CLI (issue 13): `deploy app.ts` (the seed's form: the file itself, as the
 * deployment `app`), `apply infra.ts` (a TypeScript file that calls `constellation.deploy` for
 * many services: configuration is code), `rollout status|history|undo`, `scale`, `deployments`.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, extname, join, resolve as resolvePath } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type Command, InvalidArgumentError as CommanderArgError } from "commander";
import type { DeploySpecInput, DeploymentView } from "../model/deployment.js";
import { InvalidArgumentError, isConstellationError } from "../model/errors.js";
import { APPLY, type Deployment, rolloutOutcome } from "../sdk/client.js";
import { BundleError, bundle } from "../sdk/package.js";
import { age, color, printJson, table } from "./output.js";
import { clientOf, starFieldsOf, starFlags } from "./stars.js";

const examples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;

/** A whole number as written in digits (not "1e3", "0x10" or " 5"). */
const whole = (flag: string, min = 0) => (v: string) => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new CommanderArgError(`${flag} takes a whole number of ${min} or more, in digits, got "${v}"`);
  return n;
};

/** One line of a rollout's progress. */
function progressLine(d: DeploymentView): string {
  return `${d.name}: revision ${d.revision} ${d.rollout.state} — ${d.rollout.message}`;
}

/**
 * Follows a deployment's rollout of `revision` until it completes (exit 0) or fails or is
 * rolled back (a one-line error, exit 1), with a progress line (rewritten in place on a terminal).
 */
async function follow(d: Deployment, revision: number, json: boolean): Promise<void> {
  const tty = process.stderr.isTTY && !json;
  let last = "";
  try {
    const done = await d.wait({
      revision,
      onProgress: (v) => {
        const line = progressLine(v);
        if (line === last || json) return;
        last = line;
        if (tty) process.stderr.write(`\r\x1b[K${line}`);
        else process.stderr.write(`${line}\n`);
      },
    });
    if (tty) process.stderr.write("\r\x1b[K");
    if (json) printJson(done);
    else process.stdout.write(`${d.name}: revision ${revision} rolled out (${done.status.available} of ${done.count} available)\n`);
  } catch (err) {
    if (tty) process.stderr.write("\n");
    throw err;
  }
}

export function registerDeployCommands(program: Command): void {
  const deploy = program
    .command("deploy")
    .description("deploy a script (or a command) as a group of stars: made, kept at their count, updated rolling; follows the rollout")
    .argument("[file]", "a .ts/.js file to deploy (its name is the deployment's, e.g. app.ts → app)")
    .option("--name <name>", "the deployment's name (default: the file's name)")
    .option("--instances <n>", "how many stars (default 1)", whole("--instances"))
    .option("--autoscale-min <n>", "with --autoscale-max: run between min and max stars (it starts at min)", whole("--autoscale-min"))
    .option("--autoscale-max <n>", "the most stars (scale and the autoscaler move within)", whole("--autoscale-max", 1))
    .option("--autoscale-metric <metric>", "what the autoscaler scales on (cpu_percent, rps, queue_length, ...), with --autoscale-target")
    .option("--autoscale-target <n>", "the metric's target per star", Number)
    .option("--max-surge <n>", "new stars beyond the count during an update (default 1)", whole("--max-surge"))
    .option("--max-unavailable <n>", "stars under the count during an update (default 0)", whole("--max-unavailable"))
    .option("--min-ready-ms <ms>", "a new star counts once ready this long (default 1000)", whole("--min-ready-ms"))
    .option("--no-auto-rollback", "a failed update stays failed instead of going back by itself")
    .option("--dry-run", "check everything, deploy nothing");
  starFlags(deploy)
    .option("--no-wait", "return once deployed, without following the rollout")
    .option("--json", "print the deployment as JSON")
    .addHelpText(
      "after",
      examples([
        "constellation deploy app.ts --instances 3 --cpu-cores 2 --ram-gb 4",
        "constellation deploy app.ts --autoscale-min 2 --autoscale-max 20 --port http --health http:http/healthz",
        "constellation deploy --name web --instances 3 --port http -- python3 -m http.server",
      ]),
    )
    .allowExcessArguments(true)
    .action(async (file: string | undefined, o: Record<string, unknown>, cmd: Command) => {
      const command = cmd.args.slice(file === undefined ? 0 : 1);
      const isFile = file !== undefined && [".ts", ".mts", ".js", ".mjs", ".cjs"].includes(extname(file));
      if (!isFile && file !== undefined) command.unshift(file);
      const name = (o.name as string | undefined) ?? (isFile ? basename(file!, extname(file!)) : undefined);
      if (name === undefined) cmd.error("error: give a file to deploy (constellation deploy app.ts) or --name with a command after --", { exitCode: 2 });
      if ((o.autoscaleMin === undefined) !== (o.autoscaleMax === undefined)) cmd.error("error: give --autoscale-min and --autoscale-max together", { exitCode: 2 });
      if (o.instances !== undefined && o.autoscaleMin !== undefined) cmd.error("error: give --instances or --autoscale-min/--autoscale-max, not both", { exitCode: 2 });
      if ((o.autoscaleMetric === undefined) !== (o.autoscaleTarget === undefined)) cmd.error("error: give --autoscale-metric and --autoscale-target together", { exitCode: 2 });
      const update = {
        ...(o.maxSurge !== undefined ? { max_surge: o.maxSurge as number } : {}),
        ...(o.maxUnavailable !== undefined ? { max_unavailable: o.maxUnavailable as number } : {}),
        ...(o.minReadyMs !== undefined ? { min_ready_ms: o.minReadyMs as number } : {}),
        ...(o.autoRollback === false ? { auto_rollback: false } : {}),
      };
      const spec = {
        ...starFieldsOf(o, cmd),
        ...(isFile ? { script: resolvePath(file!), ...(command.length > 0 ? { args: command } : {}) } : { command }),
        ...(o.instances !== undefined ? { instances: o.instances as number } : {}),
        ...(o.autoscaleMin !== undefined ? { instances: { min: o.autoscaleMin as number, max: o.autoscaleMax as number } } : {}),
        ...(o.autoscaleMetric !== undefined ? { auto_scale: { metric: o.autoscaleMetric as string, target: o.autoscaleTarget as number } } : {}),
        ...(Object.keys(update).length > 0 ? { update } : {}),
      };
      if (!isFile && command.length === 0) cmd.error("error: give a .ts/.js file to deploy, or a command after --", { exitCode: 2 });
      const c = clientOf(cmd);
      try {
        const d = await c.deploy(name, spec, o.dryRun === true ? { dryRun: true } : {});
        if (o.dryRun === true) return void process.stdout.write(`${name}: checked; nothing deployed (--dry-run)\n`);
        if (!d.changed) process.stderr.write(`${name}: unchanged (revision ${d.revision})\n`);
        if (o.wait === false) {
          if (o.json) printJson(await d.info());
          else process.stdout.write(`${name}: revision ${d.revision}${d.changed ? " deployed" : ""}\n`);
          return;
        }
        await follow(d, d.revision, o.json === true);
      } finally {
        c.close();
      }
    });

  program
    .command("apply")
    .description("run a TypeScript file that deploys (constellation.deploy(...) for each service): checked whole first, then deployed together")
    .argument("<file>", "a .ts/.js file calling constellation.deploy(...), or exporting { name: spec } as default")
    .option("--dry-run", "check everything, deploy nothing")
    .option("--no-wait", "return once deployed, without following the rollouts")
    .addHelpText("after", examples(["constellation apply infra.ts", "constellation apply infra.ts --dry-run"]))
    .action(async (file: string, o: { dryRun?: boolean; wait?: boolean }, cmd: Command) => {
      const specs = await collect(resolvePath(file), cmd);
      const c = clientOf(cmd);
      try {
        // Every one checked before any is deployed: nothing half-applied by a bad one.
        for (const s of specs) {
          await c.deploy(s.name, s, { dryRun: true }).catch((err: Error) => Promise.reject(new InvalidArgumentError("file", `${file}: deployment ${s.name}: ${err.message}; nothing deployed`)));
        }
        if (o.dryRun) return void process.stdout.write(`${specs.map((s) => s.name).join(", ")}: checked; nothing deployed (--dry-run)\n`);
        const done: Array<[Deployment, number]> = [];
        for (const s of specs) {
          const d = await c.deploy(s.name, s);
          process.stdout.write(`${s.name}: ${d.changed ? `revision ${d.revision} deployed` : `unchanged (revision ${d.revision})`}\n`);
          done.push([d, d.revision]);
        }
        if (o.wait !== false) for (const [d, r] of done) await follow(d, r, false);
      } finally {
        c.close();
      }
    });

  const rollout = program.command("rollout").description("a deployment's rollout: status (follows it), history, undo");
  rollout
    .command("status")
    .description("follow the current rollout until it completes (exit 0) or fails (exit 1)")
    .argument("<name>", "the deployment")
    .option("--no-follow", "say where it stands now and return")
    .option("--json", "print as JSON")
    .action(async (name: string, o: { follow?: boolean; json?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const d = c.deployment(name);
        const now = await d.info();
        if (o.follow === false) {
          if (o.json) return printJson(now);
          process.stdout.write(`${progressLine(now)}\n`);
          if (now.rollout.state === "failed") process.exitCode = 1;
          return;
        }
        const outcome = rolloutOutcome(now, now.revision);
        if (outcome !== undefined && outcome !== "complete") throw new Error(outcome);
        await follow(d, now.revision, o.json === true);
      } finally {
        c.close();
      }
    });
  rollout
    .command("history")
    .description("a deployment's revisions, the current one last")
    .argument("<name>", "the deployment")
    .option("--json", "print as JSON")
    .action(async (name: string, o: { json?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const d = await c.deployment(name).info();
        if (o.json) return printJson(d.history);
        const rows = d.history.map((r) => [String(r.revision) + (r.revision === d.revision ? " (current)" : ""), r.hash, age(r.at), r.cause]);
        process.stdout.write(`${table(["REVISION", "TEMPLATE", "AGE", "CAUSE"], rows)}\n`);
      } finally {
        c.close();
      }
    });
  rollout
    .command("undo")
    .description("go back to an earlier revision's template (default: the one before), rolled out as a new revision")
    .argument("<name>", "the deployment")
    .option("--to-revision <n>", "the revision to go back to", whole("--to-revision", 1))
    .option("--no-wait", "return at once, without following the rollout")
    .action(async (name: string, o: { toRevision?: number; wait?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const v = await c.deployment(name).undo(o.toRevision);
        process.stdout.write(`${name}: ${v.history.at(-1)!.cause} (revision ${v.revision})\n`);
        if (o.wait !== false) await follow(c.deployment(name), v.revision, false);
      } finally {
        c.close();
      }
    });

  program
    .command("scale")
    .description("set how many stars a deployment runs")
    .argument("<name>", "the deployment")
    .argument("<instances>", "the count", whole("instances"))
    .addHelpText("after", examples(["constellation scale web 5"]))
    .action(async (name: string, n: number, _o: unknown, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const v = await c.deployment(name).scale(n);
        process.stdout.write(`${name}: scaled to ${v.count}\n`);
      } finally {
        c.close();
      }
    });

  const list = program
    .command("deployments")
    .description("list the deployments: name, stars available / wanted, up to date, revision, rollout")
    .option("--json", "print as JSON")
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const all = await c.deployments();
        if (o.json) return printJson(all);
        if (all.length === 0) return void process.stdout.write("no deployments yet: deploy one with `constellation deploy app.ts --instances 3`\n");
        const rows = all.map((d) => [d.name, d.namespace ?? "default", `${d.status.available}/${d.count}`, String(d.status.updated), String(d.revision), rolloutText(d), age(d.createdAt)]);
        process.stdout.write(`${table(["NAME", "NAMESPACE", "AVAILABLE", "UP-TO-DATE", "REVISION", "ROLLOUT", "AGE"], rows)}\n`);
      } finally {
        c.close();
      }
    });
  list
    .command("rm")
    .description("remove a deployment and its stars")
    .argument("<name>", "the deployment")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        await c.deployment(name).remove();
        process.stdout.write(`${name}: removed\n`);
      } finally {
        c.close();
      }
    });
}

function rolloutText(d: DeploymentView): string {
  const s = d.rollout.state;
  return s === "complete" ? color.green(s) : s === "failed" ? color.red(s) : color.yellow(s);
}

/**
 * Runs `file` and collects the deployments it makes (each `constellation.deploy` call, or its
 * default export `{ name: spec }`), without deploying any. A file that does not compile, throws
 * or deploys nothing is a one-line error naming the file and line.
 */
/** How long a file for apply may run (it only calls deploy: seconds at most). */
const APPLY_TIMEOUT_MS = 60_000;

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

async function collect(file: string, cmd: Command): Promise<Array<{ name: string } & DeploySpecInput>> {
  // The SDK the file imports is this CLI's own package (its deploy calls are collected here).
  const sdk = fileURLToPath(new URL("../index.js", import.meta.url));
  let code: Uint8Array;
  try {
    code = await bundle(file, {
      plugins: [{ name: "constellation-sdk", setup: (b) => b.onResolve({ filter: /^constellation$/ }, () => ({ path: sdk, external: true })) }],
      banner: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    });
  } catch (err) {
    if (!(err instanceof BundleError)) throw err;
    throw new InvalidArgumentError("file", `${err.where}: does not compile: ${err.text}; nothing deployed`);
  }
  const found: Array<{ name: string } & Record<string, unknown>> = [];
  (globalThis as Record<symbol, unknown>)[APPLY] = (spec: { name: string }) => found.push(spec as { name: string } & Record<string, unknown>);
  const g = cmd.optsWithGlobals<{ data?: string; endpoint?: string; token?: string }>();
  // Other SDK calls in the file reach the same constellation as this command.
  if (g.data) process.env.CONSTELLATION_DATA = g.data;
  if (g.endpoint) process.env.CONSTELLATION_ENDPOINT = g.endpoint;
  if (g.token) process.env.CONSTELLATION_TOKEN = g.token;
  process.setSourceMapsEnabled(true);
  let mod: { default?: unknown };
  const dir = await mkdtemp(join(tmpdir(), "constellation-apply-"));
  // The file may not end this command (process.exit) nor hold it for ever.
  const exit = process.exit;
  process.exit = ((code?: number) => {
    throw new InvalidArgumentError("file", `${file} called process.exit(${code ?? ""}): nothing deployed (a file for apply deploys, it does not exit)`);
  }) as typeof process.exit;
  let timer: NodeJS.Timeout | undefined;
  try {
    const bundlePath = join(dir, "apply.mjs");
    await writeFile(bundlePath, code!, { mode: 0o600 });
    const ran = import(pathToFileURL(bundlePath).href) as Promise<{ default?: unknown }>;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new InvalidArgumentError("file", `${file} did not finish within ${APPLY_TIMEOUT_MS / 1000} s: nothing deployed`)), APPLY_TIMEOUT_MS);
    });
    mod = await Promise.race([ran, late]);
  } catch (err) {
    if (isConstellationError(err) && (err as InvalidArgumentError).field === "file") throw err;
    // Where in the file (its source map gives the file's own lines).
    const stack = err instanceof Error ? (err.stack ?? "") : "";
    // (Its source map names the file relative to where the bundle ran: matched by its name.)
    const line = new RegExp(`[/(\\s]${escape(basename(file))}:(\\d+)`).exec(stack)?.[1];
    let said: string;
    try {
      said = err instanceof Error ? err.message : String(err);
    } catch {
      said = "something that is not an error";
    }
    throw new InvalidArgumentError("file", `${file}${line ? `:${line}` : ""}: threw: ${said}; nothing deployed`);
  } finally {
    clearTimeout(timer);
    process.exit = exit;
    delete (globalThis as Record<symbol, unknown>)[APPLY];
    await rm(dir, { recursive: true, force: true });
  }
  if (mod!.default !== undefined && typeof mod!.default === "object" && mod!.default !== null) {
    for (const [name, spec] of Object.entries(mod!.default as Record<string, unknown>)) {
      if (spec === null || typeof spec !== "object" || Array.isArray(spec)) throw new InvalidArgumentError("file", `${file}: its default export's ${name} is not a deploy spec (an object): nothing deployed`);
      const s = spec as Record<string, unknown>;
      // (A relative script is the caller's, as the SDK's deploy takes it: from where apply runs.)
      found.push({ ...s, name, ...(typeof s.script === "string" ? { script: resolvePath(s.script) } : {}) });
    }
  }
  if (found.length === 0) throw new InvalidArgumentError("file", `${file} deploys nothing: call constellation.deploy(name, spec) in it, or export default { name: spec }`);
  const names = found.map((s) => s.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new InvalidArgumentError("file", `${file} deploys ${twice} twice: give each deployment once; nothing deployed`);
  return found as unknown as Array<{ name: string } & DeploySpecInput>;
}
