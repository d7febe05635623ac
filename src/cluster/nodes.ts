/**
 * The controller's view of its nodes for the API (a NodeLink for the whole cluster): a star's
 * logs come from the node that runs it — this process's own agent, or a node on another
 * machine over its RNP connection (`node.logs`); its usage is what that node last sent
 * (`agent.usage`, each sample), shown while it is fresh.
 */
import type { NodeLink, PlacedStar, StarUsage, Usage } from "../model/agent-link.js";
import type { StarObserved } from "../model/records.js";
import type { LogLine, LogOptions } from "../model/status.js";
import type { RnpPeer } from "./rnp/peer.js";

/** Usage older than this is not shown (its node stopped sending). */
const FRESH_MS = 15_000;

export class ClusterNodes implements NodeLink {
  private readonly peers = new Map<string, RnpPeer>();
  private readonly usages = new Map<string, Map<string, StarUsage>>();

  constructor(
    /** This process's own node, asked directly. */
    private readonly local?: { name: string; link: NodeLink },
    /** Which node runs a star (default: the node its record is assigned to). */
    private readonly nodeOf: (star: PlacedStar) => string | undefined = (star) => star.node,
  ) {}

  /** A node's connection (its agent serves node.logs on it); forgotten when it closes. */
  attach(node: string, peer: RnpPeer): void {
    this.peers.set(node, peer);
    peer.once("close", () => {
      if (this.peers.get(node) === peer) {
        this.peers.delete(node);
        this.usages.delete(node);
      }
    });
  }

  /** A node's latest figures of its running stars. */
  setUsage(node: string, stars: StarUsage[]): void {
    this.usages.set(node, new Map(stars.map((s) => [s.name, s])));
  }

  logs(star: PlacedStar, options: LogOptions = {}): AsyncIterable<LogLine> {
    const node = this.nodeOf(star);
    if (node !== undefined && node === this.local?.name) return this.local.link.logs(star, options);
    const peer = node === undefined ? undefined : this.peers.get(node);
    if (!peer) return (async function* () {})(); // its node is not connected: nothing to show now
    const { signal, ...rest } = options;
    const body = { name: star.name, uid: star.uid, ...(rest.tail === undefined ? {} : { tail: rest.tail }), ...(rest.since === undefined ? {} : { since: rest.since }), follow: rest.follow === true };
    return (async function* () {
      try {
        for await (const line of peer.stream("node.logs", body, signal ? { signal } : {})) yield line as LogLine;
      } catch (err) {
        if (signal?.aborted) return; // the caller went: the follow is over, not failed
        throw err;
      }
    })();
  }

  usage(star: PlacedStar): Usage | undefined {
    const node = this.nodeOf(star);
    if (node !== undefined && node === this.local?.name) return this.local.link.usage(star);
    const u = node === undefined ? undefined : this.usages.get(node)?.get(star.name);
    if (!u || u.uid !== star.uid || Date.now() - u.at > FRESH_MS) return undefined;
    return { cpuPercent: u.cpuPercent, memoryBytes: u.memoryBytes, at: u.at };
  }

  unsentStatus(star: PlacedStar): StarObserved | undefined {
    // Only this process's own agent keeps reports here; a remote node keeps its own until its link is back.
    return this.local?.link.unsentStatus(star);
  }
}
