/**
 * The scheduler's vocabulary (issue 13): what it is given — a snapshot of nodes, the stars
 * placed on them and namespaces' quotas — and what it asks of each new star. Plain data only:
 * the controller builds these from the store, the scheduler returns placements (scheduler.ts).
 */
import type { Operator } from "../model/placement.js";

/** What a star takes of a node: CPU in thousandths of a core, memory and disk in bytes, processes. */
export interface Demand {
  cpuMillis: number;
  memoryBytes: number;
  diskBytes: number;
  pids: number;
}

/** A node as the scheduler sees it. */
export interface SchedNode {
  name: string;
  /** What stars may take of it in all (memory with its overcommit; disk and pids absent: unbounded). */
  capacity: { cpuMillis: number; memoryBytes: number; diskBytes?: number; pids?: number };
  /** Its labels and attributes, for constraints, affinities and spread (`node.name`, `node.version`, `zone`, ...). */
  attributes: Readonly<Record<string, string>>;
  /** Why it takes no new star, if it takes none (cordoned, draining, down). */
  closed?: "cordoned" | "draining" | "down";
  /** The runtimes it has (absent: any). */
  runtimes?: readonly string[];
}

/** A star already on a node (it holds what it takes there). */
export interface PlacedStar {
  name: string;
  node: string;
  namespace: string;
  demand: Demand;
  priority: number;
  /** Its deployment (for spread and distinct_hosts), if any. */
  group?: string;
  /** The fixed ports it holds on its node. */
  ports?: readonly number[];
  /** false: never evicted to make room, whatever its priority (a star run at most once). */
  preemptible?: boolean;
}


/** A node attribute the star requires: `{ attribute: "zone", operator: "=", value: "a" }`. */
export interface Constraint {
  attribute: string;
  operator: Operator;
  /** One value; a list for `in` and `not_in` (or a comma-separated string). */
  value: string | readonly string[];
}

/** A preference: nodes matching gain `weight` (−100..100; below 0 an anti-affinity). */
export interface Affinity extends Constraint {
  weight: number;
}

export type Strategy = "binpack" | "spread";

/** A star's priority when its spec names none. */
export const DEFAULT_PRIORITY = 50;

/** A star to place. */
export interface Ask {
  name: string;
  namespace: string;
  demand: Demand;
  /** 0..100 (default 50): a star may preempt stars of lower priority when nothing else fits. */
  priority: number;
  /** Its deployment, if any: spread and distinct_hosts count its siblings. */
  group?: string;
  /** binpack: the fullest node that fits (default); spread: the node (or label value) with fewest of its group. */
  strategy: Strategy;
  /** With spread: the attribute whose values are spread over (e.g. "zone"); absent: nodes. */
  spreadBy?: string;
  constraints: readonly Constraint[];
  affinities: readonly Affinity[];
  /** No two of its group on one node. */
  distinctHosts: boolean;
  /** Fixed ports it needs free on its node. */
  ports: readonly number[];
  /** The runtime it runs in (a node must have it). */
  runtime?: string;
  /** false: it pushes nothing aside even if its priority would let it (default true). */
  mayPreempt?: boolean;
}

/** A namespace's caps (absent fields: no cap). */
export interface Quota {
  cpuMillis?: number;
  memoryBytes?: number;
  diskBytes?: number;
  stars?: number;
}

export interface Snapshot {
  nodes: readonly SchedNode[];
  placed: readonly PlacedStar[];
  quotas?: Readonly<Record<string, Quota>>;
}

/** Where a star goes (and which stars of lower priority make room there), or why it goes nowhere. */
export type Placement =
  | { star: string; node: string; preempts?: string[] }
  | { star: string; node?: undefined; reason: string; filtered: Readonly<Record<string, number>> };
