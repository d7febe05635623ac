/**
 * The TypeScript SDK: a typed client of the HTTP API.
 *
 * ```ts
 * import { connect } from "constellation";
 * const c = connect();                       // from the environment or ~/.constellation
 * const star = await c.create({ name: "web-worker-1", cpu_percent: 25, ram_mb: 512, script: "worker.ts" });
 * await star.wait();                         // until it has ended
 * ```
 */
import { accessSync, constants, existsSync, readFileSync, statSync } from "node:fs";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join, resolve } from "node:path";
import { ApiUnavailableError, InvalidArgumentError } from "../model/errors.js";
import { DAEMON_ENV, DAEMON_NODE_FLAGS, dataDirOf, readReady } from "../model/node-files.js";
import type { ClusterSummary, Event, NamespaceView, QuotaRecord, StarView, TokenInfo } from "../model/records.js";
import type { DeploySpecInput, DeploymentView as DeploymentInfo } from "../model/deployment.js";
import type { StarSpecInput } from "../model/spec.js";
import type { LogLine, StarStatus } from "../model/status.js";
import { type Transport, httpTransport } from "./http.js";
import { readLogin } from "./login.js";
import { packaged } from "./package.js";

/** The longest one wait request asks for (the API allows a star's token at most 120 s at once). */
const WAIT_PART_MS = 120_000;

export type { ClusterSummary, DeploySpecInput, DeploymentInfo, Event, LogLine, NamespaceView, QuotaRecord, StarSpecInput, StarStatus, TokenInfo };

/** A token just made: the token itself (shown this once) and how it is listed. */
export interface NewToken {
  token: string;
  id: string;
  scope: "admin" | "read";
  name: string;
  /** When it stops working (ms since the epoch); absent: never. */
  expiresAt?: number;
}

/** What `init` is given: the cluster, this node, and for a node that joins, where and with what. */
export interface InitOptions {
  /** The cluster's name (a DNS label). */
  cluster_name: string;
  /** This node's name (default: the host name). */
  node_name?: string;
  /** Join the cluster whose controller is at one of these (HOST:PORT); absent: be its controller. */
  join_nodes?: string[];
  /** The join token (with join_nodes). */
  token?: string;
  /** The node's data dir (default: CONSTELLATION_DATA, or ~/.constellation). */
  data_dir?: string;
  /** A controller's API port on 127.0.0.1 (default 7070; 0: any free port) and cluster port (default 7946). */
  port?: number;
  cluster_port?: number;
  /** A controller's API over HTTPS for other machines (default 7443; 0: any free port). */
  api_port?: number;
  /** This node's gossip UDP port (default 7947; 0: any free port). */
  gossip_port?: number;
  /** This node's labels. */
  labels?: Record<string, string>;
  /** Without root: limits not enforced (a developer's machine). */
  dev?: boolean;
}

/** The node `init` connected to or started. */
export interface InitResult {
  cluster: string;
  node: string;
  role: "controller" | "agent";
  /** The controller's API, for a controller (a joined node has none of its own yet). */
  url?: string;
  /** Where nodes join (a controller), or this node's controller (a joined node). */
  address: string;
  /** A controller's API over HTTPS, and its CA's SHA-256 fingerprint: what other machines connect to. */
  httpsUrl?: string;
  caFingerprint?: string;
  pid: number;
  /** Whether it was running already. */
  already: boolean;
}

/** A join token just made: shown this once, with where nodes join (HOST:PORT). */
export interface NewJoinToken {
  token: string;
  id: string;
  expiresAt: number;
  address: string;
}

/** A join token as listed (never the token itself). */
/** The cluster's gossip keyring as shown: its version and keys by id (the one in use `primary`). */
export interface GossipKeys {
  version: number;
  keys: Array<{ id: string; primary: boolean }>;
  /** (`gossipKeys()`) The nodes gossip knows up, and the keyring version each holds (null: unknown). */
  nodes?: Array<{ node: string; version: number | null }>;
}

