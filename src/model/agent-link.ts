/**
 * What an agent asks of its controller, and all it asks (issue 11: agents talk only to
 * controllers, never to the store; a node holds no store credentials). The controller's side
 * is `controller/agent-service.ts`, over the store; an agent in the controller's process (`up`)
 * calls it directly, an agent on another machine over RNP (`cluster/agent-client.ts`). Every
 * call is about the calling node: the controller knows which node asks (over RNP, from its
 * certificate) and refuses a node's word on another node's stars.
 */
import type { EventKind, GossipKeyring, NodeRecord, StarObserved, StarRecord, StarRef } from "./records.js";
import type { LogLine, LogOptions } from "./status.js";

/** One change to a node's assignments. */
export type AssignmentChange =
  /** A star assigned to this node, new or changed. */
  | { name: string; record: StarRecord }
  /** A star no longer this node's: removed (`deleted`), or assigned elsewhere. */
  | { name: string; record?: undefined; deleted: boolean };

export interface AssignmentBatch {
  /** The store revision of these changes: a watch resumes after it. */
  revision: number;
  changes: AssignmentChange[];
}

/** The watch could not resume from the revision asked (history compacted): list again. */
export class AssignmentsCompactedError extends Error {
  constructor(readonly revision: number) {
    super(`assignments from revision ${revision} are no longer kept: list them again`);
  }
}

/** One chunk of an artifact, and the artifact's size in chunks and bytes. */
export interface ArtifactChunk {
  data: Uint8Array;
  chunks: number;
  size: number;
}

export interface AgentLink {
  /** This node's latest reports, by star name (how a restarted agent takes its stars back). */
  reports(): Promise<Map<string, StarObserved>>;
  /** The stars assigned to this node, and the revision they were read at. */
  assignments(): Promise<{ records: StarRecord[]; revision: number }>;
  /**
   * Changes to this node's assignments after `fromRevision`, in order, until `signal` aborts.
   * Throws AssignmentsCompactedError when that history is gone, any other error when the link
   * fails (the agent keeps its stars running and asks again). `held`: the stars the node has
   * (assigned or running); of other stars' changes it hears only of those (a star moved away or
   * removed), so a node learns no names of stars that are not its own. Absent: none.
   */
  watchAssignments(fromRevision: number, signal: AbortSignal, held?: Iterable<string>): AsyncIterable<AssignmentBatch>;
  /** This node's record: capacity, runtimes, limits, degraded state. */
  putNode(node: NodeRecord): Promise<void>;
  /** This node's report of one of its stars. */
  report(name: string, observed: StarObserved): Promise<void>;
  /** This node's latest report of a star, if it is this node's. */
  lastReport(name: string): Promise<StarObserved | undefined>;
  /** Deletes this node's report of a star if it is of star `uid` ("": of any star of the name). */
  dropReport(name: string, uid: string): Promise<void>;
  /** An event, written by this node. */
  event(kind: EventKind, message: string, about: { star?: string; uid?: string }): Promise<void>;
  /**
   * A new token for a star's own SDK calls, known by the star's name and uid (stops working
   * when that star is removed). The star's earlier tokens are dropped unless `keepOld`.
   */
  starToken(star: StarRef, options?: { keepOld?: boolean }): Promise<string>;
  /** Drops every token of star `name`. */
  dropStarTokens(name: string): Promise<void>;
  /**
   * Chunk `index` of the uploaded code (its spec's `artifact`) of a star of this node, with how
   * many chunks and bytes it has in all; the node checks the whole against the hash.
   */
  artifactChunk?(star: StarRef, index: number): Promise<ArtifactChunk>;
  /**
   * The node's latest CPU and memory figures of its running stars (each sample). Absent where
   * the controller reads the agent directly (in one process).
   */
  usage?(stars: StarUsage[]): Promise<void>;
  /**
   * The node is alive: renews its lease with the controller (made at the first call). A node
   * whose lease expires is dead to the controller. Answers the lease's TTL: call again well
   * within it (a third of it). `gossipKeys`: the cluster's gossip keyring version (a node whose
   * copy is older asks for it: `gossipKeys()`); `controllers`: the cluster addresses of the
   * controllers running now (an HA cluster's: where the node fails over to).
   */
  heartbeat?(): Promise<{ ttlMs: number; gossipKeys?: number; controllers?: string[] }>;
  /** The cluster's gossip keyring (a node's copy of it seals its gossip). */
  gossipKeys?(): Promise<GossipKeyring>;
}

/** One star's usage as its node sampled it. */
export interface StarUsage extends Usage {
  name: string;
  uid: string;
}

/**
 * What the controller (its API) asks a node about its stars besides their desired state, about
 * one star exactly (its uid: never an earlier star of its name).
 */
/** A star and, when known, the node it is assigned to (the controller's record says). */
export type PlacedStar = StarRef & { node?: string | undefined };

export interface NodeLink {
  logs(star: PlacedStar, options?: LogOptions): AsyncIterable<LogLine>;
  usage(star: PlacedStar): Usage | undefined;
  /** The node's latest report of the star, while the store has not taken it (a full disk). */
  unsentStatus(star: PlacedStar): StarObserved | undefined;
}

export interface Usage {
  cpuPercent: number;
  memoryBytes: number;
  at: number;
}

