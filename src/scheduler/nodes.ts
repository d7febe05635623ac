/** The model's nodes as the scheduler sees them (pure: records in, scheduler nodes out). */
import type { NodeRecord } from "../model/records.js";
import type { SchedNode } from "./types.js";

/**
 * A node's capacity for stars (memory with its overcommit) and its attributes: its labels, and
 * `node.name`, `node.version` for constraints such as `{ attribute: "node.version", operator: "version", value: ">=0.2" }`.
 */
export function schedNodeOf(n: NodeRecord, closed?: SchedNode["closed"]): SchedNode {
  return {
    name: n.name,
    capacity: { cpuMillis: Math.round(n.cpuCores * 1000), memoryBytes: Math.floor(n.memoryBytes * (n.limits?.memoryOvercommit ?? 1)) },
    attributes: { ...n.labels, "node.name": n.name, ...(n.version ? { "node.version": n.version } : {}) },
    runtimes: n.runtimes,
    ...(closed ? { closed } : {}),
  };
}
