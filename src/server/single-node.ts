/**
 * One process that is a whole single-node constellation: the embedded store, the controller and
 * its HTTP API, and this node's agent with its runtimes (design.md §4: one binary, roles by flag).
 *
 * The data dir holds everything, so a restart keeps all state:
 *   store.db        the store (SQLite)            admin.token  the admin token (0600)
 *   node.json       what the node owns on the host: its id (cgroups constellation/<id>/<runtime>) and uid range
 *   runtime/        process runtime (stars)       endpoint     the API's URL, for the CLI
 *                                                 api.sock     the API for root (0600), no connection limit
 *   isolate/        isolate runtime
 *   cache/          bundled scripts (isolates)
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, hostname, networkInterfaces, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { Agent } from "../agent/agent.js";
import { AgentService } from "../controller/agent-service.js";
import { InvalidArgumentError, RuntimeUnavailableError, StoreLostError } from "../model/errors.js";
import { lookupToken, newToken, saveToken, tokenKey } from "../controller/tokens.js";
import { buildApi } from "../api/server.js";
import { Controller, type TreeQuotas } from "../controller/controller.js";
import { type CertRecord, KEYS, type NodeRecord, PREFIX, nodeKey } from "../model/records.js";
import { type ClusterFiles, checkClusterName, readClusterFiles, replaceNodeCert, writeClusterFiles } from "../cluster/files.js";
import { admit, createJoinToken, renew, revokeJoinToken } from "../cluster/join.js";
import { ClusterNodes } from "../cluster/nodes.js";
import { type ClusterServer, serveCluster } from "../cluster/server.js";
import { openFileLimit } from "../api/router.js";
import { VERSION } from "../model/version.js";
import { fingerprint, identityOf, renewAt } from "../cluster/tls/identity.js";
import { createCa, createCsr, signCsr } from "../cluster/tls/signer.js";
import { IsolateRuntime } from "../runtime/isolate/isolate-runtime.js";
import { ProcessRuntime } from "../runtime/process/process-runtime.js";
import { nodeCgroupsBusy } from "../runtime/cgroup/detect.js";
import { claimNode } from "../runtime/node-claim.js";
import { adoptStars } from "./adopt.js";
import { DEFAULT_NODE_LIMITS, type NodeCapacity, type NodeLimits, type StarSpecInput } from "../model/spec.js";
import type { Runtime } from "../runtime/types.js";
import { follow } from "../store/follow.js";
import { openStore } from "../store/open.js";
import type { Store } from "../store/types.js";
import { keepTrimmingMalloc } from "./memory.js";
import { type NodeGossip, nodeMeta, startNodeGossip } from "./gossip.js";
import type { GossipConfig } from "../cluster/gossip/config.js";
import { ensureGossipKeyring, followGossipKeyring } from "../controller/gossip-keys.js";
import { controllersOf, leadLoops, listControllers, registerController, sharedCa, type StoredCa } from "./ha.js";
import { Election } from "../store/election.js";
import { type EtcdStoreConfig, readEtcdTls } from "../model/store-url.js";

/** How often a node looks whether its certificate is due for renewal. */
export const RENEW_CHECK_MS = 1000;

/** The API's unix socket in the data dir (root's). */
export const API_SOCKET = "api.sock";

export interface SingleNodeOptions {
  dataDir: string;
  /** API port on 127.0.0.1 (0: any free port). */
  port?: number;
  host?: string;
  /** Run where limits cannot be enforced (not root); stars are marked "limits not enforced". */
  devMode?: boolean;
  /** This node's name (default: the host name, as a DNS label). */
  nodeName?: string;
  /** This node's labels (`init --label k=v`). */
  labels?: Record<string, string>;
  /** Stars' defaults and ceilings on this node, and memory overcommit (DEFAULT_NODE_LIMITS for the rest). */
  limits?: Partial<NodeLimits>;
  /** What a tree of stars may hold (TREE_QUOTAS for the rest). */
  quotas?: Partial<TreeQuotas>;
  /** Start even if the store is empty while stars' files are on this node: those stars are ended and removed. */
  reset?: boolean;
  /** Start even if the store is empty while stars' files are on this node: their records are rebuilt from them (adopt.ts). */
  adopt?: boolean;
  /**
   * The store: etcd (HA: `init --store etcd://… --server`, server/ha.ts) instead of the embedded
   * SQLite file. Kept in the data dir (store.json): later starts use it without being told.
   */
  store?: EtcdStoreConfig;
  /** Lease TTL (s) of the control loops' election on etcd (default LEADER_TTL_S). */
  leaderTtlSeconds?: number;
  /**
   * Be the controller of a cluster (issue 11): its CA and this node's certificate are made on
   * the first start (cluster/ in the data dir), and other nodes join and connect on the
   * cluster port. A data dir that is a cluster's controller serves it whether or not this is given.
   */
  cluster?: ClusterServeOptions;
}

