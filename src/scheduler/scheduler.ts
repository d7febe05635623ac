/**
 * The scheduler (issue 13): a snapshot of nodes, the stars on them and namespaces' quotas in,
 * placements out. Pure: no I/O, no clock, no randomness — one snapshot and one list of stars
 * give one answer. The controller builds the snapshot from the store and writes the answer back.
 *
 *   for each star (higher priority first):
 *     quota ─▶ candidates (feasible.ts: closed → runtime → constraints → distinct_hosts → ports → resources)
 *           ─▶ rank (rank.ts: binpack best-fit | spread by group count, + affinities) ─▶ the best
 *     none feasible ─▶ preemption: the node where evicting the fewest, lowest-priority stars
 *                      makes room (only stars of lower priority) ─▶ or pending, with why
 *
 * Candidates, as Nomad's limit iterator: binpack looks at the nodes that run stars first, then
 * the empty ones, each time from a place given by the star's name (so stars do not all crowd
 * the same first nodes), until `limit` feasible ones are found, and takes the fullest; with
 * affinities every node is looked at. Spread looks at the nodes that
 * run fewest of its group first (kept by count, state.ts), and takes one of those, so a group's
 * counts stay within one of each other over equal nodes. A star placed nowhere has had every
 * node looked at, so its reason counts every node.
 */
import { InvalidArgumentError } from "../model/errors.js";
import { type CompiledAsk, type Filter, compileAsk, explain, feasible, placementFilter, resourceFilter } from "./feasible.js";
import { quotaProblem } from "./quota.js";
import { affinityScore, binpackScore } from "./rank.js";
import { ALL, ClusterState, type NodeState } from "./state.js";
import type { Ask, Demand, Placement, PlacedStar, Quota, Snapshot } from "./types.js";

export interface ScheduleOptions {
  /** Feasible nodes looked at for a binpack star (default: max(4, log2 of the node count)). */
  limit?: number;
}

/** Places `asks` on the snapshot; the answers in the asks' order. */
export function schedule(snapshot: Snapshot, asks: readonly Ask[], options: ScheduleOptions = {}): Placement[] {
  const s = new Scheduler(snapshot, options);
  const order = asks.map((a, i) => i).sort((a, b) => asks[b]!.priority - asks[a]!.priority || a - b);
  const out = new Array<Placement>(asks.length);
  for (const i of order) out[i] = s.place(asks[i]!);
  return out;
}

/** One pass of placements over a snapshot, each seeing the ones before it. */
export class Scheduler {
  private readonly state: ClusterState;
  private readonly limit: number;
  private readonly quotas: Readonly<Record<string, Quota>>;

  constructor(snapshot: Snapshot, options: ScheduleOptions = {}) {
    this.state = new ClusterState(snapshot);
    this.limit = options.limit ?? Math.max(4, Math.ceil(Math.log2(Math.max(2, snapshot.nodes.length))));
    this.quotas = snapshot.quotas ?? {};
  }

  /** Takes a placed star out (it is about to be placed again elsewhere, or holds nothing: stopped). */
  remove(name: string): void {
    this.state.remove(name);
  }

  place(ask: Ask): Placement {
    checkDemand(ask.demand, ask.priority);
    // Placed already (asked again): it leaves where it was first, holding nothing twice.
    this.state.remove(ask.name);
    const overQuota = this.quotaReason(ask);
    if (overQuota) return { star: ask.name, reason: overQuota, filtered: {} };
    const c = compileAsk(ask);
    const counts = new Map<Filter, number>();
    const candidates = ask.strategy === "spread" ? this.spreadCandidates(c, counts) : this.binpackCandidates(c, counts);
    let best: NodeState | undefined;
    let bestScore = -Infinity;
    for (const n of candidates) {
      // Spread: fewest of its group first (candidates are all of the lowest count), then the emptiest.
      const score = affinityScore(n, c) + (ask.strategy === "spread" ? 1 - binpackScore(n, c) : binpackScore(n, c));
      if (score > bestScore) {
        best = n;
        bestScore = score;
      }
    }
    if (best) {
      this.state.add(best, placed(ask, best.node.name));
      return { star: ask.name, node: best.node.name };
    }
    const preempted = ask.mayPreempt !== false && ask.priority > this.state.lowestPriority() && [...counts.keys()].some((f) => f.resources) ? this.preempt(c) : undefined;
    if (preempted) return preempted;
    const filtered = Object.fromEntries([...counts].map(([f, n]) => [f.key, n]));
    const reason = this.state.nodes.length === 0 ? "there are no nodes: add one (constellation join)" : explain(counts);
    return { star: ask.name, reason, filtered };
  }

  private binpackCandidates(c: CompiledAsk, counts: Map<Filter, number>): NodeState[] {
    const { nodes, occupied, occupiedAt } = this.state;
    const limit = c.affinities.length > 0 ? Infinity : this.limit;
    const out: NodeState[] = [];
    const h = hash(c.ask.name);
    const look = (n: NodeState) => {
      const f = feasible(n, c);
      if (f) counts.set(f, (counts.get(f) ?? 0) + 1);
      else out.push(n);
    };
    // Nodes that run stars first (best fit is among them), then the empty ones; each looked at once.
    for (let i = 0, k = occupied.length; i < k && out.length < limit; i++) look(nodes[occupied[(h + i) % k]!]!);
    for (let i = 0, k = nodes.length; i < k && out.length < limit; i++) {
      const j = (h + i) % k;
      if (occupiedAt[j] === -1) look(nodes[j]!);
    }
    return out;
  }

