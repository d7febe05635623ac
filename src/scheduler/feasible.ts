/**
 * Feasibility: whether a node can take a star at all, as a chain of checks each with one job,
 * cheapest and most telling first (Nomad's feasible.go). The first check a node fails is the
 * reason it was passed over; a star placed nowhere says how many nodes each reason took out:
 * "3 nodes lack memory, 2 excluded by constraint zone=a".
 *
 *   closed (cordoned, draining, down) → runtime → constraints → distinct_hosts → ports → resources
 */
import { type Check, compileConstraint } from "./constraints.js";
import type { NodeState } from "./state.js";
import type { Ask } from "./types.js";

/** Why a node was passed over, and how a count of such nodes reads. */
export interface Filter {
  key: string;
  /** Whether making room (preempting lower-priority stars) could lift it. */
  resources?: boolean;
  phrase(count: number): string;
}

const nodes = (n: number) => `${n} node${n === 1 ? "" : "s"}`;
const verb = (n: number, one: string, many: string) => (n === 1 ? one : many);

const CLOSED: Record<"cordoned" | "draining" | "down", Filter> = {
  cordoned: { key: "cordoned", phrase: (n) => `${nodes(n)} cordoned` },
  draining: { key: "draining", phrase: (n) => `${nodes(n)} draining` },
  down: { key: "down", phrase: (n) => `${nodes(n)} down` },
};
const LACK = (what: string): Filter => ({ key: `lack ${what}`, resources: true, phrase: (n) => `${nodes(n)} ${verb(n, "lacks", "lack")} ${what}` });
const CPU = LACK("cpu");
const MEMORY = LACK("memory");
const DISK = LACK("disk");
const PIDS = LACK("pids");

/** A star's checks, compiled once. */
export interface CompiledAsk {
  ask: Ask;
  constraints: Array<{ check: Check; filter: Filter }>;
  affinities: Array<{ check: Check; weight: number }>;
  runtime?: Filter;
  distinct?: Filter;
  ports: Array<{ port: number; filter: Filter }>;
}

export function compileAsk(ask: Ask): CompiledAsk {
  return {
    ask,
    constraints: ask.constraints.map((c) => {
      const check = compileConstraint(c);
      return { check, filter: { key: `constraint ${check.label}`, phrase: (n) => `${nodes(n)} excluded by constraint ${check.label}` } };
    }),
    affinities: ask.affinities.map((a) => ({ check: compileConstraint(a, "affinities"), weight: a.weight })),
    ...(ask.runtime ? { runtime: { key: `runtime ${ask.runtime}`, phrase: (n) => `${nodes(n)} without the ${ask.runtime} runtime` } } : {}),
    ...(ask.distinctHosts && ask.group !== undefined ? { distinct: { key: "distinct_hosts", phrase: (n) => `${nodes(n)} already ${verb(n, "runs", "run")} one of ${ask.group} (distinct_hosts)` } } : {}),
    ports: ask.ports.map((port) => ({ port, filter: { key: `port ${port}`, phrase: (n) => `${nodes(n)} with port ${port} taken` } })),
  };
}

/** The checks that do not depend on what the node holds of resources (a star placed there does not change them, but for ports and groups). */
export function placementFilter(n: NodeState, c: CompiledAsk): Filter | undefined {
  const node = n.node;
  if (node.closed) return CLOSED[node.closed];
  if (c.runtime && node.runtimes && !node.runtimes.includes(c.ask.runtime!)) return c.runtime;
  for (const k of c.constraints) if (!k.check.test(node.attributes)) return k.filter;
  if (c.distinct && (n.groups.get(c.ask.group!) ?? 0) > 0) return c.distinct;
  for (const p of c.ports) if (n.ports.has(p.port)) return p.filter;
  return undefined;
}

/** Whether the node has room for the demand (with `freed` taken off what it holds, for preemption). */
export function resourceFilter(n: NodeState, c: CompiledAsk, freed?: { cpuMillis: number; memoryBytes: number; diskBytes: number; pids: number }): Filter | undefined {
  const cap = n.node.capacity;
  const d = c.ask.demand;
  const f = freed ?? ZERO;
  if (n.used.cpuMillis - f.cpuMillis + d.cpuMillis > cap.cpuMillis) return CPU;
  if (n.used.memoryBytes - f.memoryBytes + d.memoryBytes > cap.memoryBytes) return MEMORY;
  if (cap.diskBytes !== undefined && n.used.diskBytes - f.diskBytes + d.diskBytes > cap.diskBytes) return DISK;
  if (cap.pids !== undefined && n.used.pids - f.pids + d.pids > cap.pids) return PIDS;
  return undefined;
}

const ZERO = { cpuMillis: 0, memoryBytes: 0, diskBytes: 0, pids: 0 };

/** The first check the node fails, if any. */
export function feasible(n: NodeState, c: CompiledAsk): Filter | undefined {
  return placementFilter(n, c) ?? resourceFilter(n, c);
}

/** "3 nodes lack memory, 2 excluded by constraint zone=a" (most first). */
export function explain(counts: ReadonlyMap<Filter, number>): string {
  return [...counts]
    .sort((a, b) => b[1] - a[1] || a[0].key.localeCompare(b[0].key))
    .map(([f, n]) => f.phrase(n))
    .join(", ");
}
