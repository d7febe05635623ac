/**
 * Starts a REAL etcd (one member or a three-member cluster) for tests, on free loopback
 * ports, in a fresh temp dir that also holds each member's log (nothing goes to test output).
 *
 *   const etcd = await startEtcd({ members: 3 });
 *   try { ... etcd.endpoints ... } finally { await etcd.stop(); }
 *
 * Every member is SIGKILLed if the test process exits without calling stop().
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { accessSync, constants as fsConstants, closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCa, createCsr, signCsr } from "../../src/cluster/tls/ca.js";

export const ETCD_BIN = process.env.CONSTELLATION_ETCD_BIN ?? "/usr/bin/etcd";

/** etcd's limit for one request: our MAX_REQUEST_BYTES (2 MiB) plus room for gRPC framing. */
const MAX_REQUEST_BYTES = 3145728;
const HEALTH_DEADLINE_MS = 30_000;
const STOP_GRACE_MS = 3_000;
const START_ATTEMPTS = 5;

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** True while the member's process runs. */
  readonly running: boolean;
}

export interface EtcdCluster {
  /** Client URLs (http://127.0.0.1:port), one per member, in member order. */
  endpoints: string[];
  /** Stops every member (SIGTERM, then SIGKILL after a grace), waits for exit, removes the temp dir. */
  stop(): Promise<void>;
  /** SIGKILLs (default) or SIGTERMs member `i` and waits for it to exit. Its data dir stays. */
  killMember(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a killed member again on its data dir and waits until it is healthy. */
  restartMember(i: number): Promise<void>;
  /** The members: names, URLs, data dirs, log files, and whether each is running. */
  readonly members: readonly EtcdMember[];
  /** The temp dir holding every member's data dir and log. */
  readonly dir: string;
  /** The last lines of member `i`'s log, for failure messages. */
  logTail(i: number, lines?: number): string;
  /** Index of the member that running members report as leader, if any answers. */
  leaderIndex(): Promise<number | undefined>;
  /** With `tls`: the CA's and a client's files. */
  readonly tls?: EtcdTls;
}

export interface StartEtcdOptions {
  members?: 1 | 3;
  /**
   * Member i runs in network namespace `netns(i)` at `address(i)` (ports 2379 and 2380), as on
   * a host of its own (test/helpers/hosts.ts, made `reachable` so this process can check it).
   */
  hosts?: { netns(i: number): string; address(i: number): string };
  /** Extra etcd flags for every member (e.g. "--experimental-watch-progress-notify-interval=1s"). */
  extraArgs?: string[];
  /**
   * Mutual TLS on every link: clients must show a certificate signed by the members' CA
   * (`--client-cert-auth`), and so must members to each other. The cluster's `tls` names a
   * client certificate for the test's own clients.
   */
  tls?: boolean;
}

/** PEM files: the CA that signed the members' certificates, and a client certificate and key it signed. */
export interface EtcdTls {
  ca: string;
  cert: string;
  key: string;
}

// ---------------------------------------------------------------------------------------------
// Process-exit safety net: whatever a test does, no etcd outlives the test process.

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHandlerInstalled = false;

function killEverything(): void {
  for (const child of liveChildren) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const dir of liveDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    } catch {
      // best effort: a SIGKILLed member may still hold files for a moment
    }
  }
}

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on("exit", killEverything);
  // A signal that kills the test process skips 'exit' handlers: clean up, then die of the
  // signal as before (unless someone else handles it, who then decides whether to exit).
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    const onSignal = (): void => {
      killEverything();
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

// ---------------------------------------------------------------------------------------------

class Member implements EtcdMember {
  child: ChildProcess | undefined;
  exited: Promise<void> = Promise.resolve();
  private alive = false;
  constructor(
    readonly name: string,
    readonly clientUrl: string,
    readonly peerUrl: string,
    readonly dataDir: string,
    readonly logFile: string,
    readonly args: string[],
    /** The network namespace it runs in (absent: this one). */
    readonly netns?: string,
  ) {}

  get running(): boolean {
    return this.alive;
  }

  spawn(): void {
    const fd = openSync(this.logFile, "a");
    let child: ChildProcess;
    try {
      // (nsenter enters the namespace and execs etcd: the child is etcd itself.)
      child = this.netns
        ? spawn("nsenter", [`--net=/var/run/netns/${this.netns}`, "--", ETCD_BIN, ...this.args], { stdio: ["ignore", fd, fd], env: etcdEnv() })
        : spawn(ETCD_BIN, this.args, { stdio: ["ignore", fd, fd], env: etcdEnv() });
    } finally {
      closeSync(fd);
    }
    this.child = child;
    this.alive = true;
    liveChildren.add(child);
    this.exited = new Promise<void>((resolve) => {
      const done = (): void => {
        this.alive = false;
        liveChildren.delete(child);
        resolve();
      };
      child.once("exit", done);
      // spawn failure (ENOENT, EACCES): 'exit' may never come
      child.once("error", done);
    });
    // Do not keep the test process alive just because a test forgot stop(): the exit handler kills it.
    child.unref();
  }

  async kill(signal: NodeJS.Signals, graceMs: number): Promise<void> {
    const child = this.child;
    if (!child || !this.running) {
      await this.exited;
      return;
    }
    // The child is unref'd: while we wait for it, it must keep the event loop alive (else a
    // process with nothing else to do would exit before its 'exit' event arrives).
    child.ref();
    child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut && this.running) {
      child.kill("SIGKILL");
      await this.exited;
    }
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }
}

