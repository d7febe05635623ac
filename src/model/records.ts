/**
 * What the constellation keeps in its store, under one prefix per kind (docs/api.md). The store
 * is the only truth: the controller writes desired state, agents write observed state, and
 * everything else is a cache rebuilt from a watch.
 *
 *   /constellation/stars/<name>    StarRecord: the spec as given, desired state, the node it is
 *                                  assigned to (written by the controller)
 *   /constellation/status/<name>   StarObserved: what the star's node reports (its agent)
 *   /constellation/events/<seq>    Event: every decision and state change, in order
 *   /constellation/nodes/<name>    NodeRecord: a node's agent, its capacity and runtime kinds
 *   /constellation/tokens/<hash>   TokenRecord: an API token's scope (by its SHA-256, never the token)
 *   /constellation/join-tokens/<id> JoinTokenRecord: a token to join the cluster (its secret's SHA-256)
 *   /constellation/certs/<serial>  CertRecord: a node certificate the cluster CA issued
 */
import type { NodeLimits, StarSpecInput } from "./spec.js";
import type { StarStatus } from "./status.js";
import type { DeploymentRef } from "./deployment.js";

export const PREFIX = "/constellation/";
export const KEYS = {
  stars: `${PREFIX}stars/`,
  status: `${PREFIX}status/`,
  events: `${PREFIX}events/`,
  nodes: `${PREFIX}nodes/`,
  tokens: `${PREFIX}tokens/`,
  /** Each star's tokens, by star name and token hash (the key alone: tokens.ts dropStarTokens). */
  starTokens: `${PREFIX}star-tokens/`,
  joinTokens: `${PREFIX}join-tokens/`,
  certs: `${PREFIX}certs/`,
  /** A node name taken by a join (made once, atomically: two joins under one name cannot both win). */
  nodeNames: `${PREFIX}node-names/`,
  /** A node cordoned by an operator (nothing new is placed there), or draining (its stars move away). */
  cordons: `${PREFIX}cordons/`,
  /** A node's liveness: a key on its lease (AgentService.heartbeat); gone when the lease expires. */
  alive: `${PREFIX}alive/`,
  eventSeq: `${PREFIX}meta/event-seq`,
  /** An HA cluster's CA (cert and key), shared by its controllers (server/ha.ts). */
  clusterCa: `${PREFIX}cluster/ca`,
  /** The controllers running now, each on a lease (ControllerRecord). */
  controllers: `${PREFIX}controllers/`,
  /** The controllers' elections (the control loops' leader). */
  elections: `${PREFIX}elections/`,
  /** The cluster's gossip keyring (GossipKeyring): made by init, rotated by `gossip key`. */
  gossipKeyring: `${PREFIX}gossip/keyring`,
  /** Artifacts: a star's bundled code by its SHA-256 (model/artifact.ts). */
  artifacts: `${PREFIX}artifacts/`,
  /** Chunks uploaded and not committed yet, by uploader (a namespace, or _cluster) and artifact. */
  artifactUploads: `${PREFIX}artifact-uploads/`,
  /** Deployments (DeploymentRecord, model/deployment.ts), by name. */
  deployments: `${PREFIX}deployments/`,
  /** A namespace's quota (QuotaRecord), by namespace. */
  quotas: `${PREFIX}quotas/`,
} as const;

/** The namespace of stars, deployments and tokens that name none. */
export const DEFAULT_NAMESPACE = "default";

/** The namespace a star is in. */
export function namespaceOf(record: { namespace?: string | undefined }): string {
  return record.namespace ?? DEFAULT_NAMESPACE;
}

/** A namespace as listed: what its stars hold (all as stars; those that should run for the rest) and its quota. */
export interface NamespaceView {
  name: string;
  used: { stars: number; cpu_cores: number; ram_mb: number; disk_mb: number };
  quota?: QuotaRecord;
}

/** What a namespace's stars may hold at most (absent: no cap): those that should run, and stars in all. */
export interface QuotaRecord {
  cpu_cores?: number;
  ram_mb?: number;
  disk_mb?: number;
  stars?: number;
}

/** A controller running now: where nodes connect to it, its HTTPS API, its gossip member. */
export interface ControllerRecord {
  node: string;
  /** The cluster port (host:port). */
  address: string;
  api?: string;
  gossip?: string;
}