export interface ClusterServeOptions {
  /** The cluster's name (a DNS label); must be the data dir's, if it has one. */
  name?: string;
  /** The cluster port (default 7946; 0: any free port). */
  port?: number;
  /** Where it listens (default all addresses). */
  host?: string;
  /** Addresses nodes reach this controller at, put in its certificate (default: this host's). */
  addresses?: string[];
  /** Where the cluster port's log lines go (refusals, say; default stderr). */
  log?: (line: string) => void;
  /** A node is dead this long after its last heartbeat (default 10 s). */
  nodeTtlSeconds?: number;
  /** Node certificates are valid this long (default 90 days); each is renewed at two thirds of its life. */
  certValidDays?: number;
  /** The gossip's UDP port (default 7947; 0: the last start's if free, else any free port). */
  gossipPort?: number;
  /** Gossip timings (tests; default DEFAULT_GOSSIP). */
  gossipConfig?: Partial<GossipConfig>;
  /**
   * The API over HTTPS, on the cluster's host, for the CLI and SDK of other machines
   * (`constellation login`; default 7443; 0: any free port). Its certificate is this node's.
   */
  apiPort?: number;
}

/** The stars this node has files of (process and isolate runtimes), by directory. */
function starsOnDisk(dataDir: string): string[] {
  const out: string[] = [];
  for (const dir of [join(dataDir, "runtime", "stars"), join(dataDir, "isolate", "stars")]) {
    try {
      out.push(...readdirSync(dir));
    } catch {
      // none
    }
  }
  return out;
}

export interface SingleNode {
  url: string;
  /** When this node is a cluster's controller. */
  cluster?: {
    name: string;
    /** The cluster port. */
    port: number;
    /** Where other machines join it (HOST:PORT). */
    address: string;
    /** This node's name. */
    node: string;
    /** A new join token (shown once), valid `ttlSeconds` (default a day). */
    joinToken(ttlSeconds?: number): Promise<{ token: string; id: string; expiresAt: number }>;
    /** Revokes a join token by its id (false: no such token). */
    revokeJoinToken(id: string): Promise<boolean>;
    /** Nodes connected now, by name. */
    connected(): string[];
    /** The API over HTTPS, for other machines (`constellation login`). */
    httpsUrl: string;
    /** The SHA-256 fingerprint of the cluster's CA (hex): what `login` pins. */
    caFingerprint: string;
  };
  /** The admin token (also in <dataDir>/admin.token). */
  token: string;
  dataDir: string;
  close(): Promise<void>;
}

export function nodeNameOf(name: string): string {
  const label = name.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63);
  return label || "node";
}

/** DEFAULT_NODE_LIMITS with `given` over them; a default over its ceiling is refused. */
export function nodeLimitsOf(given: Partial<NodeLimits> = {}): NodeLimits {
  const limits = { ...DEFAULT_NODE_LIMITS, ...given };
  for (const [d, max] of [["defaultPids", "maxPids"], ["defaultNofile", "maxNofile"]] as const) {
    if (limits[d] > limits[max]) throw new InvalidArgumentError(d, `${d} (${limits[d]}) is over ${max} (${limits[max]}): a star that asks for nothing would be refused; lower ${d} or raise ${max}`);
  }
  return limits;
}

/**
 * The node's runtimes (process; isolate where it can run), named on the host by this node
 * (node.json: its cgroups and uids, issue 9); each closed by `closers`.
 */
export async function makeRuntimes(dataDir: string, devMode: boolean, capacity: Required<Omit<NodeCapacity, "diskBytes">>, closers: Array<() => Promise<void>>): Promise<Partial<Record<"process" | "isolate", Runtime>>> {
  const root = process.getuid?.() === 0;
  const claim = claimNode(dataDir, root ? { busy: (id) => nodeCgroupsBusy(id) } : { registry: null });
  // Stars see none of the data dir (the store, the admin token, other stars' files).
  const process_ = await ProcessRuntime.create({ dataDir: join(dataDir, "runtime"), devMode, hide: [dataDir], capacity, claim });
  const runtimes: Partial<Record<"process" | "isolate", Runtime>> = { process: process_ };
  closers.push(() => process_.close());
  if (!devMode) {
    const isolate = await IsolateRuntime.create({ dataDir: join(dataDir, "isolate"), capacity, claim }).catch(() => undefined);
    if (isolate) {
      runtimes.isolate = isolate;
      closers.push(() => isolate.close());
    }
  }
  return runtimes;
}

