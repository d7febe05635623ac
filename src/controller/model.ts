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
 */
import type { StarSpecInput } from "../runtime/spec.js";
import type { StarStatus } from "../runtime/types.js";

export const PREFIX = "/constellation/";
export const KEYS = {
  stars: `${PREFIX}stars/`,
  status: `${PREFIX}status/`,
  events: `${PREFIX}events/`,
  nodes: `${PREFIX}nodes/`,
  tokens: `${PREFIX}tokens/`,
  eventSeq: `${PREFIX}meta/event-seq`,
} as const;

export const starKey = (name: string) => `${KEYS.stars}${name}`;
export const statusKey = (name: string) => `${KEYS.status}${name}`;
export const nodeKey = (name: string) => `${KEYS.nodes}${name}`;
/** Events sort by key: a zero-padded sequence number. */
export const eventKey = (seq: number) => `${KEYS.events}${String(seq).padStart(16, "0")}`;

export type DesiredState = "running" | "stopped";

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
  /** Raised on every change of spec or desired state. */
  generation: number;
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
}

/**
 * admin: everything. read: GET only. star: what a star's own token may do — read, and create,
 * start, stop and remove stars (a star that fans work out), but not make tokens.
 */
export type TokenScope = "admin" | "read" | "star";

export interface TokenRecord {
  scope: TokenScope;
  /** Who it is for ("admin", "star:<name>", ...). */
  name: string;
  createdAt: number;
}

export type EventKind =
  | "star.created"
  | "star.assigned"
  | "star.start-requested"
  | "star.stop-requested"
  | "star.removed"
  | "star.state"
  | "star.start-failed"
  | "star.remove-failed"
  | "node.up";

export interface Event {
  seq: number;
  at: number;
  kind: EventKind;
  star?: string;
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