/** The environment without ETCD_* variables (etcd reads its flags from them too). */
function etcdEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("ETCD_")) env[k] = v;
  return env;
}

function checkBinary(): void {
  try {
    accessSync(ETCD_BIN, fsConstants.X_OK);
  } catch {
    throw new Error(
      `etcd is not installed (no executable at ${ETCD_BIN}): install it with \`apt-get install -y etcd-server\` ` +
        "(or point CONSTELLATION_ETCD_BIN at an etcd 3.4+ binary)",
    );
  }
}

/** `n` distinct free loopback ports: bind them all on port 0 at once, then release them. */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
      });
    }
    return servers.map((s) => {
      const addr = s.address();
      if (addr === null || typeof addr === "string") throw new Error("unexpected server address");
      return addr.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** The TLS material of a cluster started with `tls` (PEM contents), for the harness's own requests. */
const clientTls = new Map<string, { ca: string; cert: string; key: string }>();

/** A request to a member's HTTP gateway (over mutual TLS for an https member): its status and JSON body. */
function ask(clientUrl: string, path: string, timeoutMs: number, body?: string): Promise<{ ok: boolean; json: unknown }> {
  const url = new URL(path, clientUrl);
  const tls = url.protocol === "https:" ? clientTls.get(clientUrl) : undefined;
  return new Promise((resolve, reject) => {
    const req = (tls ? httpsRequest : httpRequest)(url, { method: body === undefined ? "GET" : "POST", timeout: timeoutMs, ...(tls ?? {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        try {
          resolve({ ok: (res.statusCode ?? 500) < 300, json: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

async function isHealthy(clientUrl: string): Promise<boolean> {
  try {
    const res = await ask(clientUrl, "/health", 2_000);
    if (!res.ok) return false;
    const body = res.json as { health?: unknown };
    return body.health === "true" || body.health === true;
  } catch {
    return false;
  }
}

/** A member's ID and the leader it knows, from the gRPC gateway's /v3/maintenance/status. */
async function memberStatus(clientUrl: string): Promise<{ memberId: string; leader: string } | undefined> {
  try {
    const res = await ask(clientUrl, "/v3/maintenance/status", 1_000, "{}");
    if (!res.ok) return undefined;
    const body = res.json as { header?: { member_id?: string }; leader?: string };
    if (!body.header?.member_id || !body.leader) return undefined;
    return { memberId: body.header.member_id, leader: body.leader };
  } catch {
    return undefined;
  }
}

async function findLeader(members: Member[]): Promise<number | undefined> {
  const statuses = await Promise.all(members.map((m) => (m.running ? memberStatus(m.clientUrl) : undefined)));
  const leaderId = statuses.find((s) => s !== undefined)?.leader;
  const idx = statuses.findIndex((s) => s !== undefined && s.memberId === leaderId);
  return idx >= 0 ? idx : undefined;
}

class StartFailure extends Error {
  constructor(
    message: string,
    readonly portClash: boolean,
  ) {
    super(message);
  }
}

/** Polls /health on every given member until all are healthy; fails fast if one exits. */
async function waitHealthy(members: Member[], deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  const pending = new Set(members);
  let delay = 20;
  while (pending.size > 0) {
    for (const m of [...pending]) {
      if (!m.running) {
        const tail = m.logTail();
        throw new StartFailure(
          `etcd member ${m.name} exited during startup (log ${m.logFile}):\n${tail}`,
          /address already in use/i.test(tail),
        );
      }
      if (await isHealthy(m.clientUrl)) pending.delete(m);
    }
    if (pending.size === 0) break;
    if (Date.now() > deadline) {
      const names = [...pending].map((m) => m.name).join(", ");
      const tails = [...pending].map((m) => `--- ${m.name} (${m.logFile}):\n${m.logTail()}`).join("\n");
      throw new StartFailure(`etcd member(s) ${names} not healthy after ${deadlineMs} ms:\n${tails}`, false);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 250);
  }
}

export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdCluster> {
  checkBinary();
  installExitHandler();
  const count = opts.members ?? 1;
  if (count !== 1 && count !== 3) throw new Error(`members must be 1 or 3, got ${String(count)}`);
  let lastError: unknown;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), "constellation-etcd-"));
    liveDirs.add(dir);
    const tls = opts.tls ? await makeTls(dir, count, opts.hosts) : undefined;
    const members = await defineMembers(dir, count, opts.extraArgs ?? [], opts.hosts, tls);
    try {
      if (tls) for (const m of members) clientTls.set(m.clientUrl, { ca: readFileSync(tls.ca, "utf8"), cert: readFileSync(tls.cert, "utf8"), key: readFileSync(tls.key, "utf8") });
      for (const m of members) m.spawn();
      await waitHealthy(members, HEALTH_DEADLINE_MS);
      return makeCluster(dir, members, tls);
    } catch (err) {
      lastError = err;
      await Promise.all(members.map((m) => m.kill("SIGKILL", STOP_GRACE_MS)));
      await rm(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
      // Another process took one of our ports between probing and binding: try new ports.
      if (!(err instanceof StartFailure && err.portClash)) throw err;
    }
  }
  throw lastError;
}

/** The members' CA, one certificate for every member (each's address in it), and a client's, as files in `dir/tls`. */
async function makeTls(dir: string, count: number, hosts?: StartEtcdOptions["hosts"]): Promise<EtcdTls & { member: { cert: string; key: string } }> {
  const at = join(dir, "tls");
  mkdirSync(at, { mode: 0o700 });
  const ca = await createCa("etcd-test");
  const sign = async (node: string, addresses: string[]) => {
    const { csr, key } = await createCsr(node);
    return { cert: (await signCsr(ca, csr, { cluster: "etcd-test", node, role: "controller", addresses })).cert, key };
  };
  const member = await sign("etcd-member", hosts ? Array.from({ length: count }, (_, i) => hosts.address(i)) : ["127.0.0.1"]);
  const client = await sign("etcd-client", []);
  const file = (name: string, body: string) => (writeFileSync(join(at, name), body, { mode: 0o600 }), join(at, name));
  return {
    ca: file("ca.pem", ca.cert),
    cert: file("client.pem", client.cert),
    key: file("client-key.pem", client.key),
    member: { cert: file("member.pem", member.cert), key: file("member-key.pem", member.key) },
  };
}

async function defineMembers(dir: string, count: number, extraArgs: string[], hosts?: StartEtcdOptions["hosts"], tls?: Awaited<ReturnType<typeof makeTls>>): Promise<Member[]> {
  const ports = hosts ? [] : await freePorts(count * 2);
  const scheme = tls ? "https" : "http";
  const token = `constellation-test-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const specs = Array.from({ length: count }, (_, i) => ({
    name: `m${i}`,
    clientUrl: hosts ? `${scheme}://${hosts.address(i)}:2379` : `${scheme}://127.0.0.1:${ports[2 * i]!}`,
    peerUrl: hosts ? `${scheme}://${hosts.address(i)}:2380` : `${scheme}://127.0.0.1:${ports[2 * i + 1]!}`,
  }));
  const initialCluster = specs.map((s) => `${s.name}=${s.peerUrl}`).join(",");
  return specs.map((s, i) => {
    const dataDir = join(dir, `${s.name}.etcd`);
    const logFile = join(dir, `${s.name}.log`);
    const args = [
      `--name=${s.name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${s.clientUrl}`,
      `--advertise-client-urls=${s.clientUrl}`,
      `--listen-peer-urls=${s.peerUrl}`,
      `--initial-advertise-peer-urls=${s.peerUrl}`,
      `--initial-cluster=${initialCluster}`,
      "--initial-cluster-state=new",
      `--initial-cluster-token=${token}`,
      `--max-request-bytes=${MAX_REQUEST_BYTES}`,
      "--logger=zap",
      "--log-outputs=stderr", // stderr is the member's log file
      ...(tls
        ? [
            `--cert-file=${tls.member.cert}`,
            `--key-file=${tls.member.key}`,
            `--trusted-ca-file=${tls.ca}`,
            "--client-cert-auth",
            `--peer-cert-file=${tls.member.cert}`,
            `--peer-key-file=${tls.member.key}`,
            `--peer-trusted-ca-file=${tls.ca}`,
            "--peer-client-cert-auth",
          ]
        : []),
      ...extraArgs,
    ];
    return new Member(s.name, s.clientUrl, s.peerUrl, dataDir, logFile, args, hosts?.netns(i));
  });
}

function makeCluster(dir: string, members: Member[], tls?: EtcdTls): EtcdCluster {
  let stopped: Promise<void> | undefined;
  const member = (i: number): Member => {
    const m = members[i];
    if (!m) throw new RangeError(`no member ${i} (the cluster has ${members.length})`);
    return m;
  };
  return {
    endpoints: members.map((m) => m.clientUrl),
    members,
    dir,
    ...(tls ? { tls: { ca: tls.ca, cert: tls.cert, key: tls.key } } : {}),
    stop() {
      stopped ??= (async () => {
        // The leader last: stopped while its followers still run, it first tries to hand over
        // leadership to one of them and, if they are stopping too, hangs until the grace ends.
        const leader = members.length > 1 ? await findLeader(members) : undefined;
        await Promise.all(members.map((m, i) => (i === leader ? undefined : m.kill("SIGTERM", STOP_GRACE_MS))));
        if (leader !== undefined) await members[leader]!.kill("SIGTERM", STOP_GRACE_MS);
        await rm(dir, { recursive: true, force: true });
        liveDirs.delete(dir);
      })();
      return stopped;
    },
    async killMember(i, signal = "SIGKILL") {
      await member(i).kill(signal, STOP_GRACE_MS);
    },
    async restartMember(i) {
      if (stopped) throw new Error("the cluster has been stopped");
      const m = member(i);
      if (m.running) throw new Error(`member ${m.name} is still running`);
      m.spawn();
      await waitHealthy([m], HEALTH_DEADLINE_MS);
    },
    logTail(i, lines) {
      return member(i).logTail(lines);
    },
    leaderIndex() {
      return findLeader(members);
    },
  };
}