/**
 * The keys that seal gossip packets (cluster/gossip/keyring.ts): `primary` seals, every one of
 * `keys` (the primary among them) opens. `version` grows with each change, so a node knows
 * whether the copy it keeps is the latest (its heartbeat's answer names the version).
 */
export interface GossipKeyring {
  version: number;
  primary: string;
  keys: string[];
}

export const starKey = (name: string) => `${KEYS.stars}${name}`;
export const statusKey = (name: string) => `${KEYS.status}${name}`;
export const nodeKey = (name: string) => `${KEYS.nodes}${name}`;
/** Events sort by key: a zero-padded sequence number. */
export const eventKey = (seq: number) => `${KEYS.events}${String(seq).padStart(16, "0")}`;

export type DesiredState = "running" | "stopped";

/** One star, exactly: its name and the uid of this creation (a star made again is another). */
export interface StarRef {
  name: string;
  uid: string;
}

export interface StarRecord {
  name: string;
  /** Unique per creation: a star removed and created again under its name is another star. */
  uid: string;
  /** The spec as the user gave it (validated), so it reads back as written. */
  spec: StarSpecInput;
  desired: DesiredState;
  /** The node that runs it (set by the controller's assignment loop). */
  node?: string;
  createdAt: number;
  /**
   * The star whose token created this one (absent: made by an admin). A star's token sees and
   * manages only its own star and its descendants; removing a star removes its descendants.
   */
  owner?: StarRef;
  /**
   * Not an admin's star although it has no owner: a star's child whose records were rebuilt from
   * its node (`up --adopt`), its owner unknown. Its script is read as a child's is.
   */
  untrusted?: true;
  /** Raised on every change of spec or desired state. */
  generation: number;
  /**
   * Being moved off a draining node, stopped first (an exclusive star: never two copies): the
   * node it was on. Once that copy has ended it is started elsewhere.
   */
  movingFrom?: string;
  /**
   * Placed nowhere yet, why (the scheduler's words: "3 nodes lack memory, 2 excluded by
   * constraint zone=a"), since when, and — when it was pushed aside for a star of higher
   * priority — by what.
   */
  pending?: { reason: string; since: number; preempted?: string };
  /** Its namespace (absent: "default"): who may see and touch it, and whose quota it counts against. */
  namespace?: string;
  /** The deployment that made it (model/deployment.ts), and from which template. */
  deployment?: DeploymentRef;
}

/** A node an operator cordoned (nothing new goes there), or drains (its stars move away too). */
export interface CordonRecord {
  at: number;
  drain: boolean;
  /** The node's certificates were revoked (`constellation nodes revoke`): it stays down. */
  revoked?: boolean;
}

/** What a star's agent reports. */
export interface StarObserved {
  uid: string;
  node: string;
  status: StarStatus;
  /** The generation of the record the agent acted on. */
  generation: number;
  updatedAt: number;
}

export interface NodeRecord {
  name: string;
  cpuCores: number;
  memoryBytes: number;
  runtimes: string[];
  /** False in dev mode: limits are not enforced on this node. */
  limitsEnforced: boolean;
  startedAt: number;
  /** Defaults and ceilings for stars, and how far memory may be promised (DEFAULT_NODE_LIMITS). */
  limits: NodeLimits;
  /** The node is short of something of its own (files, memory, processes): starts are put off. */
  degraded?: { reason: string; since: number };
  /** Where other machines reach it (its advertised address). */
  address?: string;
  /** The constellation version it runs. */
  version?: string;
  /** Labels its operator gave it (`init --label zone=a`), for placement constraints to come. */
  labels?: Record<string, string>;
}

/**
 * admin: everything. read: GET only (specs' env values hidden). star: a star's own token — its
 * own star and its descendants only (read, create children, start, stop, remove), no tokens.
 */
export type TokenScope = "admin" | "read" | "star";

export interface TokenRecord {
  scope: TokenScope;
  /** Who it is for ("admin", "star:<name>", ...). */
  name: string;
  createdAt: number;
  /** After this (ms since the epoch) the token is refused. */
  expiresAt?: number;
  /** The star a `star` token belongs to. */
  star?: StarRef;
  /** The one namespace it sees and touches (absent: every one, and the cluster itself). */
  namespace?: string;
}

