/**
 * The controller's side of the agent link (model/agent-link.ts), for one node: everything a
 * node's agent reads and writes, done over the store by the controller on the node's behalf,
 * and only about that node (its assignments, its reports, its events, its stars' tokens).
 */
import type { AgentLink, ArtifactChunk, AssignmentBatch, AssignmentChange, StarUsage } from "../model/agent-link.js";
import { AssignmentsCompactedError } from "../model/agent-link.js";
import { type EventKind, type GossipKeyring, KEYS, type NodeRecord, type StarObserved, type StarRecord, type StarRef, nodeKey, starKey, statusKey } from "../model/records.js";
import { CompactedError, LeaseNotFoundError, NoSuchArtifactError, NoSuchStarError } from "../model/errors.js";
import { artifactHex } from "../model/artifact.js";
import { Artifacts } from "./artifacts.js";
import type { Store } from "../store/types.js";
import { EventLog } from "./events.js";
import { dropStarTokens, newToken, saveToken } from "./tokens.js";

/** What a controller tells its nodes of the cluster beside their leases (AgentService). */
export interface ClusterFacts {
  /** The gossip keyring's version (a node with an older copy asks for it). */
  version(): number | undefined;
  keyring(): Promise<GossipKeyring>;
  /** The controllers' cluster addresses (host:port), where a node may connect. */
  controllers?(): string[];
}

/** A node is dead this long after its last heartbeat (the ceiling: 10 s). */
export const NODE_TTL_S = 10;

export class AgentService implements AgentLink {
  private readonly events: EventLog;

  constructor(
    private readonly store: Store,
    /** The node this service speaks for (over RNP: the name in its certificate). */
    readonly node: string,
    /** Where the node's usage figures go (the controller's ClusterNodes); absent: not kept. */
    private readonly onUsage?: (stars: StarUsage[]) => void,
    /** The node's lease TTL: it is dead this long after its last heartbeat. */
    private readonly ttlSeconds = NODE_TTL_S,
    /**
     * What each heartbeat's answer tells a node of its cluster: the gossip keyring's version (the
     * keyring itself given when asked) and the controllers running now (where to fail over).
     */
    private readonly gossip?: ClusterFacts,
  ) {
    this.events = new EventLog(store, `node-${node}`);
  }

  async reports(): Promise<Map<string, StarObserved>> {
    const { kvs } = await this.store.range({ prefix: KEYS.status });
    const out = new Map<string, StarObserved>();
    for (const kv of kvs) {
      const o = JSON.parse(kv.value) as StarObserved;
      if (o.node === this.node) out.set(kv.key.slice(KEYS.status.length), o);
    }
    return out;
  }

  async assignments(): Promise<{ records: StarRecord[]; revision: number }> {
    const { kvs, revision } = await this.store.range({ prefix: KEYS.stars });
    const records = kvs.map((kv) => JSON.parse(kv.value) as StarRecord).filter((r) => r.node === this.node);
    return { records, revision };
  }

  async *watchAssignments(fromRevision: number, signal: AbortSignal, _held?: Iterable<string>): AsyncIterable<AssignmentBatch> {
    // A node hears of stars assigned to it, and of a change that takes one of its stars away
    // (moved, removed): one whose value before the change was assigned to it. Of other stars it
    // hears nothing, whatever names it says it holds (`_held`, the protocol's, is not trusted): it
    // cannot learn by guessing that a star of some name exists.
    const watch = this.store.watch({ prefix: KEYS.stars }, { fromRevision, prevKv: true });
    const onAbort = () => watch.close();
    signal.addEventListener("abort", onAbort);
    try {
      for await (const batch of watch) {
        const changes: AssignmentChange[] = [];
        for (const e of batch.events) {
          const name = e.kv.key.slice(KEYS.stars.length);
          const record = e.type === "put" ? (JSON.parse(e.kv.value) as StarRecord) : undefined;
          if (record?.node === this.node) {
            changes.push({ name, record });
            continue;
          }
          if (e.type === "put" && e.kv.version === 1) continue; // made now: no value before it
          // The value before the change is gone from history (etcd: compacted meanwhile): never
          // guess from the node's word; it reads all its assignments again.
          if (!e.prevKv) throw new AssignmentsCompactedError(fromRevision);
          if ((JSON.parse(e.prevKv.value) as StarRecord).node === this.node) changes.push({ name, deleted: e.type === "delete" });
        }
        yield { revision: batch.revision, changes };
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof CompactedError) throw new AssignmentsCompactedError(fromRevision);
      throw err;
    } finally {
      signal.removeEventListener("abort", onAbort);
      watch.close();
    }
  }

  async putNode(node: NodeRecord): Promise<void> {
    if (node.name !== this.node) throw new Error(`node ${this.node} may not write the record of node ${node.name}`);
    await this.store.put(nodeKey(node.name), JSON.stringify(node));
  }

