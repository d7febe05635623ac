/** Fixture factories for scheduler tests (Nomad's mock.Node() / mock.Job()). */
import type { Ask, Demand, PlacedStar, SchedNode } from "../../src/scheduler/types.js";

export const GiB = 2 ** 30;

export function demand(cores: number, memoryGiB: number, extra: Partial<Demand> = {}): Demand {
  return { cpuMillis: Math.round(cores * 1000), memoryBytes: Math.round(memoryGiB * GiB), diskBytes: 0, pids: 0, ...extra };
}

export function mockNode(name: string, cores = 4, memoryGiB = 8, extra: Partial<SchedNode> = {}): SchedNode {
  return { name, capacity: { cpuMillis: cores * 1000, memoryBytes: memoryGiB * GiB }, attributes: { "node.name": name, ...(extra.attributes ?? {}) }, ...extra };
}

export function mockAsk(name: string, d: Demand = demand(0.5, 1), extra: Partial<Ask> = {}): Ask {
  return { name, namespace: "default", demand: d, priority: 50, strategy: "binpack", constraints: [], affinities: [], distinctHosts: false, ports: [], ...extra };
}

export function mockPlaced(name: string, node: string, d: Demand = demand(0.5, 1), extra: Partial<PlacedStar> = {}): PlacedStar {
  return { name, node, namespace: "default", demand: d, priority: 50, ...extra };
}
