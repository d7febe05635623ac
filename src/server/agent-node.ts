/**
 * A node that joined a cluster (issue 11): its agent and runtimes, and no store — everything it
 * reads and writes goes to its controller over RNP, on one mutual-TLS connection that comes
 * back by itself (the controller restarting, a link down: its stars run on meanwhile). The
 * first start joins with a token (join.ts: the token pins the cluster's CA) and keeps the
 * certificate it is given in the data dir (cluster/, files.ts); later starts just connect.
 */
import { X509Certificate } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { availableParallelism, hostname, totalmem } from "node:os";
import type { Duplex } from "node:stream";
import { join, resolve } from "node:path";
import { Agent } from "../agent/agent.js";
import { RnpAgentLink, nodeHandlers } from "../cluster/agent-protocol.js";
import { type ClusterFiles, readClusterFiles, replaceNodeCert, writeClusterFiles } from "../cluster/files.js";
import { dialController } from "../cluster/dial.js";
import { joinCluster, parseJoinToken, splitAddress } from "../cluster/join.js";
import { RnpClient } from "../cluster/rnp/client.js";
import { fingerprint, identityOf, renewAt } from "../cluster/tls/identity.js";
import { createCsr } from "../cluster/tls/signer.js";
import { InvalidArgumentError } from "../model/errors.js";
import type { NodeLimits, NodeCapacity } from "../model/spec.js";
import type { NodeLink } from "../model/agent-link.js";
import { VERSION } from "../model/version.js";
import { RENEW_CHECK_MS, advertised, hostAddresses, makeRuntimes, nodeLimitsOf, nodeNameOf } from "./single-node.js";
import { keepTrimmingMalloc } from "./memory.js";
import { type NodeGossip, nodeMeta, readGossipCache, startNodeGossip } from "./gossip.js";
import type { GossipConfig } from "../cluster/gossip/config.js";
import type { GossipKeyring, NodeRecord } from "../model/records.js";

const controllersFile = (dataDir: string) => join(dataDir, "cluster", "controllers.json");

/** The controllers an HA cluster's heartbeats named, as kept (none if unreadable). */
function readControllers(dataDir: string): string[] {
  try {
    const list = JSON.parse(readFileSync(controllersFile(dataDir), "utf8")) as unknown;
    return Array.isArray(list) ? list.filter((c): c is string => typeof c === "string" && /^.+:\d{1,5}$/.test(c)).slice(0, 16) : [];
  } catch {
    return [];
  }
}

function writeControllers(dataDir: string, list: string[]): void {
  try {
    writeFileSync(`${controllersFile(dataDir)}.tmp`, `${JSON.stringify(list)}\n`, { mode: 0o644 });
    renameSync(`${controllersFile(dataDir)}.tmp`, controllersFile(dataDir));
  } catch {
    // (kept again at the next change)
  }
}

/** Whether `cert` is signed by the CA `caCert`. */
function signedBy(cert: string, caCert: string): boolean {
  try {
    return new X509Certificate(cert).verify(new X509Certificate(caCert).publicKey);
  } catch {
    return false;
  }
}

export interface AgentNodeOptions {
  dataDir: string;
  /** This node's name (default: the host name, as a DNS label); fixed at the join. */
  nodeName?: string;
  /** The first start: the controller's cluster address (HOST:PORT) and a join token. */
  join?: { address: string; token: string };
  /** Addresses put in this node's certificate (default: this host's). */
  addresses?: string[];
  /** This node's labels (`join --label k=v`). */
  labels?: Record<string, string>;
  devMode?: boolean;
  limits?: Partial<NodeLimits>;
  /** Where the node's log lines go (its link to the controller; default stderr). */
  log?: (line: string) => void;
  /** Heartbeat interval on the controller link (default RNP's). */
  heartbeatMs?: number;
  /** The gossip's UDP port (default 7947; 0: the last start's if free, else any free port). */
  gossipPort?: number;
  /** Gossip timings (tests; default DEFAULT_GOSSIP). */
  gossipConfig?: Partial<GossipConfig>;
}