  async report(name: string, observed: StarObserved): Promise<void> {
    if (observed.node !== this.node) throw new Error(`node ${this.node} may not report for node ${observed.node}`);
    // Only of a star assigned here, or one whose latest report is this node's (a star it still
    // holds after it was removed): never over another node's star.
    const [recordKv, reportKv] = await Promise.all([this.store.get(starKey(name)), this.store.get(statusKey(name))]);
    const record = recordKv ? (JSON.parse(recordKv.value) as StarRecord) : undefined;
    const last = reportKv ? (JSON.parse(reportKv.value) as StarObserved) : undefined;
    if (record?.node !== this.node && last?.node !== this.node) throw new Error(`node ${this.node} may not report on star ${name}: it is not this node's`);
    await this.store.put(statusKey(name), JSON.stringify(observed));
  }

  async lastReport(name: string): Promise<StarObserved | undefined> {
    const kv = await this.store.get(statusKey(name));
    const o = kv ? (JSON.parse(kv.value) as StarObserved) : undefined;
    return o?.node === this.node ? o : undefined;
  }

  async dropReport(name: string, uid: string): Promise<void> {
    const kv = await this.store.get(statusKey(name));
    if (!kv) return;
    const o = JSON.parse(kv.value) as StarObserved;
    if (o.node !== this.node || (o.uid !== uid && uid !== "")) return;
    await this.store.txn({
      compare: [{ key: kv.key, target: "modRevision", op: "=", value: kv.modRevision }],
      success: [{ type: "delete", range: { key: kv.key } }],
    });
  }

  async event(kind: EventKind, message: string, about: { star?: string; uid?: string } = {}): Promise<void> {
    if (about.star !== undefined) {
      // About a star of this node only (as report): no node writes another node's star's story.
      const [recordKv, reportKv] = await Promise.all([this.store.get(starKey(about.star)), this.store.get(statusKey(about.star))]);
      const record = recordKv ? (JSON.parse(recordKv.value) as StarRecord) : undefined;
      const last = reportKv ? (JSON.parse(reportKv.value) as StarObserved) : undefined;
      if (record?.node !== this.node && last?.node !== this.node) throw new Error(`node ${this.node} may not record events of star ${about.star}: it is not this node's`);
    }
    await this.events.record(kind, message, { ...about, node: this.node });
  }

  async starToken(star: StarRef, options: { keepOld?: boolean } = {}): Promise<string> {
    // Only for a star of this node: a node cannot get a token of another node's star.
    const kv = await this.store.get(starKey(star.name));
    const record = kv ? (JSON.parse(kv.value) as StarRecord) : undefined;
    if (!record || record.uid !== star.uid || record.node !== this.node) throw new NoSuchStarError(star.name);
    if (!options.keepOld) await dropStarTokens(this.store, star.name);
    const token = newToken();
    // The token knows its star by name and uid: it stops working when this star is removed, and
    // a star made again under the name is not this one.
    await saveToken(this.store, token, "star", `star:${star.name}`, { star: { name: star.name, uid: star.uid } });
    return token;
  }

  async artifactChunk(star: StarRef, index: number): Promise<ArtifactChunk> {
    // Only the code of a star of this node: a node reads no other's.
    const kv = await this.store.get(starKey(star.name));
    const record = kv ? (JSON.parse(kv.value) as StarRecord) : undefined;
    const id = (record?.spec as { artifact?: unknown } | undefined)?.artifact;
    if (!record || record.uid !== star.uid || record.node !== this.node || typeof id !== "string") throw new NoSuchStarError(star.name);
    const hex = artifactHex(id)!;
    const artifacts = new Artifacts(this.store);
    const a = await artifacts.get(hex);
    if (!a) throw new NoSuchArtifactError(hex);
    return { data: await artifacts.chunk(hex, index), chunks: a.chunks, size: a.size };
  }

  /** The node's lease, once its first heartbeat made it. */
  private lease: string | undefined;

  async heartbeat(): Promise<{ ttlMs: number; gossipKeys?: number; controllers?: string[] }> {
    const version = this.gossip?.version();
    const controllers = this.gossip?.controllers?.();
    const answer = { ttlMs: this.ttlSeconds * 1000, ...(version === undefined ? {} : { gossipKeys: version }), ...(controllers && controllers.length > 0 ? { controllers } : {}) };
    if (this.lease !== undefined) {
      try {
        await this.store.keepAliveOnce(this.lease);
        return answer;
      } catch (err) {
        if (!(err instanceof LeaseNotFoundError)) throw err;
        this.lease = undefined; // expired meanwhile (the node was dead for a while): a new one
      }
    }
    const { id } = await this.store.grantLease(this.ttlSeconds);
    // The key moves to the new lease (an older one, of an earlier connection, expires alone).
    await this.store.put(`${KEYS.alive}${this.node}`, JSON.stringify({ node: this.node, since: Date.now() }), { lease: id });
    this.lease = id;
    return answer;
  }

  async gossipKeys(): Promise<GossipKeyring> {
    if (!this.gossip) throw new Error("this controller runs no gossip");
    return this.gossip.keyring();
  }

  async usage(stars: StarUsage[]): Promise<void> {
    this.onUsage?.(stars);
  }

  async dropStarTokens(name: string): Promise<void> {
    const kv = await this.store.get(starKey(name));
    const record = kv ? (JSON.parse(kv.value) as StarRecord) : undefined;
    if (record && record.node !== this.node) throw new Error(`node ${this.node} may not drop the tokens of star ${name}: it is not this node's`);
    await dropStarTokens(this.store, name);
  }
}