export async function startSingleNode(options: SingleNodeOptions): Promise<SingleNode> {
  const dataDir = resolve(options.dataDir);
  // 0711: stars (other users) pass through to their own directories but cannot list it; the
  // store (which holds stars' env) and the admin token are 0600.
  mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  chmodSync(dataDir, 0o711);
  const etcd = storeConfigOf(dataDir, options.store);
  const dbPath = join(dataDir, "store.db");
  let store: Store;
  if (etcd) {
    if (!options.cluster) throw new InvalidArgumentError("store", "an etcd store is for a cluster's controllers: give --cluster NAME (or --server)");
    store = await openStore({ backend: "etcd", endpoints: etcd.endpoints, ...(etcd.tls ? { tls: readEtcdTls(etcd.tls, options.store?.tls ? "flags" : join(dataDir, "store.json")) } : {}) });
  } else {
    closeSync(openSync(dbPath, "a", 0o600)); // SQLite gives its -wal and -shm files the db's mode
    for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
    store = await openStore({ backend: "sqlite", path: dbPath });
  }
  // Recovery from facts, never from absence: a store with nothing in it on a node that has stars'
  // files was lost or replaced, and starting on it would end every star (issue 9).
  if (options.reset === true && options.adopt === true) {
    await store.close();
    throw new InvalidArgumentError("adopt", "--adopt keeps the node's stars and --reset removes them: give one of them");
  }
  const known = starsOnDisk(dataDir);
  const lost = known.length > 0 && (await store.range({ prefix: PREFIX }, { countOnly: true })).count === 0;
  if (lost && options.reset !== true && options.adopt !== true) {
    await store.close();
    throw new StoreLostError(dbPath, known.length);
  }
  const stopTrimming = keepTrimmingMalloc();
  // A start that fails takes back what it made of a new HA controller (its name, certificate,
  // node records, files; the cluster's CA if it made it), so a second try starts clean.
  const undo: Array<() => Promise<void>> = [];
  let failed = false;
  const closers: Array<() => Promise<void>> = [
    async () => stopTrimming(),
    () => store.close(),
    async () => {
      if (failed) for (const u of undo.reverse()) await u().catch(() => undefined);
    },
  ];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    // A cluster's controller: its identity, made once (before anything else runs on it).
    const known = readClusterFiles(dataDir);
    if (known?.role === "agent") {
      throw new InvalidArgumentError("cluster", `${dataDir} is node ${known.node} of cluster ${known.name}, joined to ${known.controller}: start it with \`constellation join\` (or give another --data)`);
    }
    if (known && options.cluster?.name !== undefined && options.cluster.name !== known.name) {
      throw new InvalidArgumentError("cluster", `${dataDir} is the controller of cluster ${known.name}, not ${options.cluster.name}: give that name, or another --data`);
    }
    if (known && options.nodeName !== undefined && options.nodeName !== known.node) {
      throw new InvalidArgumentError("node", `${dataDir} is node ${known.node} of cluster ${known.name}, not ${options.nodeName}: give that name, or another --data`);
    }
    const clusterFiles = etcd
      ? await haController(dataDir, store, known, options.cluster?.name, options.nodeName ?? nodeNameOf(hostname()), options.cluster?.addresses ?? hostAddresses(), undo, options.cluster?.certValidDays)
      : (known ?? (options.cluster ? await newController(dataDir, store, checkClusterName(options.cluster.name ?? "default"), options.nodeName ?? nodeNameOf(hostname()), options.cluster.addresses ?? hostAddresses(), options.cluster.certValidDays) : undefined));
    if (etcd && !known && clusterFiles) {
      const name = clusterFiles.node;
      undo.push(async () => void (await store.delete({ key: nodeKey(name) })), async () => void (await store.delete({ key: `${KEYS.alive}${name}` })));
    }
    const hadToken = existsSync(join(dataDir, "admin.token"));
    const token = await adminToken(store, dataDir);
    if (etcd && !hadToken) {
      undo.push(async () => {
        await store.delete({ key: tokenKey(token) });
        rmSync(join(dataDir, "admin.token"), { force: true });
      });
    }
    const devMode = options.devMode === true;
    // The runtimes and the controller apply the same defaults and ceilings.
    const capacity: Required<Omit<NodeCapacity, "diskBytes">> = { cpuCores: availableParallelism(), memoryBytes: totalmem(), limits: nodeLimitsOf(options.limits) };
    const runtimes = await makeRuntimes(dataDir, devMode, capacity, closers);
    const node: NodeRecord = {
      name: clusterFiles?.node ?? options.nodeName ?? nodeNameOf(hostname()),
      ...capacity,
      runtimes: Object.keys(runtimes),
      limitsEnforced: !devMode,
      startedAt: Date.now(),
      address: advertised(options.cluster?.addresses ?? hostAddresses()).replace(/^\[|\]$/g, ""),
      version: VERSION,
      ...(options.labels && Object.keys(options.labels).length > 0 ? { labels: options.labels } : {}),
    };
    // The node checks what it would refuse at start (mounts, root, enforceable limits) at create.
    const validate = async (spec: StarSpecInput, o: { trusted: boolean }) => {
      const kind = (spec as { runtime?: "process" | "isolate" }).runtime ?? "process";
      await runtimes[kind]?.validate(spec, o);
    };
    // The store was lost and the operator said --adopt: the node's stars become its records again.
    if (lost && options.adopt === true) await adoptStars(store, node.name, Object.values(runtimes));
    const ttl = options.cluster?.nodeTtlSeconds;
    // The controller's gossip member, once it runs: the controller judges nodes by its word too.
    const gossip: { member?: NodeGossip; version?: number } = {};
    const controller = new Controller({
      store,
      validate,
      ...(options.quotas ? { quotas: options.quotas } : {}),
      ...(ttl ? { nodeTtlSeconds: ttl } : {}),
      ...(clusterFiles ? { gossip: { state: (n: string) => gossip.member?.state(n) } } : {}),
    });
    const served: { url?: string } = {}; // known once the API listens
    const agent = new Agent({ link: new AgentService(store, node.name, undefined, ttl), node, runtimes, endpoint: () => served.url, artifactsDir: join(dataDir, "artifacts") });
    // A cluster's API asks each star's own node (its logs, its usage) over that node's link.
    const nodes = clusterFiles ? new ClusterNodes({ name: node.name, link: agent }) : undefined;
    // Where nodes join (the port once the cluster port listens: it may be any free one).
    const joinAt = { host: advertised(options.cluster?.addresses ?? hostAddresses()), port: options.cluster?.port ?? 7946 };
    const joinAddress = () => `${joinAt.host}:${joinAt.port}`;
    // The cluster port, once it listens (a revoked node's connection is ended there).
    const port_: { server?: ClusterServer } = {};
    const disconnect = (n: string) => port_.server?.disconnect(n);
    // The HTTPS API's URL once it listens (told to nodes as they connect, and shown in status).
    const httpsApi: { url?: string } = {};
    // An HA cluster's controllers, and which leads (the election's leader: its value is its node).
    const election = new Election(store, "controller", { prefix: KEYS.elections });
    const listed = async () => {
      const [list, leader] = await Promise.all([listControllers(store, options.cluster?.log ?? ((l: string) => console.error(l))), election.leader()]);
      return list.map((c) => ({ ...c, leads: c.node === leader?.value }));
    };
    const api = await buildApi({
      store,
      controller,
      node: nodes ?? agent,
      ownNode: node.name,
      ...(clusterFiles
        ? {
            cluster: {
              caCert: clusterFiles.caCert,
              address: joinAddress,
              disconnect,
              node: node.name,
              api: () => httpsApi.url,
              gossipMembers: () =>
                (gossip.member?.members() ?? []).filter((m) => m.state === "alive" || m.state === "suspect").map((m) => ({ node: m.name, ...(typeof m.meta.keys === "number" ? { keys: m.meta.keys } : {}) })),
              ...(etcd ? { controllers: listed } : {}),
            },
          }
        : {}),
    });
    closers.push(() => api.close());
    // Listen first: stars started from here on get the API's URL (and a token) in their env.
    const port = options.port ?? 7070;
    let address: string;
    try {
      // Port 0 (any free port): the one of the last start if it is free, so the stars that run
      // on (their CONSTELLATION_ENDPOINT) still reach the API after a restart.
      const last = port === 0 ? lastPort(dataDir) : undefined;
      const host = options.host ?? "127.0.0.1";
      address = last === undefined ? await api.listen({ port, host }) : await api.listen({ port: last, host }).catch(() => api.listen({ port, host }));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE") throw new RuntimeUnavailableError(`port ${port} is in use (another constellation up?): stop it, or pass --port N (0: any free port)`);
      if (code === "EACCES") throw new RuntimeUnavailableError(`no permission to listen on port ${port}: use a port above 1023`);
      throw err;
    }
    const url = address.replace("[::1]", "127.0.0.1");
    served.url = url;
    // The operator's own way in (the CLI and SDK use it from the data dir when they may).
    const socket = join(dataDir, API_SOCKET);
    if (Buffer.byteLength(socket) < 100) await api.listenUnix(socket);
    else process.emitWarning(`constellation: ${socket} is too long for a unix socket; the CLI will use ${url}`);
    await agent.start();
    closers.push(() => agent.stop());
    // On etcd (HA), the loops run on the elected controller only; alone, here.
    const loopsLog = options.cluster?.log ?? ((l: string) => console.error(l));
    if (etcd) {
      const leader = leadLoops(store, node.name, controller, loopsLog, options.leaderTtlSeconds);
      closers.push(() => leader.close());
    } else {
      controller.start();
      closers.push(() => controller.stop());
    }
    let cluster: SingleNode["cluster"];
    /** The controllers running now (cluster addresses), told to nodes in their heartbeats' answers. */
    let controllers: string[] = [];
    if (clusterFiles) {
      const files = clusterFiles;
      const ca = { cert: files.caCert, key: files.caKey! };
      const serveOptions = options.cluster ?? {};
      let server: ClusterServer;
      const wanted = serveOptions.port ?? 7946;
      // Port 0 (any free port): the one of the last start if it is free, so its nodes (which
      // keep the controller's address) find it again after a restart.
      const last = wanted === 0 ? lastPortIn(dataDir, "cluster.port") : undefined;
      const serve = (port: number) =>
        serveCluster({
          store,
          cluster: files.name,
          caCert: files.caCert,
          cert: files.cert,
          key: files.key,
          port,
          ...(serveOptions.host ? { host: serveOptions.host } : {}),
          join: (body) => admit(store, ca, files.name, body, serveOptions.certValidDays),
          renew: (node, serial, body) => renew(store, ca, files.name, node, serial, body, serveOptions.certValidDays),
          nodes: nodes!,
          api: () => httpsApi.url,
          // A quarter of the open-file limit (the API takes half, split between its listeners).
          maxConnections: Math.max(64, Math.min(8192, Math.floor(openFileLimit() / 4))),
          ...(ttl ? { nodeTtlSeconds: ttl } : {}),
          ...(serveOptions.log ? { log: serveOptions.log } : {}),
          gossip: { address: () => gossip.member?.address, version: () => gossip.version, keyring: () => ensureGossipKeyring(store), controllers: () => controllers },
        });
      try {
        server =
          last === undefined
            ? await serve(wanted)
            : await serve(last).catch(async (err: NodeJS.ErrnoException) => {
                const moved = await serve(wanted);
                // Its nodes know the old port: they cannot reach it until they are told (joined again).
                (serveOptions.log ?? console.error)(`cluster: port ${last} of the last start is taken (${err.code ?? err.message}); listening on ${moved.port} instead: nodes that joined before cannot reach this controller until they join again, or free port ${last} and restart`);
                return moved;
              });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EADDRINUSE") throw new RuntimeUnavailableError(`the cluster port ${serveOptions.port ?? 7946} is in use (another controller here?): stop it, or pass --cluster-port N`);
        throw err;
      }
      closers.push(() => server.close());
      port_.server = server;
      // The controller's own gossip member: nodes join through it (its address is in the hello).
      const log = serveOptions.log ?? ((l: string) => console.error(l));
      const keyring = await ensureGossipKeyring(store);
      gossip.version = keyring.version;
      const addresses = options.cluster?.addresses ?? hostAddresses();
      const member = await startNodeGossip({
        dataDir,
        name: node.name,
        ...(serveOptions.host ? { host: serveOptions.host } : {}),
        ...(serveOptions.gossipPort === undefined ? {} : { port: serveOptions.gossipPort }),
        advertise: joinAt.host,
        keyring,
        meta: nodeMeta(node, addresses),
        ...(serveOptions.gossipConfig ? { config: serveOptions.gossipConfig } : {}),
        onChange: (m) => {
          if (m.name !== node.name) controller.nudge();
        },
        log: (l) => log(l),
      });
      gossip.member = member;
      closers.push(() => member.leave());
      // A rotation (gossip key install|use|remove, on any controller) reaches this member and, by
      // the version in their heartbeats' answers, every node.
      const followingKeys = new AbortController();
      const keysFollowed = followGossipKeyring(
        store,
        (r) => {
          gossip.version = r.version;
          member.setKeyring(r);
        },
        followingKeys.signal,
        log,
      );
      closers.push(async () => {
        followingKeys.abort();
        await keysFollowed;
      });
      // The controller's own certificate is renewed as its nodes' are: at two thirds of its life.
      let own = files;
      const renewOwn = async () => {
        if (Date.now() < renewAt(own.cert)) return;
        const { csr, key } = await createCsr(own.node);
        const oldSerial = identityOf(own.cert)?.serial;
        const signed = await signCsr(ca, csr, { cluster: own.name, node: own.node, role: "controller", addresses: options.cluster?.addresses ?? hostAddresses(), ...(serveOptions.certValidDays ? { validDays: serveOptions.certValidDays } : {}) });
        await store.put(`${KEYS.certs}${signed.serial}`, JSON.stringify({ node: own.node, role: "controller", issuedAt: Date.now(), notAfter: signed.notAfter, ...(oldSerial ? { renewedFrom: oldSerial } : {}) } satisfies CertRecord));
        replaceNodeCert(dataDir, signed.cert, key);
        own = { ...own, cert: signed.cert, key };
        server.useCert(signed.cert, key);
        api.useCert({ cert: signed.cert, key, ca: files.caCert });
      };
      const renewal = setInterval(() => void renewOwn().catch((err: Error) => (serveOptions.log ?? console.error)(`cluster: renewing this controller's certificate failed (${err.message}); trying again`)), RENEW_CHECK_MS);
      renewal.unref();
      closers.push(async () => clearInterval(renewal));
      // The API over HTTPS for other machines' CLI and SDK (the same routes and tokens).
      const apiPort = serveOptions.apiPort ?? 7443;
      const lastApi = apiPort === 0 ? lastPortIn(dataDir, "https.port") : undefined;
      const listenHttps = (port: number) => api.listen({ port, host: serveOptions.host ?? "0.0.0.0", tls: { cert: own.cert, key: own.key, ca: files.caCert } });
      let httpsAt: string;
      try {
        httpsAt = lastApi === undefined ? await listenHttps(apiPort) : await listenHttps(lastApi).catch(() => listenHttps(apiPort));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") throw new RuntimeUnavailableError(`the HTTPS API's port ${apiPort} is in use (another controller here?): stop it, or pass --api-port N`);
        throw err;
      }
      const httpsPort = Number(new URL(httpsAt).port);
      httpsApi.url = `https://${joinAt.host}:${httpsPort}`; // (an IPv6 host is bracketed already)
      writeFileSync(join(dataDir, "https.port"), `${httpsPort}\n`, { mode: 0o644 });
      joinAt.port = server.port;
      writeFileSync(join(dataDir, "cluster.port"), `${server.port}\n`, { mode: 0o644 });
      if (etcd) {
        // This controller in the store's list (on a lease), and the list followed for nodes' heartbeats.
        const registration = await registerController(store, () => ({ node: node.name, address: joinAddress(), api: httpsApi.url!, gossip: member.address }), log);
        closers.push(() => registration.close());
        // The other controllers' gossip members: this one joins them (nodes join through any).
        const others = (await listControllers(store, log)).filter((c) => c.node !== node.name && c.gossip).map((c) => c.gossip!);
        if (others.length > 0) member.join(others);
        const following = new AbortController();
        const followed = follow(
          store,
          { prefix: KEYS.controllers },
          (kvs) => (controllers = controllersOf(kvs, log).map((c) => c.address).sort()),
          following.signal,
          (err, failures) => failures === 0 && log(`controller: following the list of controllers failed (${err.message}); trying again`),
        );
        closers.push(async () => {
          following.abort();
          await followed;
        });
      } else controllers = [joinAddress()];
      cluster = {
        address: joinAddress(),
        node: node.name,
        name: files.name,
        port: server.port,
        joinToken: (ttlSeconds) => createJoinToken(store, files.caCert, ttlSeconds === undefined ? {} : { ttlSeconds }),
        revokeJoinToken: (id) => revokeJoinToken(store, id),
        connected: () => server.connected(),
        httpsUrl: httpsApi.url!,
        caFingerprint: fingerprint(files.caCert),
      };
    }
    writeFileSync(join(dataDir, "endpoint"), `${url}\n`, { mode: 0o644 });
    // The store this controller is on, kept once it has started (a refused start keeps nothing).
    if (etcd && options.store) writeFileSync(join(dataDir, "store.json"), `${JSON.stringify(etcd)}\n`, { mode: 0o600 });
    return { url, token, dataDir, close, ...(cluster ? { cluster } : {}) };
  } catch (err) {
    failed = true;
    await close();
    throw err;
  }
}