export interface AgentNode {
  name: string;
  cluster: string;
  /** The controller's cluster address. */
  controller: string;
  /** Whether the link to the controller is up now. */
  connected(): boolean;
  /** This node's gossip member, once it has the cluster's keyring. */
  gossip(): NodeGossip | undefined;
  close(): Promise<void>;
}

/** This node's identity: the one in the data dir, or a new one from joining with the token. */
async function identity(dataDir: string, options: AgentNodeOptions): Promise<ClusterFiles> {
  const known = readClusterFiles(dataDir);
  const token = options.join ? parseJoinToken(options.join.token) : undefined;
  if (options.join && !token) throw new InvalidArgumentError("token", "the join token is not one: copy it whole from `constellation token create --join` on the controller (it begins with cjt1.)");
  if (known) {
    if (known.role !== "agent") throw new InvalidArgumentError("cluster", `${dataDir} is the controller of cluster ${known.name}: start it with \`constellation init\` (or give another --data)`);
    if (token && token.caFingerprint !== fingerprint(known.caCert)) {
      throw new InvalidArgumentError("token", `${dataDir} is node ${known.node} of cluster ${known.name}, and this token is another cluster's: leave it, or give another --data`);
    }
    if (options.nodeName !== undefined && options.nodeName !== known.node) {
      throw new InvalidArgumentError("node", `${dataDir} is node ${known.node} of cluster ${known.name}, not ${options.nodeName}: give that name, or another --data`);
    }
    return known;
  }
  if (!options.join) throw new InvalidArgumentError("join", `${dataDir} belongs to no cluster yet: give the controller's address and a join token (--join HOST:PORT --token T)`);
  splitAddress(options.join.address); // a clear error for a bad address, before any key is made
  const node = options.nodeName ?? nodeNameOf(hostname());
  const admission = await joinCluster({ address: options.join.address, token: options.join.token, node, addresses: options.addresses ?? hostAddresses() });
  const files: ClusterFiles = { name: admission.cluster, node, role: "agent", controller: options.join.address, caCert: admission.caCert, cert: admission.cert, key: admission.key };
  writeClusterFiles(dataDir, files);
  return files;
}

