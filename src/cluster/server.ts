/**
 * The controller's cluster port: TLS 1.3 with mutual authentication, RNP inside. A connection
 * whose certificate the cluster CA signed for a node of this cluster gets the agent methods for
 * that node (its certificate's name: a node speaks only for itself), if the controller issued
 * that certificate and has not revoked it. A connection without a certificate may only join
 * (with a token). Anything else — another CA's certificate, another cluster's, a revoked one,
 * garbage instead of TLS — is closed with a log line saying why.
 */
import type { AddressInfo, Socket } from "node:net";
import { type TLSSocket, createServer } from "node:tls";
import { AgentService, type ClusterFacts } from "../controller/agent-service.js";
import { type CertRecord, KEYS } from "../model/records.js";
import type { Store } from "../store/types.js";
import { AGENT_METHODS, agentHandlers } from "./agent-protocol.js";
import type { ClusterNodes } from "./nodes.js";
import { RnpError, RnpPeer } from "./rnp/peer.js";
import { certDatesProblem, identityOf } from "./tls/identity.js";

/** Largest frame from a connection without a certificate (a join), and how long it may stay. */
export const JOIN_MAX_FRAME = 16 * 1024;
export const JOIN_DEADLINE_MS = 10_000;

export interface ClusterServerOptions {
  store: Store;
  cluster: string;
  /** The API over HTTPS (its URL), told to each node that connects (its stars' SDK uses it). */
  api?: () => string | undefined;
  /** The CA's certificate (PEM): the only issuer trusted. */
  caCert: string;
  /** This controller's certificate and key (PEM), signed by the CA. */
  cert: string;
  key: string;
  host?: string;
  port?: number;
  /** Admits a node that has no certificate yet (join.ts `admit`); absent: no joins here. */
  join?: (body: unknown, from: string) => Promise<unknown>;
  log?: (line: string) => void;
  heartbeatMs?: number;
  /** The controller's view of its nodes: each node's connection and usage are given to it. */
  nodes?: ClusterNodes;
  /** Nodes' lease TTL (default AgentService's). */
  nodeTtlSeconds?: number;
  /** How long a connection without a certificate may stay (default 10 s). */
  joinDeadlineMs?: number;
  /** Renews a connected node's certificate (join.ts `renew`); absent: no renewals here. */
  renew?: (node: string, serial: string, body: unknown) => Promise<unknown>;
  /**
   * The cluster's gossip: the controller's member (told in the hello: nodes join through it) and
   * the keyring (its version in each heartbeat's answer; the keyring itself when a node asks).
   */
  gossip?: ClusterFacts & { address(): string | undefined };
  /** Connections at most, of all kinds (default 8192); more are closed at once. */
  maxConnections?: number;
  /**
   * Connections from one address not yet known as a node (in their handshake, or joining) at
   * most (default 64): a flood from one address cannot take the port from the others.
   */
  maxPendingPerAddress?: number;
}

export interface ClusterServer {
  port: number;
  /** Nodes connected now, by name. */
  connected(): string[];
  /** Ends a node's connections (its certificate was just revoked: it cannot come back). */
  disconnect(node: string): void;
  /** Serves with a renewed certificate from now on (connections made before keep theirs). */
  useCert(cert: string, key: string): void;
  close(): Promise<void>;
}

