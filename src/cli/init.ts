/**
 * `constellation init` and `constellation join`: a machine becomes a cluster's controller
 * (`init --cluster NAME`) or one of its nodes (`join HOST:PORT --token T`, the same as
 * `init --join`). The node runs detached (its log in the data dir, node.log) and the command
 * returns once it is up, saying what it is and how to add the next machine; run again, it says
 * the same of the node already running (a program may call it twice). `--foreground` runs it in
 * this process instead (under a service manager).
 */
import { type Command, InvalidArgumentError as CommanderArgError } from "commander";
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { InvalidArgumentError, RuntimeUnavailableError } from "../model/errors.js";
import { LABEL_KEY, LABEL_VALUE } from "../model/version.js";
import { DAEMON_ENV, DAEMON_NODE_FLAGS, type NodeReady, dataDirOf, processStarted, readReady, readyFile } from "../model/node-files.js";
import { connect } from "../sdk/client.js";
import { parseStoreUrl } from "../model/store-url.js";
import { color } from "./output.js";

interface InitOptions {
  cluster?: string;
  node?: string;
  join?: string;
  port: number;
  clusterPort: number;
  apiPort: number;
  gossipPort: number;
  store?: string;
  storeCa?: string;
  storeCert?: string;
  storeKey?: string;
  server?: boolean;
  label?: Record<string, string>;
  dev?: boolean;
  foreground?: boolean;
  ttl?: number;
}

/** The ports of this data dir's last start, as it recorded them (absent: none, or unreadable). */
function keptPorts(dataDir: string): Partial<Record<"port" | "clusterPort" | "apiPort" | "gossipPort", number>> {
  const read = (file: string, parse: (text: string) => unknown) => {
    try {
      const text = String(parse(readFileSync(join(dataDir, file), "utf8")));
      const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN; // digits only: not "0x16", "1e3"
      return n > 0 && n < 65536 ? n : undefined;
    } catch {
      return undefined;
    }
  };
  const found = {
    port: read("endpoint", (t) => new URL(t.trim()).port),
    clusterPort: read("cluster.port", (t) => t.trim()),
    apiPort: read("https.port", (t) => t.trim()),
    gossipPort: read(join("cluster", "gossip.json"), (t) => (JSON.parse(t) as { port?: unknown }).port),
  };
  return Object.fromEntries(Object.entries(found).filter(([, v]) => v !== undefined));
}

/** The --store-* TLS files given. */
const storeTls = (o: InitOptions) => ({ ...(o.storeCa ? { ca: o.storeCa } : {}), ...(o.storeCert ? { cert: o.storeCert } : {}), ...(o.storeKey ? { key: o.storeKey } : {}) });

/** --label key=value, repeated: collected into one object. */
const label = (v: string, all: Record<string, string>) => {
  const eq = v.indexOf("=");
  const [key, value] = eq < 0 ? [v, ""] : [v.slice(0, eq), v.slice(eq + 1)];
  if (!LABEL_KEY.test(key) || !LABEL_VALUE.test(value)) {
    throw new CommanderArgError(`--label takes key=value (letters, digits, '.', '_', '-'; a key up to 63, a value up to 255), got "${v}"`);
  }
  if (Object.keys(all).length >= 64 && !(key in all)) throw new CommanderArgError("at most 64 labels");
  return { ...all, [key]: value };
};

const port = (flag: string) => (v: string) => {
  const n = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new CommanderArgError(`${flag} takes a port number 0-65535, got "${v}"`);
  return n;
};