export async function startAgentNode(options: AgentNodeOptions): Promise<AgentNode> {
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  chmodSync(dataDir, 0o711);
  const files = await identity(dataDir, options);
  const log = options.log ?? ((l: string) => console.error(l));
  const stopTrimming = keepTrimmingMalloc();
  const closers: Array<() => Promise<void>> = [async () => stopTrimming()];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    const devMode = options.devMode === true;
    const capacity: Required<Omit<NodeCapacity, "diskBytes">> = { cpuCores: availableParallelism(), memoryBytes: totalmem(), limits: nodeLimitsOf(options.limits) };
    const runtimes = await makeRuntimes(dataDir, devMode, capacity, closers);
    // The controllers to connect to: the one joined, and those an HA cluster's heartbeats name
    // (kept in the data dir: after a restart the node finds one even if the one joined is gone).
    let controllers = [files.controller!, ...readControllers(dataDir).filter((c) => c !== files.controller)];
    let at = 0;
    const mine = { cert: files.cert, key: files.key };
    // Only the cluster's CA is trusted, and only a controller of this cluster is talked to. A
    // controller that does not answer within 3 s (its machine gone) is given up for the next.
    const dial = async (): Promise<Duplex> => {
      const target = controllers[at % controllers.length]!;
      const [host, port] = splitAddress(target);
      try {
        // The certificate of the moment: a renewal is used from the next connection on.
        const s = await dialController({ host, port: Number(port), cert: mine.cert, key: mine.key, ca: files.caCert, cluster: files.name, timeoutMs: 3000, target });
        connectedTo = target;
        return s;
      } catch (err) {
        at++; // the next controller, if there are others
        throw err;
      }
    };
    let connectedTo = files.controller!;
    /** An HA cluster's heartbeat named its controllers: kept, and dialled in turn when one fails. */
    const knowControllers = (list: string[]) => {
      const next = [...new Set([...list, files.controller!])];
      if (next.join(",") === controllers.join(",")) return;
      controllers = next;
      at = Math.max(0, controllers.indexOf(connectedTo));
      writeControllers(dataDir, controllers);
    };
    // The agent answers its controller's questions about its stars (their logs) on the same link.
    const asked: NodeLink = { logs: (s, o) => agent.logs(s, o), usage: (s) => agent.usage(s), unsentStatus: (s) => agent.unsentStatus(s) };
    let up = false;
    /** The controller's HTTPS API (it says where in its hello): stars here get it and a token. */
    let api: string | undefined;
    const addresses = options.addresses ?? hostAddresses();
    const record: NodeRecord = {
      name: files.node,
      ...capacity,
      runtimes: Object.keys(runtimes),
      limitsEnforced: !devMode,
      startedAt: Date.now(),
      address: advertised(addresses).replace(/^\[|\]$/g, ""),
      version: VERSION,
      ...(options.labels && Object.keys(options.labels).length > 0 ? { labels: options.labels } : {}),
    };
    // Gossip (server/gossip.ts): at once from the keyring kept here, else once the controller gives it.
    const gossip: { member?: NodeGossip; starting?: Promise<void>; seed?: string } = {};
    let askedAt = -Infinity;
    const startGossip = async (keyring: GossipKeyring, seeds: string[]) => {
      const member = await startNodeGossip({
        dataDir,
        name: files.node,
        ...(options.gossipPort === undefined ? {} : { port: options.gossipPort }),
        advertise: advertised(addresses),
        keyring,
        meta: nodeMeta(record, addresses),
        seeds,
        ...(options.gossipConfig ? { config: options.gossipConfig } : {}),
        // A packet no key here opens: a rotation not heard of yet? The keyring is asked for at
        // once (at most every 2 s), not at the next heartbeat.
        onUnknownKey: () => {
          if (performance.now() - askedAt < 2000 || !client.connected) return;
          askedAt = performance.now();
          void link
            .gossipKeys()
            .then((r) => gossip.member?.setKeyring(r))
            .catch(gossipFailed);
        },
        log: (l) => log(`node ${files.node}: ${l}`),
      });
      if (closed) return member.close();
      gossip.member = member;
      closers.push(() => member.leave());
      log(`node ${files.node}: gossiping at ${member.address}${seeds.length > 0 ? ` (joining through ${seeds.join(", ")})` : ""}`);
    };
    /** The controller named its member (hello) or a newer keyring (heartbeat): take it in. */
    const keepGossip = async (seed: string | undefined, version: number | undefined) => {
      if (seed) gossip.seed = seed;
      if (gossip.starting) await gossip.starting;
      const member = gossip.member;
      if (!member) {
        gossip.starting = (async () => startGossip(await link.gossipKeys(), gossip.seed ? [gossip.seed] : []))().finally(() => (gossip.starting = undefined));
        return gossip.starting;
      }
      if (version !== undefined && version !== member.version) member.setKeyring(await link.gossipKeys());
      // Through the controller's member, when it is one this member does not know alive.
      if (seed && !member.members().some((m) => m.address === seed && (m.state === "alive" || m.state === "suspect"))) member.join([seed]);
    };
    // Said once per reason (it is tried again at every heartbeat).
    let lastFailure = "";
    const gossipFailed = (err: Error) => {
      if (err.message === lastFailure) return;
      lastFailure = err.message;
      log(`node ${files.node}: gossip could not start or follow the keyring (${err.message}); trying again at the next heartbeat`);
    };
    let closed = false;
    closers.push(async () => void (closed = true));
    const client = new RnpClient({
      dial,
      // One controller to reach: try again often (a healed partition is noticed within 2 s, and
      // the node ends its superseded stars within the issue's 5 s).
      backoffMs: { min: 100, max: 2000 },
      hello: { node: files.node, cluster: files.name },
      handlers: nodeHandlers(asked),
      ...(options.heartbeatMs ? { heartbeatMs: options.heartbeatMs } : {}),
      onConnect: (peer) => {
        if (peer.peer?.api?.startsWith("https://")) api = peer.peer.api;
        if (peer.peer?.gossip) void keepGossip(peer.peer.gossip, undefined).catch(gossipFailed);
        if (!up) log(`node ${files.node}: connected to the controller of cluster ${files.name} at ${connectedTo}`);
        up = true;
        peer.once("close", () => {
          if (up) log(`node ${files.node}: the link to ${connectedTo} is down; trying again (stars run on)`);
          at++; // the next controller first, if there are others
          up = false;
        });
      },
      log: (l) => log(`node ${files.node}: ${l}`),
    });
    closers.push(async () => client.close());
    // Each heartbeat's answer names the controllers running and the keyring's version: a newer
    // keyring is fetched and used.
    const link = new RnpAgentLink(client, undefined, (a) => {
      if (a.controllers) knowControllers(a.controllers);
      if (a.gossipKeys !== undefined && (gossip.member === undefined || a.gossipKeys !== gossip.member.version)) void keepGossip(undefined, a.gossipKeys).catch(gossipFailed);
    });
    const agent: Agent = new Agent({
      link,
      node: record,
      runtimes,
      endpoint: () => api,
      ca: files.caCert,
      artifactsDir: join(dataDir, "artifacts"),
    });
    // Gossip at once with the keyring kept here (the controller may be away).
    const cached = readGossipCache(dataDir);
    if (cached) {
      gossip.starting = startGossip(cached.keyring, cached.seeds ?? []).finally(() => (gossip.starting = undefined));
      await gossip.starting;
    }
    // The controller may be down as this node starts: wait for it (its stars run on meanwhile).
    for (let said: string | undefined; ; ) {
      try {
        await link.reports();
        break;
      } catch (err) {
        // Said once per reason (refused, then a certificate's dates, ...): not at every try.
        const why = (err as Error).message;
        if (why !== said) log(`node ${files.node}: cannot reach the controller at ${files.controller} yet (${why}); waiting`);
        said = why;
      }
    }
    await agent.start();
    closers.push(() => agent.stop());
    // The certificate is renewed over the link at two thirds of its life, without a restart.
    const renewMine = async () => {
      if (Date.now() < renewAt(mine.cert)) return;
      const { csr, key } = await createCsr(files.node);
      const { cert } = (await client.call("cluster.renew", { csr }, { timeoutMs: 10_000 })) as { cert: string };
      const id = identityOf(cert);
      if (!id || id.node !== files.node || id.cluster !== files.name || !signedBy(cert, files.caCert)) throw new Error("the controller answered a certificate that is not this node's");
      replaceNodeCert(dataDir, cert, key);
      mine.cert = cert;
      mine.key = key;
      log(`node ${files.node}: certificate renewed (serial ${id.serial}, valid until ${new Date(id.notAfter).toISOString()})`);
    };
    let renewing = false;
    const renewal = setInterval(() => {
      if (renewing) return;
      renewing = true;
      void renewMine()
        .catch((err: Error) => log(`node ${files.node}: renewing its certificate failed (${err.message}); trying again`))
        .finally(() => (renewing = false));
    }, RENEW_CHECK_MS);
    renewal.unref();
    closers.push(async () => clearInterval(renewal));
    return { name: files.node, cluster: files.name, controller: files.controller!, connected: () => client.connected, gossip: () => gossip.member, close };
  } catch (err) {
    await close();
    throw err;
  }
}
