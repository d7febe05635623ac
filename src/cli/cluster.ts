/** Cluster commands: status, token (make, ls, rm), events. */
import { type Command, InvalidArgumentError as CommanderArgError, Option } from "commander";
import type { ClusterSummary } from "../model/records.js";
import { readFileSync } from "node:fs";
import { InvalidArgumentError } from "../model/errors.js";
import { VIEW_EVERY_MS, dataDirOf, membersFile, membersViewOf } from "../model/node-files.js";
import { clientOf } from "./stars.js";
import { age, bytes, color, printJson, stateText, table } from "./output.js";

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** "90s", "30m", "1h", "7d", "2w", or plain seconds → seconds. */
export function parseDuration(v: string): number {
  const m = /^(\d+)([smhdw]?)$/.exec(v.trim());
  const seconds = m ? Number(m[1]) * UNITS[m[2] || "s"]! : NaN;
  if (!Number.isSafeInteger(seconds) || seconds < 1) {
    throw new CommanderArgError(`--ttl takes a duration like 90s, 30m, 1h, 7d or 2w (at least 1s), got "${v}"`);
  }
  return seconds;
}

/** When a token expires, for people: "-", "in 3h", "expired 2d ago". */
function expiry(at: number | undefined, now = Date.now()): string {
  if (at === undefined) return "never";
  return at > now ? `in ${age(now, at)}` : color.red(`expired ${age(at, now)} ago`);
}

const VIEW_EVERY_S = VIEW_EVERY_MS / 1000;