export interface JoinTokenInfo {
  id: string;
  role: "agent" | "controller";
  createdAt: number;
  expiresAt: number;
  revokedAt?: number;
}

/** A star as the API reports it, with its node's last CPU and memory reading while it runs. */
export type StarInfo = StarView & { usage?: { cpuPercent: number; memoryBytes: number }; events?: Event[] };

export interface ConnectOptions {
  /**
   * The API's URL, e.g. http://127.0.0.1:7070, or unix:/path/to/api.sock (default:
   * CONSTELLATION_ENDPOINT, or the data dir's: its unix socket when this user may use it).
   */
  endpoint?: string;
  /** An API token (default: CONSTELLATION_TOKEN, or the data dir's admin token). */
  token?: string;
  /** A data dir of `constellation up` (default: CONSTELLATION_DATA, or ~/.constellation). */
  dataDir?: string;
  /** For an https:// endpoint: the cluster CA's certificate (PEM) it must present. */
  ca?: string;
}

/**
 * Where the constellation is and the token to use, from options, the environment, or a data dir.
 * @example
 * const { endpoint } = resolveConnection({ dataDir: "./.constellation" });
 * console.log(`the API is at ${endpoint}`);
 */
export function resolveConnection(options: ConnectOptions = {}): { endpoint: string; token: string; ca?: string } {
  // (A variable set but empty is not set: `export CONSTELLATION_ENDPOINT=` leaves the data dir to say.)
  let endpoint = options.endpoint ?? (options.dataDir ? undefined : process.env.CONSTELLATION_ENDPOINT || undefined);
  let token = options.token ?? (options.dataDir ? undefined : process.env.CONSTELLATION_TOKEN || undefined);
  // (Inside a star on a joined node: the cluster's CA comes with the endpoint, in CONSTELLATION_CA.)
  let caPem = options.ca ?? (options.dataDir ? undefined : process.env.CONSTELLATION_CA || undefined);
  // An https endpoint given without its CA: the login's, if it is that endpoint's.
  // (An endpoint that is no URL is left to the client, which says so.)
  if (caPem === undefined && endpoint?.startsWith("https:") && URL.canParse(endpoint) && !options.dataDir) {
    const login = readLogin();
    if (login && login.endpoint === new URL(endpoint).origin) caPem = login.ca;
  }
  const ca = caPem === undefined ? {} : { ca: caPem };
  if (endpoint && token) return { endpoint, token, ...ca };
  const dir = dataDirOf(options.dataDir);
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), "utf8").trim() : undefined);
  if (endpoint === undefined) {
    endpoint = read("endpoint");
    // On the node itself, the operator's unix socket (root's), which no flood of connections to
    // the TCP port can take (docs/security.md).
    const socket = join(dir, "api.sock");
    try {
      accessSync(socket, constants.R_OK | constants.W_OK);
      if (endpoint && statSync(socket).isSocket()) endpoint = `unix:${socket}`;
    } catch {
      // not there, or not this user's: the TCP endpoint
    }
  }
  try {
    token ??= read("admin.token");
  } catch {
    // not readable by this user: the error below says what to do
  }
  if (!endpoint && options.dataDir === undefined && !process.env.CONSTELLATION_DATA) {
    // None runs from this machine's data dir: the one this user logged in to, if any.
    const login = readLogin();
    if (login) return { endpoint: login.endpoint, token: options.token ?? login.token, ca: options.ca ?? login.ca };
  }
  if (!endpoint) {
    throw new ApiUnavailableError(`no constellation found in ${dir}: start one with \`constellation up --data ${dir}\`, log in to one on another machine (\`constellation login https://HOST:7443 --ca-fingerprint F --token T\`), point CONSTELLATION_DATA (or --data) at the data dir of one that runs, or set CONSTELLATION_ENDPOINT and CONSTELLATION_TOKEN`);
  }
  if (!token) throw new ApiUnavailableError(`no token: set CONSTELLATION_TOKEN, or run as a user who can read ${join(dir, "admin.token")}`);
  return { endpoint, token };
}