export function registerInit(program: Command): void {
  const init = program
    .command("init")
    .description("make this machine a cluster's controller (--cluster NAME), or join one (--join HOST:PORT --token T); runs detached")
    .option("--cluster <name>", "the cluster's name, a DNS label (default: default)")
    .option("--node <name>", "this node's name, a DNS label (default: the host name)")
    .option("--join <host:port>", "join the cluster whose controller is here (with --token)")
    .option("--port <n>", "the API's port on 127.0.0.1, on a controller (0: any free port)", port("--port"), 7070)
    .option("--cluster-port <n>", "the port nodes join and connect on, on a controller (0: any free port)", port("--cluster-port"), 7946)
    .option("--api-port <n>", "the API over HTTPS for other machines (constellation login), on a controller (0: any free port)", port("--api-port"), 7443)
    .option("--gossip-port <n>", "the UDP port of this node's gossip member (0: any free port)", port("--gossip-port"), 7947)
    .option("--store <etcd://host:port,...>", "keep the cluster's state in etcd (its members' client addresses), for several controllers (HA)")
    .option("--store-ca <file>", "the link to etcd is TLS: the CA certificate (PEM) that signed etcd's certificate")
    .option("--store-cert <file>", "this controller's client certificate (PEM) for etcd's --client-cert-auth (with --store-key)")
    .option("--store-key <file>", "the key of --store-cert (PEM, unencrypted)")
    .option("--server", "be one of the cluster's controllers on the --store etcd (the first makes the cluster; the others join it)")
    .option("--label <key=value>", "a label of this node (repeat for more): zone=a, disk=ssd", label, {})
    .option("--dev", "run without root: limits are not enforced, and every star says so")
    .option("--foreground", "run in this process (under a service manager) instead of detached")
    .addHelpText(
      "after",
      `\nExamples:\n  $ sudo constellation init --cluster production --node node-1\n  $ sudo constellation init --cluster production --node node-2 --join 10.0.0.10:7946 --token cjt1...\n  $ sudo constellation init --cluster production --store etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379 --server   # on each controller (HA)\n  $ sudo constellation init --cluster production --store etcd://10.0.0.1:2379 --store-ca etcd-ca.pem --store-cert ctl.pem --store-key ctl-key.pem --server\n  $ constellation token --join --ttl 1h          # on the controller: a token for the next machine\n`,
    )
    .action((o: InitOptions, cmd: Command) => run(o, cmd));
  void init;
  program
    .command("join")
    .description("join a cluster: this machine becomes one of its nodes (the same as init --join)")
    .argument("<host:port>", "the controller's cluster address, as `constellation init` printed it")
    .option("--node <name>", "this node's name, a DNS label (default: the host name)")
    .option("--gossip-port <n>", "the UDP port of this node's gossip member (0: any free port)", port("--gossip-port"), 7947)
    .option("--label <key=value>", "a label of this node (repeat for more): zone=a, disk=ssd", label, {})
    .option("--dev", "run without root: limits are not enforced, and every star says so")
    .option("--foreground", "run in this process (under a service manager) instead of detached")
    .addHelpText("after", `\nExamples:\n  $ sudo constellation join 10.0.0.10:7946 --token cjt1... --label zone=b\n`)
    .action((address: string, o: InitOptions, cmd: Command) => run({ ...o, join: address, port: 7070, clusterPort: 7946, apiPort: 7443 }, cmd));
}

async function run(o: InitOptions, cmd: Command): Promise<void> {
  const g = cmd.optsWithGlobals<{ data?: string; token?: string }>();
  const dataDir = dataDirOf(g.data);
  if (o.server && o.join !== undefined) cmd.error("error: a controller (--server) joins through the store, not a token: give --store etcd://HOST:PORT,... and no --join", { exitCode: 2 });
  if (o.server && o.store === undefined) cmd.error("error: --server needs the cluster's etcd: --store etcd://HOST:PORT,... (the same on every controller)", { exitCode: 2 });
  if (o.store !== undefined && o.join !== undefined) cmd.error("error: --store is for controllers; a node joins with --join HOST:PORT --token T and no store", { exitCode: 2 });
  if (o.store === undefined && (o.storeCa ?? o.storeCert ?? o.storeKey) !== undefined) cmd.error("error: --store-ca, --store-cert and --store-key are for the link to --store etcd://...: give --store too", { exitCode: 2 });
  if (o.store !== undefined) {
    try {
      parseStoreUrl(o.store, storeTls(o));
    } catch (err) {
      cmd.error(`error: ${(err as Error).message}`, { exitCode: 2 });
    }
  }
  if (o.join !== undefined && g.token === undefined && !existsSync(join(dataDir, "cluster", "cluster.json"))) {
    cmd.error(`error: joining needs the token the controller made: --token T (on the controller: constellation token --join)`, { exitCode: 2 });
  }
  // A restart with no flags comes back on the ports of its last start (nodes keep its addresses).
  const kept = keptPorts(dataDir);
  for (const k of ["port", "clusterPort", "apiPort", "gossipPort"] as const) {
    if (cmd.getOptionValueSource(k) === "default" && kept[k] !== undefined) o[k] = kept[k];
  }
  if (o.foreground) return foreground(o, dataDir, g.token);
  const running = readReady(dataDir);
  if (running) return say(running, dataDir, o, true);
  // Detached: the same command in the foreground, in a session of its own, its output in node.log.
  const log = join(dataDir, "node.log");
  const { mkdirSync } = await import("node:fs");
  mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  rmSync(readyFile(dataDir), { force: true });
  const out = openSync(log, "a", 0o600);
  const args = [process.argv[1]!, "--data", dataDir, ...process.argv.slice(2).filter((a, i, all) => a !== "--data" && all[i - 1] !== "--data"), "--foreground"];
  // With the V8 flags of a node's long-running process (a small young generation, sized for memory).
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, ...args], { detached: true, stdio: ["ignore", out, out], env: { ...process.env, ...DAEMON_ENV } });
  closeSync(out);
  let ended: number | null | undefined;
  child.once("exit", (code) => (ended = code ?? 1));
  child.unref();
  const deadline = Date.now() + 120_000;
  const logAt = statSync(log).size;
  for (;;) {
    const ready = readReady(dataDir);
    if (ready) return say(ready, dataDir, o, false);
    // A node whose controller is away runs on and keeps trying: that is not a failure of init.
    const waiting = /cannot reach the controller at (\S+) yet/.exec(readFileSync(log, "utf8").slice(logAt));
    if (waiting && ended === undefined) {
      process.stdout.write(`${color.yellow("constellation is running")}  but cannot reach its controller at ${waiting[1]} yet; it keeps trying (log: ${log})\n`);
      return;
    }
    if (ended !== undefined || Date.now() > deadline) {
      // This start's own lines only (the log keeps earlier starts'), and its last error.
      const tail = readFileSync(log, "utf8").slice(logAt).trim().split("\n").slice(-5).join("\n");
      const why = [...tail.matchAll(/error: (.*)/g)].at(-1)?.[1] ?? tail;
      if (ended === undefined) child.kill();
      throw new RuntimeUnavailableError(ended === undefined ? `the node did not come up within 120 s; its log (${log}) ends:\n${tail}` : why);
    }
    await delay(50);
  }
}