  private spreadCandidates(c: CompiledAsk, counts: Map<Filter, number>): NodeState[] {
    const group = c.ask.group ?? ALL;
    if (c.ask.spreadBy !== undefined) return this.labelSpreadCandidates(c, group, counts);
    const { levels, lowest } = this.state.levelsOf(group);
    const limit = c.affinities.length > 0 ? Infinity : this.limit;
    for (let k = lowest; k < levels.length; k++) {
      const level = levels[k]!;
      const out: NodeState[] = [];
      for (const i of level) {
        const n = this.state.nodes[i]!;
        const f = feasible(n, c);
        if (f) counts.set(f, (counts.get(f) ?? 0) + 1);
        else if (out.push(n) >= limit) break;
      }
      if (out.length > 0) return out;
    }
    return [];
  }

  /** Spread over a label's values: the nodes of the value whose nodes run fewest of the group. */
  private labelSpreadCandidates(c: CompiledAsk, group: string, counts: Map<Filter, number>): NodeState[] {
    const attr = c.ask.spreadBy!;
    const byValue = new Map<string, { count: number; nodes: NodeState[] }>();
    for (const n of this.state.nodes) {
      const v = n.node.attributes[attr] ?? "";
      const e = byValue.get(v) ?? { count: 0, nodes: [] };
      e.count += n.groups.get(group) ?? 0;
      e.nodes.push(n);
      byValue.set(v, e);
    }
    // Values in order of fewest (nodes without the label last), then by name.
    const values = [...byValue].sort((a, b) => Number(a[0] === "") - Number(b[0] === "") || a[1].count - b[1].count || a[0].localeCompare(b[0]));
    for (const [, e] of values) {
      const out: NodeState[] = [];
      let fewest = Infinity;
      for (const n of e.nodes) {
        const f = feasible(n, c);
        if (f) {
          counts.set(f, (counts.get(f) ?? 0) + 1);
          continue;
        }
        // Within the value, the nodes that run fewest of the group.
        const k = n.groups.get(group) ?? 0;
        if (k < fewest) {
          fewest = k;
          out.length = 0;
        }
        if (k === fewest) out.push(n);
      }
      if (out.length > 0) return out;
    }
    return [];
  }

  /**
   * Room made by evicting stars of lower priority: on each node that fails only for resources,
   * the lowest-priority stars first (the largest first among equals) until the star fits; the
   * node that costs least (lowest highest-priority evicted, then fewest evicted) is taken.
   */
  private preempt(c: CompiledAsk): Placement | undefined {
    const ask = c.ask;
    let best: { n: NodeState; evict: PlacedStar[]; cost: [number, number] } | undefined;
    for (const n of this.state.nodes) {
      if (placementFilter(n, c) || !resourceFilter(n, c)) continue;
      const lower = [...n.stars.values()].filter((s) => s.priority < ask.priority && s.preemptible !== false).sort((a, b) => a.priority - b.priority || b.demand.memoryBytes - a.demand.memoryBytes || a.name.localeCompare(b.name));
      const freed = { cpuMillis: 0, memoryBytes: 0, diskBytes: 0, pids: 0 };
      const evict: PlacedStar[] = [];
      for (const s of lower) {
        evict.push(s);
        freed.cpuMillis += s.demand.cpuMillis;
        freed.memoryBytes += s.demand.memoryBytes;
        freed.diskBytes += s.demand.diskBytes;
        freed.pids += s.demand.pids;
        if (!resourceFilter(n, c, freed)) break;
      }
      if (resourceFilter(n, c, freed)) continue;
      // Then back what was not needed, the highest priority first (a small star evicted on the
      // way to a big one that alone makes room is kept).
      for (const s of [...evict].sort((a, b) => b.priority - a.priority || a.name.localeCompare(b.name))) {
        const without = { cpuMillis: freed.cpuMillis - s.demand.cpuMillis, memoryBytes: freed.memoryBytes - s.demand.memoryBytes, diskBytes: freed.diskBytes - s.demand.diskBytes, pids: freed.pids - s.demand.pids };
        if (!resourceFilter(n, c, without)) {
          Object.assign(freed, without);
          evict.splice(evict.indexOf(s), 1);
        }
      }
      const cost: [number, number] = [Math.max(...evict.map((s) => s.priority)), evict.length];
      if (!best || cost[0] < best.cost[0] || (cost[0] === best.cost[0] && cost[1] < best.cost[1])) best = { n, evict, cost };
    }
    if (!best) return undefined;
    for (const s of best.evict) this.state.remove(s.name);
    this.state.add(best.n, placed(ask, best.n.node.name));
    return { star: ask.name, node: best.n.node.name, preempts: best.evict.map((s) => s.name) };
  }

  private quotaReason(ask: Ask): string | undefined {
    const q = this.quotas[ask.namespace];
    return q ? quotaProblem(ask.namespace, q, this.state.usage(ask.namespace), ask.demand) : undefined;
  }
}

function placed(ask: Ask, node: string): PlacedStar {
  return { name: ask.name, node, namespace: ask.namespace, demand: ask.demand, priority: ask.priority, ...(ask.group !== undefined ? { group: ask.group } : {}), ports: ask.ports };
}

/** FNV-1a: where a star's look at the nodes starts (the same name, the same place). */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Checks an ask's numbers (negative or non-finite demands, a priority outside 0..100) before it is scheduled. */
export function checkDemand(d: Demand, priority: number): void {
  for (const [k, v] of Object.entries(d)) if (!Number.isFinite(v) || v < 0) throw new InvalidArgumentError(k, `${k} must be a number of 0 or more, got ${v}`);
  if (!Number.isInteger(priority) || priority < 0 || priority > 100) throw new InvalidArgumentError("priority", `priority must be a whole number from 0 to 100, got ${priority}`);
}