/**
 * Connects to a constellation.
 * @example
 * const c = connect({ dataDir: "./.constellation" });
 * console.log((await c.status()).stars.total);
 */
export function connect(options: ConnectOptions = {}): Constellation {
  const { endpoint, token, ca } = resolveConnection(options);
  return new Constellation(httpTransport(endpoint, token, ca === undefined ? {} : { ca }));
}

const q = (params: Record<string, string | number | boolean | undefined>) => {
  const s = Object.entries(params)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`)
    .join("&");
  return s ? `?${s}` : "";
};

export class Constellation {
  constructor(private readonly http: Transport) {}

  /**
   * Creates a star (and starts it, unless `start: false`). Relative script paths are resolved
   * against the current directory.
   * @example
   * const star = await c.create({ name: "hello", command: ["echo", "hi"] });
   */
  async create(spec: StarSpecInput, options: { start?: boolean; package?: boolean } = {}): Promise<Star> {
    let full = spec.script ? { ...spec, script: resolve(spec.script) } : spec;
    // On a cluster (or when asked) the script travels as code: bundled here, fetched by its node.
    if (full.script !== undefined && full.artifact === undefined && (options.package ?? (await this.isCluster()))) full = await packaged(this.http, full);
    const body = { spec: full, ...(options.start === undefined ? {} : { start: options.start }) };
    const view = await this.http.request<StarInfo>("POST", "/v1/stars", body);
    return new Star(this.http, view.name);
  }

  /**
   * Deploys a group of stars from one template (the seed's form: the deployment's fields beside
   * the stars'): a new deployment, a new revision of one (rolled out), a new count, or nothing if
   * nothing changed. A relative script path is the caller's (resolved here). Returns at once;
   * `wait()` on the result follows the rollout.
   * @example
   * const d = await c.deploy("user-service", { instances: { min: 2, max: 20 }, resources: { cpu_cores: 2, ram_gb: 4 }, script: "services/user.ts" });
   * await d.wait(); // until its revision is rolled out (throws if it failed)
   */
  async deploy(name: string, spec: Omit<DeploySpecInput, "name">, options: { dryRun?: boolean } = {}): Promise<Deployment> {
    const full = { ...spec, name, ...(spec.script !== undefined ? { script: resolve(spec.script) } : {}) };
    const collect = (globalThis as Record<symbol, unknown>)[APPLY] as ((spec: unknown) => void) | undefined;
    if (collect) {
      // Run by `constellation apply`: collected, checked and deployed together once the file has run.
      collect(full);
      return new Deployment(this.http, name, 0);
    }
    // Its script travels as code, not as a path: bundled here, stored in the cluster by its hash
    // (a rollback runs the very code of its revision; the same code again changes nothing).
    const out = await this.http.request<{ deployment: DeploymentInfo; changed: boolean; revision: number }>("POST", "/v1/deployments", { spec: await packaged(this.http, full), ...(options.dryRun ? { dry_run: true } : {}) });
    return new Deployment(this.http, name, out.revision, out.changed);
  }

  /**
   * Every deployment this token may see, with what its stars are doing.
   * @example
   * for (const d of await c.deployments()) console.log(d.name, d.status.available, "/", d.count);
   */
  async deployments(): Promise<DeploymentInfo[]> {
    return (await this.http.request<{ deployments: DeploymentInfo[] }>("GET", "/v1/deployments")).deployments;
  }

  /**
   * A handle on an existing deployment (no request is made).
   * @example
   * await c.deployment("web").scale(5);
   */
  deployment(name: string): Deployment {
    return new Deployment(this.http, name, 0);
  }

  private cluster: Promise<boolean> | undefined;

  /** Whether this constellation is a cluster (its status names controllers): asked once. */
  private isCluster(): Promise<boolean> {
    this.cluster ??= this.http.request<{ controllers?: unknown[] }>("GET", "/v1/status").then(
      (s) => Array.isArray(s.controllers),
      () => false,
    );
    return this.cluster;
  }

  /**
   * A handle on an existing star (no request is made).
   * @example
   * await c.star("hello").stop();
   */
  star(name: string): Star {
    return new Star(this.http, name);
  }

  /**
   * Every star with its state (`fields`: only these of each, to make a big list cheaper).
   * @example
   * for (const s of await c.list()) console.log(s.name, s.status?.state);
   * const light = await c.list({ fields: ["status", "node"] });
   */
  async list(options: { fields?: Array<keyof StarInfo> } = {}): Promise<StarInfo[]> {
    // The API answers a page at a time; this reads them all.
    const out: StarInfo[] = [];
    for (let after: string | undefined; ; ) {
      const page = await this.http.request<{ stars: StarInfo[]; next?: string }>(
        "GET",
        `/v1/stars${q({ after, fields: options.fields?.join(",") })}`,
      );
      out.push(...page.stars);
      if (page.next === undefined) return out;
      after = page.next;
    }
  }

  /**
   * The constellation at a glance: nodes, capacity, stars by state.
   * @example
   * const { stars } = await c.status();
   */
  async status(): Promise<ClusterSummary> {
    return this.http.request("GET", "/v1/status");
  }

  /**
   * Recent events (every decision and state change), oldest first. With `star`: those of the star
   * of that name now (`all`: of every star that had the name).
   * @example
   * for (const e of await c.events({ star: "hello" })) console.log(e.kind, e.message);
   */
  async events(options: { since?: number; limit?: number; star?: string; all?: boolean } = {}): Promise<Event[]> {
    return (await this.http.request<{ events: Event[] }>("GET", `/v1/events${q(options)}`)).events;
  }

  /**
   * Events as they happen (after the most recent ones), until `signal` aborts.
   * @example
   * for await (const e of c.followEvents({ signal })) console.log(e.message);
   */
  followEvents(options: { since?: number; star?: string; all?: boolean; signal?: AbortSignal } = {}): AsyncIterable<Event> {
    const { signal, ...rest } = options;
    return this.http.stream<Event>(`/v1/events${q({ ...rest, follow: 1 })}`, signal);
  }

  /**
   * Makes an API token (needs an admin token): `read` may only look (and sees env values
   * hidden), `admin` may do everything. `ttlSeconds`: it expires that long from now. The token is
   * shown this once; the constellation keeps only its hash.
   * @example
   * const { token } = await c.createToken("read", "dashboard", { ttlSeconds: 3600 });
   * const team = await c.createToken("admin", "team-a", { namespace: "team-a" }); // sees and touches team-a only
   */
  async createToken(scope: "admin" | "read", name = "token", options: { ttlSeconds?: number; namespace?: string } = {}): Promise<NewToken> {
    return this.http.request("POST", "/v1/tokens", { scope, name, ...(options.ttlSeconds === undefined ? {} : { ttl_s: options.ttlSeconds }), ...(options.namespace === undefined ? {} : { namespace: options.namespace }) });
  }

  /**
   * The namespaces this token may see (a namespace's token: its own), each with what its stars
   * hold and its quota.
   * @example
   * for (const n of await c.namespaces()) console.log(n.name, n.used.ram_mb, n.quota?.ram_mb);
   */
  async namespaces(): Promise<NamespaceView[]> {
    return (await this.http.request<{ namespaces: NamespaceView[] }>("GET", "/v1/namespaces")).namespaces;
  }

  /**
   * Caps what a namespace's stars may hold (needs an admin token of the whole cluster): cpu,
   * memory and disk of those that should run, and how many stars it has. Going over is a clear
   * error at create and start.
   * @example
   * await c.setQuota("team-a", { cpu_cores: 8, ram_mb: 16384, stars: 50 });
   */
  async setQuota(namespace: string, quota: QuotaRecord): Promise<NamespaceView> {
    return this.http.request("PUT", `/v1/namespaces/${encodeURIComponent(namespace)}/quota`, quota);
  }

  /**
   * Lifts a namespace's quota (needs an admin token of the whole cluster).
   * @example
   * await c.removeQuota("team-a");
   */
  async removeQuota(namespace: string): Promise<void> {
    await this.http.request("DELETE", `/v1/namespaces/${encodeURIComponent(namespace)}/quota`);
  }

  /**
   * Every API token, by id (a prefix of its hash; never the token), with scope, name, the star a
   * star's token belongs to, and when it was made and expires. Needs an admin token.
   * @example
   * for (const t of await c.tokens()) console.log(t.id, t.scope, t.name);
   */
  async tokens(): Promise<TokenInfo[]> {
    return (await this.http.request<{ tokens: TokenInfo[] }>("GET", "/v1/tokens")).tokens;
  }

  /**
   * Revokes a token by its id (or a unique prefix of it, 4 hex digits at least): it stops working
   * at once. Needs an admin token.
   * @example
   * await c.revokeToken("3f9a1c0b7d2e");
   */
  async revokeToken(id: string): Promise<void> {
    await this.http.request("DELETE", `/v1/tokens/${encodeURIComponent(id)}`);
  }

  /**
   * Makes a token with which one machine may join the cluster (needs an admin token), valid
   * `ttlSeconds` (default a day). Shown this once; the cluster keeps only its secret's hash.
   * @example
   * const { token, address } = await c.createJoinToken({ ttlSeconds: 3600 });
   * console.log(`constellation join ${address} --token ${token}`);
   */
  async createJoinToken(options: { ttlSeconds?: number } = {}): Promise<NewJoinToken> {
    return this.http.request("POST", "/v1/join-tokens", options.ttlSeconds === undefined ? {} : { ttl_s: options.ttlSeconds });
  }

  /**
   * Every join token, with when it expires and whether it was revoked (never the token).
   * @example
   * for (const t of await c.joinTokens()) console.log(t.id, new Date(t.expiresAt));
   */
  async joinTokens(): Promise<JoinTokenInfo[]> {
    return (await this.http.request<{ tokens: JoinTokenInfo[] }>("GET", "/v1/join-tokens")).tokens;
  }

  /**
   * Revokes a join token by its id: no machine may join with it from now on.
   * @example
   * await c.revokeJoinToken("3f9a1c0b7d2e");
   */
  async revokeJoinToken(id: string): Promise<void> {
    await this.http.request("DELETE", `/v1/join-tokens/${encodeURIComponent(id)}`);
  }

  /**
   * This machine's node of cluster `cluster_name`: connects to it if it runs, else starts it,
   * detached, as `constellation init` does (the controller, or with `join_nodes` and `token` a
   * node that joins one). Called again, it finds the same node. A data dir that belongs to
   * another cluster is an error that says so.
   * @example
   * await constellation.init({ cluster_name: "production", node_name: "node-1" });
   * await constellation.init({ cluster_name: "production", join_nodes: ["10.0.0.10:7946"], token });
   */
  async init(options: InitOptions): Promise<InitResult> {
    return initNode(options);
  }

  /**
   * Cordons a node (nothing new is placed there); `drain`: its stars move to other nodes too.
   * @example
   * await c.cordon("node-2", { drain: true });
   */
  async cordon(node: string, options: { drain?: boolean } = {}): Promise<void> {
    await this.http.request("POST", `/v1/nodes/${encodeURIComponent(node)}/${options.drain ? "drain" : "cordon"}`);
  }

  /**
   * Revokes a node: its certificates are refused from now on (it cannot connect again) and it
   * is dead at once; its stars move as for any dead node.
   * @example
   * await c.revokeNode("node-2");
   */
  async revokeNode(node: string): Promise<{ certificates: number; gossipKeyReplaced?: boolean }> {
    return this.http.request("POST", `/v1/nodes/${encodeURIComponent(node)}/revoke`);
  }

  /**
   * Lets stars be placed on a cordoned or drained node again.
   * @example
   * await c.uncordon("node-2");
   */
  async uncordon(node: string): Promise<void> {
    await this.http.request("POST", `/v1/nodes/${encodeURIComponent(node)}/uncordon`);
  }

  /**
   * The cluster's gossip keys, by id (a key itself is shown only when it is installed).
   * @example
   * const { keys } = await c.gossipKeys(); // [{ id: "1a2b3c4d", primary: true }]
   */
  async gossipKeys(): Promise<GossipKeys> {
    return this.http.request("GET", "/v1/gossip/keys");
  }

  /**
   * Installs a gossip key on every node (a new random one when none is given; then `key` in the
   * answer is it, shown this once). Step one of a rotation: install, use, remove the old one.
   * @example
   * const { id } = await c.installGossipKey(); await c.useGossipKey(id);
   */
  async installGossipKey(key?: string): Promise<GossipKeys & { id: string; key?: string }> {
    return this.http.request("POST", "/v1/gossip/keys", key === undefined ? {} : { key });
  }

  /**
   * Seals gossip with an installed key (by its id or itself) from now on. Refused while some node
   * does not hold the latest keyring (it would drop what is sealed with the key), unless `force`.
   * @example
   * await c.useGossipKey("1a2b3c4d");
   */
  async useGossipKey(keyOrId: string, options: { force?: boolean } = {}): Promise<GossipKeys> {
    return this.http.request("POST", `/v1/gossip/keys/${encodeURIComponent(keyOrId)}/use`, options.force ? { force: true } : {});
  }

  /**
   * Removes a gossip key no longer in use: packets sealed with it are dropped from then on.
   * @example
   * await c.removeGossipKey("1a2b3c4d");
   */
  async removeGossipKey(keyOrId: string): Promise<GossipKeys> {
    return this.http.request("DELETE", `/v1/gossip/keys/${encodeURIComponent(keyOrId)}`);
  }

  /**
   * Closes idle connections (lets the process exit).
   * @example
   * const c = connect();
   * try { console.log(await c.list()); } finally { c.close(); }
   */
  close(): void {
    this.http.close();
  }
}

/** A star of the constellation, by name. */
export class Star {
  constructor(
    private readonly http: Transport,
    readonly name: string,
  ) {}

  private get path(): string {
    return `/v1/stars/${encodeURIComponent(this.name)}`;
  }

  /**
   * Its spec, state, limits, node and recent events.
   * @example
   * const { status } = await star.info(); console.log(status?.state);
   */
  async info(): Promise<StarInfo> {
    return this.http.request("GET", this.path);
  }

  /**
   * Its state as its node reports it (undefined before its node has taken it).
   * @example
   * console.log((await star.status())?.state);
   */
  async status(): Promise<StarStatus | undefined> {
    return (await this.info()).status;
  }

  /**
   * Asks for it to run (a star that ended starts again); returns at once.
   * @example
   * await star.start(); await star.wait({ for: "running" });
   */
  async start(): Promise<StarInfo> {
    return this.http.request("POST", `${this.path}/start`);
  }

  /**
   * Asks for it to stop (SIGTERM, then SIGKILL after its grace period) and waits until it has.
   * @example
   * await star.stop();
   */
  async stop(options: { timeoutMs?: number } = {}): Promise<StarInfo> {
    await this.http.request("POST", `${this.path}/stop`);
    return this.wait({ for: "ended", ...options });
  }

  /**
   * Waits until it has ended for good (default), or until it runs (`for: "running"`; also
   * returns if it failed to start instead).
   * @example
   * const done = await star.wait(); console.log(done.status?.exitCode);
   */
  async wait(options: { for?: "running" | "ended"; timeoutMs?: number } = {}): Promise<StarInfo> {
    // Asked for in parts of at most WAIT_PART_MS (the most a star's token may wait at once).
    const deadline = Date.now() + (options.timeoutMs ?? 600_000);
    for (;;) {
      const part = Math.max(0, Math.min(WAIT_PART_MS, deadline - Date.now()));
      try {
        return await this.http.request("GET", `${this.path}/wait${q({ for: options.for ?? "ended", timeout_ms: part })}`);
      } catch (err) {
        if ((err as { code?: string }).code !== "TIMEOUT" || Date.now() >= deadline - 1) throw err;
      }
    }
  }

  /**
   * Its output, line by line, each with the time the node read it (the last `tail` lines of each
   * stream; only lines since `since`; `follow` until it ends).
   * @example
   * for await (const l of star.logs({ tail: 10 })) console.log(l.time, l.line);
   * for await (const l of star.logs({ since: Date.now() - 60_000 })) console.log(l.line); // the last minute
   */
  logs(options: { tail?: number; since?: number | Date; follow?: boolean; signal?: AbortSignal } = {}): AsyncIterable<LogLine> {
    const since = options.since instanceof Date ? options.since.getTime() : options.since;
    return this.http.stream<LogLine>(`${this.path}/logs${q({ tail: options.tail, since, follow: options.follow ? 1 : undefined })}`, options.signal);
  }

  /**
   * Removes it (its node stops it and deletes its files); a running star needs `force`.
   * @example
   * await star.remove({ force: true });
   */
  async remove(options: { force?: boolean } = {}): Promise<void> {
    await this.http.request("DELETE", `${this.path}${q({ force: options.force ? 1 : undefined })}`);
  }
}

/** Where `constellation apply` collects the deployments a file makes (any copy of the SDK finds it). */
export const APPLY = Symbol.for("constellation.apply");

/** A deployment: its count, revisions and rollout. */
export class Deployment {
  constructor(
    private readonly http: Transport,
    readonly name: string,
    /** The revision the deploy that made this handle wrote (0: not known). */
    readonly revision: number,
    /** Whether that deploy changed anything. */
    readonly changed = false,
  ) {}

  private get path(): string {
    return `/v1/deployments/${encodeURIComponent(this.name)}`;
  }

  /**
   * Its record, revisions, rollout, what its stars are doing and its recent events.
   * @example
   * const { rollout, status } = await d.info(); console.log(rollout.state, status.available);
   */
  async info(): Promise<DeploymentInfo & { events: Event[] }> {
    return this.http.request("GET", this.path);
  }

  /**
   * Sets how many stars it runs (within its instances' min and max).
   * @example
   * await c.deployment("web").scale(5);
   */
  async scale(instances: number): Promise<DeploymentInfo> {
    return this.http.request("POST", `${this.path}/scale`, { instances });
  }

  /**
   * Goes back to an earlier revision's template (default: the one before), rolled out as a new revision.
   * @example
   * await c.deployment("web").undo();
   */
  async undo(revision?: number): Promise<DeploymentInfo> {
    return this.http.request("POST", `${this.path}/undo`, revision === undefined ? {} : { revision });
  }

  /**
   * Waits until its rollout completes (of `revision`, default the one this handle's deploy
   * wrote, else the current); throws if it failed or was rolled back.
   * @example
   * await (await c.deploy("web", { instances: 3, script: "web.ts" })).wait({ timeoutMs: 60_000 });
   */
  async wait(options: { revision?: number; timeoutMs?: number; onProgress?: (d: DeploymentInfo) => void } = {}): Promise<DeploymentInfo> {
    const deadline = Date.now() + (options.timeoutMs ?? 600_000);
    let target = options.revision ?? (this.revision || undefined);
    for (;;) {
      const d = await this.info();
      target ??= d.revision;
      options.onProgress?.(d);
      const outcome = rolloutOutcome(d, target);
      if (outcome === "complete") return d;
      if (outcome !== undefined) throw new InvalidArgumentError("revision", outcome);
      if (Date.now() >= deadline) throw new InvalidArgumentError("timeout", `deployment ${this.name} revision ${target} is still rolling out: ${d.rollout.message}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /**
   * Removes it and its stars.
   * @example
   * await c.deployment("web").remove();
   */
  async remove(): Promise<void> {
    await this.http.request("DELETE", this.path);
  }
}