/** A token as listed (never the token itself: its id is the first characters of its hash). */
export interface TokenInfo {
  id: string;
  scope: TokenScope;
  name: string;
  /** The star a star's token belongs to. */
  star?: string;
  namespace?: string;
  createdAt: number;
  expiresAt?: number;
}

/** The cluster at a glance (`constellation status`). */
export interface ClusterSummary {
  /**
   * Each node, "down" once it is dead to the controller: its lease expired (no heartbeat for its
   * TTL) and gossip says it is dead or left, or has no word of it (controller/liveness.ts).
   */
  nodes: Array<
    NodeRecord & {
      state?: "up" | "down";
      /** What the controller's gossip member says of the node, and since when (ms since the epoch). */
      gossip?: { state: "alive" | "suspect" | "dead" | "left"; since: number };
      /** Up, but its lease has lapsed (no heartbeat): dead once gossip agrees, or after 3 TTLs. */
      leaseExpired?: boolean;
      cordoned?: boolean;
      draining?: boolean;
      revoked?: boolean;
      /** What the stars placed there that should run take: their count, and their CPU and memory limits. */
      used?: { stars: number; cpuCores: number; memoryBytes: number };
    }
  >;
  stars: { total: number; byState: Record<string, number>; desiredRunning: number };
  capacity: { cpuCores: number; memoryBytes: number };
  /** A cluster's controllers: each one's node, where nodes join it, its HTTPS API, and whether it leads the loops. */
  controllers?: Array<{ node: string; address: string; api?: string; leads?: boolean }>;
  revision: number;
}

/** A token to join the cluster: who holds it may have one node certificate signed per use. */
export interface JoinTokenRecord {
  /** SHA-256 of the secret part, hex (never the secret). */
  secretHash: string;
  /** What a node joining with it becomes. */
  role: "agent" | "controller";
  createdAt: number;
  expiresAt: number;
  revokedAt?: number;
}

/** A node certificate the CA issued: what a connection's certificate is checked against. */
export interface CertRecord {
  node: string;
  role: "agent" | "controller";
  issuedAt: number;
  notAfter: number;
  /** The join token it was issued for (its id), if any. */
  joinToken?: string;
  /** The addresses in it (a renewal keeps them). */
  addresses?: string[];
  /** The certificate it was renewed from (its serial), if any. */
  renewedFrom?: string;
  /** The certificate that replaced it (its serial): its connections may renew again. */
  renewedTo?: string;
  revokedAt?: number;
}

/** Who is asking: a token's scope, its name, and for a star's token the star. */
export interface Principal {
  scope: TokenScope;
  name: string;
  star?: StarRef;
  /** The one namespace it sees and touches (a namespace's token, or a star's: its star's). */
  namespace?: string;
}

export type EventKind =
  | "star.created"
  | "star.assigned"
  | "star.moved"
  | "star.unplaced"
  | "star.preempted"
  | "deployment.created"
  | "deployment.updated"
  | "deployment.scaled"
  | "deployment.rollout"
  | "deployment.rollback"
  | "deployment.removed"
  | "node.cordoned"
  | "node.uncordoned"
  | "node.revoked"
  | "star.node-dead"
  | "star.start-requested"
  | "star.stop-requested"
  | "star.removed"
  | "star.state"
  | "star.start-failed"
  | "star.start-delayed"
  | "star.remove-failed"
  | "star.reattached"
  | "star.adopted"
  | "node.orphans-ended"
  | "node.up";

export interface Event {
  seq: number;
  at: number;
  kind: EventKind;
  star?: string;
  /** The deployment it is about. */
  deployment?: string;
  /** The uid of the star it is about: a star made again under the name is another star. */
  uid?: string;
  node?: string;
  message: string;
}

/** A star as the API shows it: its record and what its node reports. */
export interface StarView extends StarRecord {
  status?: StarStatus;
  /** The generation its node last acted on: equal to `generation` once the node has caught up. */
  observedGeneration?: number;
}

export function viewOf(record: StarRecord, observed?: StarObserved): StarView {
  // A report about an earlier star of the same name is not this star's.
  if (!observed || observed.uid !== record.uid) return { ...record };
  return { ...record, status: observed.status, observedGeneration: observed.generation };
}
