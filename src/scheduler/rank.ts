/**
 * Ranking the nodes that can take a star (Nomad's rank.go): best-fit for binpack, fewest of
 * its group for spread, and affinities on top. Each score is plain arithmetic on the node's
 * state after the star would be placed there.
 */
import type { CompiledAsk } from "./feasible.js";
import type { NodeState } from "./state.js";

/**
 * Best fit (Nomad's ScoreFitBinPack): 20 − (10^free_cpu + 10^free_memory), the free fractions
 * as they would be with the star placed, scaled to 0..1 — 1 for a node the star fills, 0 for
 * one it leaves empty. Both dimensions count, so a node full of memory and idle of cpu is not
 * taken for full.
 */
export function binpackScore(n: NodeState, c: CompiledAsk): number {
  const cap = n.node.capacity;
  const d = c.ask.demand;
  const freeCpu = cap.cpuMillis > 0 ? Math.max(0, 1 - (n.used.cpuMillis + d.cpuMillis) / cap.cpuMillis) : 0;
  const freeMemory = cap.memoryBytes > 0 ? Math.max(0, 1 - (n.used.memoryBytes + d.memoryBytes) / cap.memoryBytes) : 0;
  return (20 - (10 ** freeCpu + 10 ** freeMemory)) / 18;
}

/** The affinities the node matches: their weights' sum over the sum of their sizes, −1..1 (0: none asked). */
export function affinityScore(n: NodeState, c: CompiledAsk): number {
  if (c.affinities.length === 0) return 0;
  let sum = 0;
  let total = 0;
  for (const a of c.affinities) {
    total += Math.abs(a.weight);
    if (a.check.test(n.node.attributes)) sum += a.weight;
  }
  return total === 0 ? 0 : sum / total;
}