export async function serveCluster(options: ClusterServerOptions): Promise<ClusterServer> {
  const log = options.log ?? ((l: string) => console.error(l));
  // Refusals are logged, but a flood of them is not a flood of lines: at most 20 each 10 s, then a count.
  let windowAt = 0;
  let inWindow = 0;
  let untold = 0;
  const refusal = (line: string) => {
    if (Date.now() - windowAt > 10_000) {
      if (untold > 0) log(`cluster port: ${untold} more refusals in the last 10 s (not each logged)`);
      windowAt = Date.now();
      inWindow = 0;
      untold = 0;
    }
    if (inWindow++ < 20) log(line);
    else untold++;
  };
  // Connections not yet known as a node's, by address (a node's is released once it is known).
  const pendingByAddress = new Map<string, number>();
  const pending = new Set<string>();
  const maxPending = options.maxPendingPerAddress ?? 64;
  let warnedAt = 0;
  const warn = (line: string) => {
    if (Date.now() - warnedAt < 10_000) return; // a flood is said once in a while, not per connection
    warnedAt = Date.now();
    log(line);
  };
  /** A connection known now as a node's no longer counts against its address. */
  const release = (address: string, port: number | undefined) => {
    if (!pending.delete(`${address}|${port}`)) return;
    const n = (pendingByAddress.get(address) ?? 1) - 1;
    if (n > 0) pendingByAddress.set(address, n);
    else pendingByAddress.delete(address);
  };
  const peers = new Map<RnpPeer, string>();
  /** Where each node's connection comes from (its remote address). */
  const addressOf = new Map<RnpPeer, string>();
  const server = createServer(
    {
      cert: `${options.cert.trimEnd()}\n${options.caCert.trimEnd()}\n`, // the chain: a joining node checks the CA its token names
      key: options.key,
      ca: options.caCert,
      requestCert: true,
      handshakeTimeout: 10_000, // a connection that never finishes its TLS handshake is closed
      rejectUnauthorized: false, // judged below, so that a refusal says why
      minVersion: "TLSv1.3",
    },
    (socket: TLSSocket) => {
      socket.setNoDelay(true); // small frames, answered at once: no Nagle delay behind a delayed ACK
      const from = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`;
      const refuse = (why: string) => {
        refusal(`cluster port: refused ${from}: ${why}`);
        socket.destroy();
      };
      const given = socket.getPeerCertificate();
      if (!given || Object.keys(given).length === 0) {
        // No certificate: a node that is joining. It may ask for nothing but to join.
        if (!options.join) return refuse("no certificate, and this controller admits no joins");
        const join = options.join;
        const peer = new RnpPeer(socket, {
          role: "server",
          hello: { node: "controller", cluster: options.cluster },
          handlers: { "cluster.join": (body) => join(body, from) },
          maxInFlight: 1,
          // Before any certificate: small frames only (a join is a few KiB), and a short while.
          maxFrame: JOIN_MAX_FRAME,
          log: (l) => log(`cluster port: joining node (${from}): ${l}`),
        });
        peers.set(peer, "");
        const deadline = setTimeout(() => peer.close(), options.joinDeadlineMs ?? JOIN_DEADLINE_MS);
        deadline.unref();
        peer.on("close", () => {
          clearTimeout(deadline);
          peers.delete(peer);
        });
        return;
      }
      if (!socket.authorized) {
        const dates = certDatesProblem(socket.authorizationError, given, `node ${identityOf(given.raw)?.node ?? "?"}'s`, options.caCert);
        return refuse(dates ?? `no certificate of this cluster's CA (${String(socket.authorizationError ?? "none given")})`);
      }
      const id = identityOf(given.raw);
      if (!id) return refuse("its certificate does not name a node");
      if (id.cluster !== options.cluster) return refuse(`its certificate is for cluster "${id.cluster}", this is "${options.cluster}"`);
      socket.pause();
      void options.store.get(`${KEYS.certs}${id.serial}`).then(
        (kv) => {
          const issued = kv ? (JSON.parse(kv.value) as CertRecord) : undefined;
          if (!issued || issued.node !== id.node) return refuse(`the certificate of node ${id.node} (serial ${id.serial}) was not issued by this cluster's controller`);
          if (issued.revokedAt !== undefined) return refuse(`the certificate of node ${id.node} (serial ${id.serial}) is revoked`);
          // One machine per node: a connection as a node already connected from another address
          // is a second machine with its identity (a copied data dir, a cloned VM). Both would run
          // its stars: the newcomer is refused — every call answered with why — until the first
          // connection ends. (From the same address it is the node reconnecting: let in.)
          const ip = socket.remoteAddress ?? "?";
          const first = [...peers].find(([p, n]) => n === id.node && addressOf.get(p) !== ip);
          if (first) {
            const why = `node ${id.node} is connected from ${addressOf.get(first[0])} already: another machine holds this node's identity (a copied data dir?); refused while that connection lasts`;
            refusal(`cluster port: refused ${from}: ${why}`);
            const refuseAll = () => Promise.reject(new RnpError("conflict", why));
            const twin = new RnpPeer(socket, {
              role: "server",
              hello: { node: "controller", cluster: options.cluster },
              handlers: Object.fromEntries(Object.keys(AGENT_METHODS).map((m) => [`agent.${m}`, refuseAll])),
              maxInFlight: 4,
              log: () => undefined,
            });
            socket.resume();
            const end = setTimeout(() => twin.close(), 10_000);
            end.unref();
            twin.once("close", () => clearTimeout(end));
            return;
          }
          const link = new AgentService(options.store, id.node, (stars) => options.nodes?.setUsage(id.node, stars), options.nodeTtlSeconds, options.gossip);
          const gossipAt = options.gossip?.address();
          const peer = new RnpPeer(socket, {
            role: "server",
            hello: { node: "controller", cluster: options.cluster, ...(options.api?.() ? { api: options.api()! } : {}), ...(gossipAt ? { gossip: gossipAt } : {}) },
            handlers: {
              ...agentHandlers(link),
              ...(options.renew ? { "cluster.renew": (body: unknown) => options.renew!(id.node, id.serial, body) } : {}),
            },
            log: (l) => log(`cluster port: node ${id.node} (${from}): ${l}`),
            ...(options.heartbeatMs ? { heartbeatMs: options.heartbeatMs } : {}),
          });
          socket.resume();
          release(socket.remoteAddress ?? "?", socket.remotePort);
          options.nodes?.attach(id.node, peer);
          peers.set(peer, id.node);
          addressOf.set(peer, ip);
          peer.on("close", () => {
            peers.delete(peer);
            addressOf.delete(peer);
          });
        },
        (err: Error) => refuse(`its certificate could not be checked (the store: ${err.message})`),
      );
    },
  );
  server.maxConnections = options.maxConnections ?? 8192;
  server.on("drop", (d?: { remoteAddress?: string }) => warn(`cluster port: refused ${d?.remoteAddress ?? "a connection"}: ${server.maxConnections} connections are open, the most this port takes`));
  server.on("connection", (raw: Socket) => {
    const address = raw.remoteAddress ?? "?";
    const n = pendingByAddress.get(address) ?? 0;
    if (n >= maxPending) {
      warn(`cluster port: refused ${address}: ${n} connections from it are not yet a node's (in their handshake or joining), the most one address may have`);
      raw.destroy();
      return;
    }
    pendingByAddress.set(address, n + 1);
    pending.add(`${address}|${raw.remotePort}`);
    raw.once("close", () => release(address, raw.remotePort));
  });
  server.on("tlsClientError", (err, socket) => {
    // (A connection the cap closed before its handshake is said by the cap's own line.)
    if (socket.remoteAddress === undefined) return;
    refusal(`cluster port: refused ${socket.remoteAddress}:${socket.remotePort ?? "?"}: ${tlsRefusal(err)}`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 7946, options.host ?? "0.0.0.0", () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    connected: () => [...new Set(peers.values())].filter(Boolean),
    useCert: (cert, key) => server.setSecureContext({ cert: `${cert.trimEnd()}\n${options.caCert.trimEnd()}\n`, key, ca: options.caCert, minVersion: "TLSv1.3" }),
    disconnect: (node) => {
      for (const [p, n] of peers) if (n === node) p.close();
    },
    close: async () => {
      for (const p of peers.keys()) p.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** What a failed TLS handshake means, in a line (not OpenSSL's). */
function tlsRefusal(err: Error & { code?: string; reason?: string }): string {
  switch (err.code) {
    case "ERR_SSL_UNSUPPORTED_PROTOCOL":
      return "it speaks a TLS version older than 1.3, which this port refuses";
    case "ERR_SSL_HTTP_REQUEST":
    case "ERR_SSL_HTTPS_PROXY_REQUEST":
      return "it speaks plain HTTP, not TLS (the cluster port is for nodes; the API is elsewhere)";
    case "ERR_SSL_WRONG_VERSION_NUMBER":
    case "ERR_SSL_PACKET_LENGTH_TOO_LONG":
      return "it does not speak TLS";
    default:
      return `its TLS handshake failed (${err.reason ?? err.code ?? err.message.split(":").at(-2) ?? "unknown"})`;
  }
}