/**
 * A new cluster's controller: its CA, and its own certificate (recorded as issued, like any
 * node's), written to the data dir whole.
 */
async function newController(dataDir: string, store: Store, name: string, node: string, addresses: string[], validDays?: number): Promise<ClusterFiles> {
  const ca = await createCa(name);
  const { csr, key } = await createCsr(node);
  const signed = await signCsr(ca, csr, { cluster: name, node, role: "controller", addresses, ...(validDays ? { validDays } : {}) });
  const issued: CertRecord = { node, role: "controller", issuedAt: Date.now(), notAfter: signed.notAfter };
  await store.put(`${KEYS.certs}${signed.serial}`, JSON.stringify(issued));
  const files: ClusterFiles = { name, node, role: "controller", caCert: ca.cert, caKey: ca.key, cert: signed.cert, key };
  writeClusterFiles(dataDir, files);
  return files;
}

/** The etcd store this data dir is on: the one given (it must match the one kept), or the one kept (store.json). */
function storeConfigOf(dataDir: string, given: EtcdStoreConfig | undefined): EtcdStoreConfig | undefined {
  let kept: EtcdStoreConfig | undefined;
  try {
    kept = JSON.parse(readFileSync(join(dataDir, "store.json"), "utf8")) as EtcdStoreConfig;
  } catch {
    kept = undefined;
  }
  if (given && !kept && existsSync(join(dataDir, "store.db")) && readClusterFiles(dataDir)) {
    throw new InvalidArgumentError("store", `${dataDir} is a controller on its own store (store.db): it cannot move to etcd by a flag; give another --data`);
  }
  const members = (c: EtcdStoreConfig) => c.endpoints.map((e) => e.replace(/^https?:\/\//, "")).sort().join(",");
  if (given && kept && members(given) !== members(kept)) {
    throw new InvalidArgumentError("store", `${dataDir} is a controller on etcd ${kept.endpoints.join(",")}, not ${given.endpoints.join(",")}: give that store, or another --data`);
  }
  // The same store named again without its TLS files: the kept ones.
  if (given && kept?.tls && !given.tls) return kept;
  return given ?? kept;
}

/**
 * An HA controller's identity: the cluster's CA from the store (made there by the first
 * controller), and this controller's certificate signed with it, written to the data dir once.
 * A data dir of another cluster than the store's is refused.
 */
async function haController(
  dataDir: string,
  store: Store,
  known: ClusterFiles | undefined,
  name: string | undefined,
  node: string,
  addresses: string[],
  undo: Array<() => Promise<void>>,
  validDays?: number,
): Promise<ClusterFiles> {
  const { ca, made } = await sharedCa(store, async () => {
    const cluster = checkClusterName(name ?? known?.name ?? "default");
    if (known) return { name: known.name, cert: known.caCert, key: known.caKey! }; // (its store was emptied: its CA again)
    const made = await createCa(cluster);
    return { name: cluster, cert: made.cert, key: made.key };
  });
  if (made) {
    // Made by this start: taken back if the start fails, unless another controller came meanwhile.
    undo.push(async () => {
      if ((await store.range({ prefix: KEYS.controllers }, { countOnly: true })).count > 0) return;
      const kv = await store.get(KEYS.clusterCa);
      if (kv && fingerprint((JSON.parse(kv.value) as StoredCa).cert) === fingerprint(ca.cert)) {
        await store.txn({ compare: [{ key: KEYS.clusterCa, target: "modRevision", op: "=", value: kv.modRevision }], success: [{ type: "delete", range: { key: KEYS.clusterCa } }] });
      }
    });
  }
  if (name !== undefined && name !== ca.name) throw new InvalidArgumentError("cluster", `the store holds cluster ${ca.name}, not ${name}: give that name (or none), or another store`);
  if (known) {
    if (fingerprint(known.caCert) !== fingerprint(ca.cert)) throw new InvalidArgumentError("store", `${dataDir} is a controller of cluster ${known.name}, and this store holds another cluster's CA (${ca.name}): give its own store, or another --data`);
    return known;
  }
  // Signed first (nothing in the store yet), so that a failure takes no name.
  const { csr, key } = await createCsr(node);
  const signed = await signCsr(ca, csr, { cluster: ca.name, node, role: "controller", addresses, ...(validDays ? { validDays } : {}) });
  // The node's name is taken once in the cluster (a joining node could not take it after, nor this one a node's).
  const nameKey = `${KEYS.nodeNames}${node}`;
  const taken = await store.txn({ compare: [{ key: nameKey, target: "createRevision", op: "=", value: 0 }], success: [{ type: "put", key: nameKey, value: JSON.stringify({ at: Date.now(), controller: true }) }] });
  if (!taken.succeeded || (await store.get(nodeKey(node)))) {
    if (taken.succeeded) await store.delete({ key: nameKey });
    throw new InvalidArgumentError("node", `a node named ${node} is already in cluster ${ca.name}: give this controller another name (--node)`);
  }
  const files: ClusterFiles = { name: ca.name, node, role: "controller", caCert: ca.cert, caKey: ca.key, cert: signed.cert, key };
  try {
    await store.put(`${KEYS.certs}${signed.serial}`, JSON.stringify({ node, role: "controller", issuedAt: Date.now(), notAfter: signed.notAfter } satisfies CertRecord));
    writeClusterFiles(dataDir, files);
  } catch (err) {
    // Nothing half-made: the name given back (and the certificate's record, if written).
    await store.delete({ key: `${KEYS.certs}${signed.serial}` }).catch(() => undefined);
    await store.delete({ key: nameKey }).catch(() => undefined);
    throw err;
  }
  // ...and the same if the start fails later (a port in use, say).
  undo.push(async () => {
    await store.delete({ key: `${KEYS.certs}${signed.serial}` });
    await store.delete({ key: nameKey });
    rmSync(join(dataDir, "cluster"), { recursive: true, force: true });
  });
  return files;
}

/** The address other machines reach: the first that is not loopback (IPv4 first), else loopback. */
export function advertised(addresses: string[]): string {
  const outside = addresses.filter((a) => a !== "127.0.0.1" && a !== "::1");
  const v4 = outside.find((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a));
  const pick = v4 ?? outside[0] ?? "127.0.0.1";
  return pick.includes(":") ? `[${pick}]` : pick;
}

/** This host's addresses (IPv4 and IPv6, loopback included), for its certificate. */
export function hostAddresses(): string[] {
  const out = new Set<string>(["127.0.0.1"]);
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (!a.address.startsWith("fe80:")) out.add(a.address);
  return [...out];
}

/** The port a file of the data dir (cluster.port, https.port) holds from its last start, if any. */
function lastPortIn(dataDir: string, file: string): number | undefined {
  try {
    const text = readFileSync(join(dataDir, file), "utf8").trim();
    const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN; // digits only: not "0x16"
    return port > 0 && port < 65536 ? port : undefined;
  } catch {
    return undefined;
  }
}

/** The API's port at the data dir's last start (its `endpoint` file), if any. */
function lastPort(dataDir: string): number | undefined {
  try {
    const port = Number(new URL(readFileSync(join(dataDir, "endpoint"), "utf8").trim()).port);
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The admin token: made on the first start (0600 in the data dir), the same ever after — unless
 * it was revoked (`constellation token rm`): then a new one replaces it in the file.
 */
async function adminToken(store: Store, dataDir: string): Promise<string> {
  const file = join(dataDir, "admin.token");
  if (existsSync(file)) {
    const token = readFileSync(file, "utf8").trim();
    if (await lookupToken(store, token)) return token;
    // Not in the store: a new, empty store (keep the file's token), or revoked (make a new one).
    const { count } = await store.range({ prefix: PREFIX }, { countOnly: true });
    if (count === 0) {
      await saveToken(store, token, "admin", "admin");
      return token;
    }
  }
  const token = newToken();
  await saveToken(store, token, "admin", "admin");
  writeFileSync(`${file}.tmp`, `${token}\n`, { mode: 0o600 });
  chmodSync(`${file}.tmp`, 0o600);
  renameSync(`${file}.tmp`, file);
  return token;
}