async function say(r: NodeReady, dataDir: string, o: InitOptions, already: boolean): Promise<void> {
  if (o.cluster !== undefined && o.cluster !== r.cluster) throw new InvalidArgumentError("cluster", `${dataDir} runs node ${r.node} of cluster ${r.cluster}, not ${o.cluster}: give another --data`);
  if (r.role === "agent" && o.join !== undefined && o.join !== r.address) {
    throw new InvalidArgumentError("join", `${dataDir} runs node ${r.node} of cluster ${r.cluster}, joined to ${r.address}: give another --data to join ${o.join}`);
  }
  if (o.node !== undefined && o.node !== r.node) throw new InvalidArgumentError("node", `${dataDir} runs node ${r.node} of cluster ${r.cluster}, not ${o.node}: give another --data`);
  const lines = [
    `${color.green(already ? "constellation is running" : "constellation is up")}  node ${r.node} of cluster ${r.cluster} (${r.role === "controller" ? "controller" : `joined to ${r.address}`}), pid ${r.pid}`,
    `data     ${dataDir}  (log: ${join(dataDir, "node.log")})`,
  ];
  if (r.role === "controller") {
    lines.push(`api      ${r.url}`, `cluster  ${r.address}`);
    if (r.httpsUrl) lines.push(`https    ${r.httpsUrl}  (CA sha256 ${r.caFingerprint})`);
    const c = connect({ dataDir });
    try {
      const t = await c.createJoinToken();
      lines.push("", `Add a machine (this token works for ${Math.round((t.expiresAt - Date.now()) / 3_600_000)} h; \`constellation token --join\` makes more):`, `  constellation join ${t.address} --token ${t.token}`);
      if (r.httpsUrl) {
        lines.push("", "Use it from another machine's CLI (a token made here: constellation token --scope admin --ttl 30d):", `  constellation login ${r.httpsUrl} --ca-fingerprint ${r.caFingerprint} --token T`);
      }
    } finally {
      c.close();
    }
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

async function foreground(o: InitOptions, dataDir: string, token: string | undefined): Promise<void> {
  let ready: Omit<NodeReady, "pid">;
  let close: () => Promise<void>;
  if (o.join !== undefined || existsAgent(dataDir)) {
    const { startAgentNode } = await import("../server/agent-node.js");
    const node = await startAgentNode({
      dataDir,
      ...(o.node ? { nodeName: o.node } : {}),
      ...(o.join !== undefined && token !== undefined ? { join: { address: o.join, token } } : {}),
      ...(o.label ? { labels: o.label } : {}),
      gossipPort: o.gossipPort,
      devMode: o.dev === true,
    });
    ready = { role: "agent", cluster: node.cluster, node: node.name, address: node.controller };
    close = () => node.close();
  } else {
    const { startSingleNode } = await import("../server/single-node.js");
    const node = await startSingleNode({
      dataDir,
      port: o.port,
      devMode: o.dev === true,
      ...(o.node ? { nodeName: o.node } : {}),
      ...(o.label ? { labels: o.label } : {}),
      ...(o.store !== undefined ? { store: parseStoreUrl(o.store, storeTls(o)) } : {}),
      cluster: { ...(o.cluster ? { name: o.cluster } : {}), port: o.clusterPort, apiPort: o.apiPort, gossipPort: o.gossipPort },
    });
    const c = node.cluster!;
    ready = { role: "controller", cluster: c.name, node: c.node, url: node.url, address: c.address, httpsUrl: c.httpsUrl, caFingerprint: c.caFingerprint };
    close = () => node.close();
  }
  const file = readyFile(dataDir);
  const started = processStarted();
  writeFileSync(`${file}.tmp`, `${JSON.stringify({ pid: process.pid, ...(started === undefined ? {} : { started }), ...ready })}\n`, { mode: 0o644 });
  renameSync(`${file}.tmp`, file);
  process.stdout.write(`${new Date().toISOString()} node ${ready.node} of cluster ${ready.cluster} up (${ready.role})\n`);
  await new Promise<void>((done) => {
    const stop = () => {
      rmSync(file, { force: true });
      setTimeout(() => process.exit(0), 5000).unref();
      void close().then(done);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  process.exit(0);
}

const existsAgent = (dataDir: string) => {
  try {
    return (JSON.parse(readFileSync(join(dataDir, "cluster", "cluster.json"), "utf8")) as { role?: string }).role === "agent";
  } catch {
    return false;
  }
};