/** Nodes as a table. */
function nodeTable(nodes: ClusterSummary["nodes"]): string {
  return table(
    ["NODE", "STATE", "GOSSIP", "ADDRESS", "STARS", "CPU (used/total)", "MEMORY (used/total)", "LABELS", "VERSION", "LIMITS"],
    nodes.map((n) => [
      n.name,
      n.revoked ? color.red("revoked") : n.state === "down" ? color.red("down") : n.leaseExpired ? color.yellow("no heartbeat") : n.draining ? color.yellow("draining") : n.cordoned ? color.yellow("cordoned") : n.degraded ? color.yellow(`degraded: ${n.degraded.reason}`) : "ready",
      n.gossip ? `${n.gossip.state === "alive" ? color.green("alive") : n.gossip.state === "suspect" ? color.yellow("suspect") : color.red(n.gossip.state)} ${age(n.gossip.since)}` : "-",
      n.address ?? "-",
      String(n.used?.stars ?? 0),
      `${Number((n.used?.cpuCores ?? 0).toFixed(2))}/${n.cpuCores}`,
      `${bytes(n.used?.memoryBytes ?? 0)}/${bytes(n.memoryBytes)}`,
      Object.entries(n.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(",") || "-",
      n.version ?? "-",
      n.limitsEnforced ? "enforced" : color.yellow("not enforced (dev mode)"),
    ]),
  );
}

interface TokenOptions {
  scope?: "read" | "admin";
  name: string;
  ttl?: number;
  join?: boolean;
  namespace?: string;
}

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
        const nodeStates = new Map<string, number>();
        for (const n of s.nodes) {
          const state = n.revoked ? "revoked" : n.state === "down" ? "down" : n.draining ? "draining" : n.cordoned ? "cordoned" : "ready";
          nodeStates.set(state, (nodeStates.get(state) ?? 0) + 1);
        }
        const byState = [...nodeStates].map(([k, v]) => `${v} ${k === "ready" ? k : color.yellow(k)}`).join(", ");
        const lines = [
          `${color.bold("nodes")}        ${s.nodes.length}: ${byState || "none"}  (up: ${s.capacity.cpuCores} cores, ${bytes(s.capacity.memoryBytes)})`,
          `${color.bold("stars")}        ${s.stars.total}: ${states}`,
        ];
        const several = (s.controllers ?? []).length > 1;
        for (const c of s.controllers ?? []) lines.push(`${color.bold("controller")}   ${c.node}  cluster ${c.address}${c.api ? `  https ${c.api}` : ""}${several && c.leads ? `  ${color.green("leads the loops")}` : ""}`);
        process.stdout.write([...lines, "", nodeTable(s.nodes)].join("\n") + "\n");
      } finally {
        c.close();
      }
    });

  const nodesCmd = program
    .command("nodes")
    .description("the cluster's nodes: name, state, address, stars, CPU and memory used/total, labels, version, whether limits are enforced")
    .option("--json", "print as JSON")
    .addHelpText("after", examples(["constellation nodes", "constellation nodes --json"]))
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const { nodes } = await c.status();
        if (o.json) return printJson(nodes);
        process.stdout.write(`${nodeTable(nodes)}\n`);
      } finally {
        c.close();
      }
    });

  nodesCmd
    .command("revoke")
    .description("revoke a node: its certificates are refused from now on, it is dead at once, and its stars move elsewhere")
    .argument("<node>", "the node's name (constellation nodes)")
    .addHelpText("after", examples(["constellation nodes revoke node-2"]))
    .action(async (node: string, _o: unknown, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        const r = await c.revokeNode(node);
        process.stdout.write(`${node}: revoked (${r.certificates} certificate${r.certificates === 1 ? "" : "s"}); it cannot connect again${r.gossipKeyReplaced ? "; the gossip key was replaced (its copy opens nothing now)" : ""}\n`);
      } finally {
        c.close();
      }
    });

  const nodeCommand = (name: string, description: string, act: (c: ReturnType<typeof clientOf>, node: string) => Promise<void>, done: string) =>
    program
      .command(name)
      .description(description)
      .argument("<node>", "the node's name (constellation nodes)")
      .addHelpText("after", examples([`constellation ${name} node-2`]))
      .action(async (node: string, _o: unknown, cmd: Command) => {
        const c = clientOf(cmd);
        try {
          await act(c, node);
          process.stdout.write(`${node}: ${done}\n`);
        } finally {
          c.close();
        }
      });
  nodeCommand("cordon", "place nothing new on a node (its stars stay)", (c, n) => c.cordon(n), "cordoned");
  nodeCommand("drain", "move a node's stars to other nodes, and place nothing new there (an exclusive star is stopped first)", (c, n) => c.cordon(n, { drain: true }), "draining: its stars move to other nodes");
  nodeCommand("uncordon", "let stars be placed on a node again", (c, n) => c.uncordon(n), "uncordoned");

  const gossip = program.command("gossip").description("the cluster's gossip (membership and failure detection between nodes)");
  gossip
    .command("members")
    .description("the members this node's gossip knows, as it sees them (read from its data dir: run it on the node)")
    .option("--json", "print JSON")
    .addHelpText("after", examples(["constellation gossip members", "sudo constellation --data /var/lib/constellation gossip members --json"]))
    .action((o: { json?: boolean }, cmd: Command) => {
      const dataDir = dataDirOf(cmd.optsWithGlobals<{ data?: string }>().data);
      let text: string;
      try {
        text = readFileSync(membersFile(dataDir), "utf8");
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new InvalidArgumentError(
          "data",
          code === "ENOENT" ? `${dataDir} runs no gossip member (not a node of a cluster, or not started yet): give the node's --data` : code === "EACCES" ? `${membersFile(dataDir)} is root's: run it as root` : `${membersFile(dataDir)} could not be read (${(err as Error).message})`,
        );
      }
      const view = membersViewOf(text);
      if (!view) throw new InvalidArgumentError("data", `${membersFile(dataDir)} is not a gossip view (damaged?): it is written again within ${VIEW_EVERY_S} s while the node runs`);
      const old = Date.now() - view.at > 3 * VIEW_EVERY_S * 1000;
      if (old && !o.json) process.stderr.write(`${color.yellow("warning")}: this view was written ${age(view.at)} ago: the node is not running (it is written every ${VIEW_EVERY_S} s while it runs)\n`);
      if (o.json) return printJson(view);
      const tint = (st: string) => (st === "alive" ? color.green(st) : st === "suspect" ? color.yellow(st) : color.red(st));
      process.stdout.write(
        `${table(
          ["NODE", "STATE", "SINCE", "ADDRESS", "INCARNATION"],
          view.members.map((m) => [m.name === view.self ? `${m.name} (this node)` : m.name, tint(m.state), `${age(m.since)} ago`, m.address, String(m.incarnation)]),
        )}\n`,
      );
    });
  const key = gossip
    .command("key")
    .description("the keys that seal gossip: rotate with install, use, remove (memberlist's way)")
    .addHelpText("after", examples(["constellation gossip key ls", "constellation gossip key install        # a new key, shown once", "constellation gossip key use 1a2b3c4d", "constellation gossip key remove 9f8e7d6c"]));
  const keyTable = (k: { version: number; keys: Array<{ id: string; primary: boolean }>; nodes?: Array<{ node: string; version: number | null }> }) => {
    const lines = [table(["KEY", "IN USE"], k.keys.map((x) => [x.id, x.primary ? color.green("yes (seals)") : "opens only"])), `keyring version ${k.version}`];
    if (k.nodes) {
      const behind = k.nodes.filter((n) => n.version !== k.version);
      lines.push(
        behind.length === 0
          ? `nodes holding it: all ${k.nodes.length} that gossip knows up`
          : `nodes holding it: ${k.nodes.length - behind.length} of ${k.nodes.length}; not yet: ${behind.map((n) => `${n.node} (${n.version ?? "unknown"})`).join(", ")}`,
      );
    }
    return `${lines.join("\n")}\n`;
  };
  const keyAction = (
    name: string,
    description: string,
    act: (c: ReturnType<typeof clientOf>, key: string | undefined, force: boolean) => Promise<{ version: number; keys: Array<{ id: string; primary: boolean }>; id?: string; key?: string }>,
    arg?: string,
  ) => {
    const cmd = key.command(name).description(description).option("--json", "print JSON");
    if (name === "use") cmd.option("--force", "use it even while some node does not hold it yet (those drop gossip until they do)");
    if (arg) cmd.argument(arg, "a key's id (gossip key ls), or the key");
    cmd.action(async (...args: unknown[]) => {
      const command = args.at(-1) as Command;
      const o = command.opts<{ json?: boolean; force?: boolean }>();
      const c = clientOf(command);
      try {
        const r = await act(c, typeof args[0] === "string" ? args[0] : undefined, o.force === true);
        if (o.json) return printJson(r);
        if (r.key) process.stdout.write(`installed key ${r.id}: ${r.key}\n(shown this once; every node up opens packets sealed with it within a heartbeat. Next, once \`constellation gossip key ls\` shows every node holds it: constellation gossip key use ${r.id})\n\n`);
        process.stdout.write(keyTable(r));
      } finally {
        c.close();
      }
    });
  };
  keyAction("ls", "the keys, by id, and which one seals", (c) => c.gossipKeys());
  keyAction("install", "install a key on every node (a new random one when none is given)", (c, k) => c.installGossipKey(k), "[key]");
  keyAction("use", "seal gossip with an installed key from now on (once every node holds it)", (c, k, force) => c.useGossipKey(k!, { force }), "<key>");
  keyAction("remove", "remove a key that no longer seals", (c, k) => c.removeGossipKey(k!), "<key>");

  const token = program
    .command("token")
    .description("make an API token (printed once; the constellation keeps only its hash); `token ls`, `token rm ID`")
    // (Not a mandatory option: commander would ask for it of `token ls` and `token rm` too.)
    .addOption(new Option("--scope <scope>", "what it may do: read (look only; env values hidden) or admin (everything); required").choices(["read", "admin"]))
    .option("--name <name>", "who it is for", "token")
    .option("--ttl <duration>", "expires after this long: 90s, 30m, 1h, 7d, 2w (default: never; a join token: a day)", parseDuration)
    .option("--join", "a join token instead: machines join the cluster with it (constellation join) until it expires or is revoked")
    .option("--namespace <ns>", "it sees and touches this namespace only (its stars, its quota); not the cluster's nodes or tokens")
    .addHelpText("after", examples(["constellation token --scope read --name dashboard", "constellation token --scope admin --namespace team-a --name team-a", "constellation token --scope read --ttl 1h", "constellation token --join --ttl 1h", "constellation token ls", "constellation token ls --join", "constellation token rm 3f9a1c0b7d2e"]))
    .action((o: TokenOptions, cmd: Command) => makeToken(o, cmd));

  token
    .command("create")
    .description("the same as `constellation token`: make an API token (--scope) or a join token (--join)")
    .addOption(new Option("--scope <scope>", "what it may do: read or admin").choices(["read", "admin"]))
    .option("--name <name>", "who it is for")
    .option("--ttl <duration>", "expires after this long: 90s, 30m, 1h, 7d, 2w", parseDuration)
    .option("--join", "a join token instead")
    .option("--namespace <ns>", "it sees and touches this namespace only")
    .addHelpText("after", examples(["constellation token create --scope admin --ttl 30d", "constellation token create --join --ttl 1h"]))
    .action((o: Partial<TokenOptions>, cmd: Command) => {
      const parent = cmd.parent!.opts<TokenOptions>();
      const defined = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<TokenOptions>;
      return makeToken({ ...parent, ...defined }, cmd);
    });

  async function makeToken(o: TokenOptions, cmd: Command): Promise<void> {
    if (o.join) {
      if (o.scope !== undefined || o.namespace !== undefined) cmd.error(`error: a join token has no ${o.scope !== undefined ? "--scope" : "--namespace"} (it lets a machine join, nothing else)`, { exitCode: 2 });
      const c = clientOf(cmd);
      try {
        const t = await c.createJoinToken(o.ttl === undefined ? {} : { ttlSeconds: o.ttl });
        process.stdout.write(`${t.token}\n`);
        if (process.stderr.isTTY) process.stderr.write(color.dim(`id ${t.id}, expires ${new Date(t.expiresAt).toISOString()}; on the new machine: constellation join ${t.address} --token ${t.token}\n`));
      } finally {
        c.close();
      }
      return;
    }
    if (o.scope === undefined) cmd.error("error: required option '--scope <scope>' not specified: constellation token --scope read (or admin), or --join; or token ls, token rm ID", { exitCode: 2 });
    const c = clientOf(cmd);
    try {
      const t = await c.createToken(o.scope, o.name, { ...(o.ttl === undefined ? {} : { ttlSeconds: o.ttl }), ...(o.namespace === undefined ? {} : { namespace: o.namespace }) });
      process.stdout.write(`${t.token}\n`);
      if (process.stderr.isTTY) process.stderr.write(color.dim(`id ${t.id}${t.expiresAt ? `, expires ${new Date(t.expiresAt).toISOString()}` : ""}\n`));
    } finally {
      c.close();
    }
  }

  token
    .command("ls")
    .alias("list")
    .description("list the API tokens: id, scope, name, star, age, expiry (never the tokens themselves)")
    .option("--json", "print as JSON")
    .option("--join", "the join tokens instead")
    .addHelpText("after", examples(["constellation token ls", "constellation token ls --json", "constellation token ls --join"]))
    .action(async (o: { json?: boolean; join?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        // (`--join` after `ls` is taken by `token` itself, which has it too.)
        if (o.join || cmd.parent?.opts<{ join?: boolean }>().join) {
          const tokens = await c.joinTokens();
          if (o.json) return printJson(tokens);
          const rows = tokens.map((t) => [t.id, t.role, age(t.createdAt), t.revokedAt !== undefined ? color.red("revoked") : expiry(t.expiresAt)]);
          process.stdout.write(`${table(["ID", "ROLE", "AGE", "EXPIRES"], rows)}\n`);
          return;
        }
        const tokens = await c.tokens();
        if (o.json) return printJson(tokens);
        const rows = tokens.map((t) => [t.id, t.scope, t.name, t.namespace ?? "(all)", t.star ?? "-", age(t.createdAt), expiry(t.expiresAt)]);
        process.stdout.write(`${table(["ID", "SCOPE", "NAME", "NAMESPACE", "STAR", "AGE", "EXPIRES"], rows)}\n`);
      } finally {
        c.close();
      }
    });

  token
    .command("rm")
    .alias("revoke")
    .description("revoke an API token by its id (or a unique prefix of it): it stops working at once")
    .argument("<id>", "the token's id (constellation token ls)")
    .option("--join", "a join token (constellation token ls --join)")
    .addHelpText("after", examples(["constellation token rm 3f9a1c0b7d2e", "constellation token rm --join 5d2c0e9a1f34"]))
    .action(async (id: string, o: { join?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        if (o.join || cmd.parent?.opts<{ join?: boolean }>().join) await c.revokeJoinToken(id);
        else await c.revokeToken(id);
        process.stdout.write(`${id}: revoked\n`);
      } finally {
        c.close();
      }
    });

  program
    .command("events")
    .description("what happened: every decision and state change, oldest first")
    .option("-f, --follow", "keep printing new events (Ctrl-C to stop)")
    .option("--star <name>", "only the events of the star of this name (not of earlier stars of its name)")
    .option("--all", "with --star: of every star that had the name")
    .option("--json", "one JSON object per line")
    .addHelpText("after", examples(["constellation events", "constellation events -f --star web", "constellation events --star web --all"]))
    .action(async (o: { follow?: boolean; star?: string; all?: boolean; json?: boolean }, cmd: Command) => {
      const c = clientOf(cmd);
      const print = (e: { at: number; kind: string; star?: string; message: string }) =>
        process.stdout.write(o.json ? `${JSON.stringify(e)}\n` : `${color.dim(new Date(e.at).toISOString())}  ${e.kind.padEnd(20)} ${e.star ?? "-"}  ${e.message}\n`);
      const abort = new AbortController();
      process.once("SIGINT", () => abort.abort());
      try {
        const filter = o.star ? { star: o.star, ...(o.all ? { all: true } : {}) } : {};
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

/** A positive number flag (--cpu-cores 2.5, --ram-gb 16, --stars 50). */
const amount = (flag: string, whole = false) => (v: string) => {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < 0 || (whole && !Number.isInteger(n))) throw new CommanderArgError(`${flag} takes ${whole ? "a whole number" : "a number"} of 0 or more, got "${v}"`);
  return n;
};

/** `quota set|ls|rm` and `namespaces`: what each namespace's stars may hold (docs/cluster.md § Namespaces and quotas). */
export function registerQuotaCommands(program: Command): void {
  const list = async (o: { json?: boolean }, cmd: Command) => {
    const c = clientOf(cmd);
    try {
      const spaces = await c.namespaces();
      if (o.json) return printJson(spaces);
      const cap = (used: string, q: number | undefined, unit = "") => (q === undefined ? used : `${used} / ${q}${unit}`);
      const rows = spaces.map((n) => [
        n.name,
        cap(String(n.used.stars), n.quota?.stars),
        cap(`${n.used.cpu_cores}`, n.quota?.cpu_cores, ""),
        cap(`${n.used.ram_mb} MB`, n.quota?.ram_mb, " MB"),
        cap(`${n.used.disk_mb} MB`, n.quota?.disk_mb, " MB"),
      ]);
      process.stdout.write(`${table(["NAMESPACE", "STARS", "CPU CORES", "MEMORY", "DISK"], rows)}\n`);
    } finally {
      c.close();
    }
  };
  program
    .command("namespaces")
    .description("the namespaces: what their stars hold (cpu, memory, disk of those that should run; stars in all) against their quotas")
    .option("--json", "print as JSON")
    .action(list);
  const quota = program.command("quota").description("cap what a namespace's stars may hold: `quota set NS ...`, `quota ls`, `quota rm NS`");
  quota
    .command("set")
    .description("set a namespace's quota (replacing the one it had): going over it is an error at create and start")
    .argument("<namespace>", "the namespace")
    .option("--cpu-cores <n>", "cores its running stars' cpu limits add up to at most", amount("--cpu-cores"))
    .option("--ram-mb <mb>", "memory its running stars hold at most, in MB", amount("--ram-mb", true))
    .option("--ram-gb <gb>", "the same in GB", amount("--ram-gb"))
    .option("--disk-mb <mb>", "disk its running stars hold at most, in MB", amount("--disk-mb", true))
    .option("--disk-gb <gb>", "the same in GB", amount("--disk-gb"))
    .option("--stars <n>", "stars it has at most, running or not", amount("--stars", true))
    .option("--json", "print the namespace as JSON")
    .addHelpText("after", examples(["constellation quota set team-a --cpu-cores 8 --ram-gb 16 --stars 50", "constellation quota ls", "constellation quota rm team-a"]))
    .action(async (ns: string, o: { cpuCores?: number; ramMb?: number; ramGb?: number; diskMb?: number; diskGb?: number; stars?: number; json?: boolean }, cmd: Command) => {
      if (o.ramMb !== undefined && o.ramGb !== undefined) cmd.error("error: give --ram-mb or --ram-gb, not both", { exitCode: 2 });
      if (o.diskMb !== undefined && o.diskGb !== undefined) cmd.error("error: give --disk-mb or --disk-gb, not both", { exitCode: 2 });
      const ram = o.ramGb !== undefined ? Math.round(o.ramGb * 1024) : o.ramMb;
      const disk = o.diskGb !== undefined ? Math.round(o.diskGb * 1024) : o.diskMb;
      const q = { ...(o.cpuCores !== undefined ? { cpu_cores: o.cpuCores } : {}), ...(ram !== undefined ? { ram_mb: ram } : {}), ...(disk !== undefined ? { disk_mb: disk } : {}), ...(o.stars !== undefined ? { stars: o.stars } : {}) };
      if (Object.keys(q).length === 0) cmd.error("error: give at least one of --cpu-cores, --ram-mb/--ram-gb, --disk-mb/--disk-gb, --stars", { exitCode: 2 });
      const c = clientOf(cmd);
      try {
        const view = await c.setQuota(ns, q);
        if (o.json) return printJson(view);
        process.stdout.write(`${ns}: quota set (${Object.entries(q).map(([k, v]) => `${k} ${v}`).join(", ")})\n`);
      } finally {
        c.close();
      }
    });
  quota.command("ls").alias("list").description("the namespaces with what they hold and their quotas").option("--json", "print as JSON").action(list);
  quota
    .command("rm")
    .description("lift a namespace's quota")
    .argument("<namespace>", "the namespace")
    .action(async (ns: string, _o: unknown, cmd: Command) => {
      const c = clientOf(cmd);
      try {
        await c.removeQuota(ns);
        process.stdout.write(`${ns}: quota lifted\n`);
      } finally {
        c.close();
      }
    });
}