/**
 * How revision `target`'s rollout ended: "complete", why it failed (a message), or undefined while it goes on.
 * @example
 * const d = await c.deployment("web").info(); console.log(rolloutOutcome(d, d.revision) ?? "rolling out");
 */
export function rolloutOutcome(d: DeploymentInfo, target: number): string | undefined {
  if (d.revision === target) {
    if (d.rollout.revision !== target) return undefined;
    // Complete, and as many stars available as it should have (a scale, a replacement: waited for too).
    if (d.rollout.state === "complete") return d.status.available >= d.count ? "complete" : undefined;
    if (d.rollout.state === "failed") return `deployment ${d.name} revision ${target} failed: ${d.rollout.message}`;
    return undefined;
  }
  const later = d.history.find((r) => r.revision > target);
  if (later?.cause.startsWith("rollback")) return `deployment ${d.name} revision ${target} failed and was rolled back (${later.cause}; now revision ${d.revision})`;
  return `deployment ${d.name} was changed again (now revision ${d.revision}) before revision ${target} completed`;
}

/** Runs `constellation init` (the CLI beside this SDK) and reads what runs from the data dir. */
async function initNode(o: InitOptions): Promise<InitResult> {
  const dataDir = dataDirOf(o.data_dir);
  const running = () => readReady(dataDir);
  const before = running();
  if (before && before.cluster !== o.cluster_name) {
    throw new InvalidArgumentError("cluster_name", `${dataDir} runs node ${before.node} of cluster ${before.cluster}, not ${o.cluster_name}: give another data_dir`);
  }
  if (before && o.node_name !== undefined && before.node !== o.node_name) {
    throw new InvalidArgumentError("node_name", `${dataDir} runs node ${before.node} of cluster ${before.cluster}, not ${o.node_name}: give another data_dir`);
  }
  if (before) return { ...before, already: true };
  // A node that joins tries the listed controllers in turn, until one admits it.
  const errors: string[] = [];
  for (const joinAt of o.join_nodes && o.join_nodes.length > 0 ? o.join_nodes : [undefined]) {
    const args = [...DAEMON_NODE_FLAGS, fileURLToPath(new URL("../cli/constellation.mjs", import.meta.url)), "--data", dataDir];
    if (o.token !== undefined) args.push("--token", o.token);
    args.push("init", "--cluster", o.cluster_name);
    if (o.node_name !== undefined) args.push("--node", o.node_name);
    if (joinAt !== undefined) args.push("--join", joinAt);
    if (o.port !== undefined) args.push("--port", String(o.port));
    if (o.cluster_port !== undefined) args.push("--cluster-port", String(o.cluster_port));
    if (o.api_port !== undefined) args.push("--api-port", String(o.api_port));
    if (o.gossip_port !== undefined) args.push("--gossip-port", String(o.gossip_port));
    for (const [k, v] of Object.entries(o.labels ?? {})) args.push("--label", `${k}=${v}`);
    if (o.dev) args.push("--dev");
    const { code, err } = await new Promise<{ code: number | null; err: string }>((done) => {
      const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...DAEMON_ENV } });
      let err = "";
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      child.once("exit", (code) => done({ code, err }));
    });
    const now = running();
    if (code === 0 && now) return { ...now, already: false };
    errors.push(`${joinAt ?? "init"}: ${err.replace(/^error: /, "").trim() || `constellation init exited ${code}`}`);
  }
  throw new InvalidArgumentError("init", errors.join("; "));
}
