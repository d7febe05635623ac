/**
 * The scheduler's working state: what each node holds (resources, fixed ports, each group's
 * stars), what each namespace uses, and per group the nodes by how many of its stars they run
 * (for spread). Built from a snapshot, then changed as placements are made in one pass, so each
 * placement sees the ones before it. Mutable on purpose (100,000 placements a pass), private to
 * the scheduler.
 */
import type { Demand, PlacedStar, SchedNode, Snapshot } from "./types.js";

/** The group of every star: spread of stars that belong to no deployment counts all stars. */
export const ALL = "\u0000all";

export interface NodeState {
  readonly node: SchedNode;
  readonly index: number;
  readonly used: Demand;
  readonly ports: Set<number>;
  /** Stars by group (ALL included). */
  readonly groups: Map<string, number>;
  /** Its stars, for preemption. */
  readonly stars: Map<string, PlacedStar>;
}

/** A group's nodes by how many of its stars each runs: levels[c] holds the nodes running c. */
class Levels {
  readonly levels: Array<Set<number>> = [];
  readonly count: Int32Array;
  /** The lowest level with a node in it (spread looks from there, not from 0 every time). */
  lowest = 0;
  constructor(size: number) {
    this.count = new Int32Array(size);
    this.levels.push(new Set(Array.from({ length: size }, (_, i) => i)));
  }
  move(node: number, by: 1 | -1): void {
    const c = this.count[node]!;
    this.levels[c]!.delete(node);
    const next = c + by;
    this.count[node] = next;
    (this.levels[next] ??= new Set()).add(node);
    if (next < this.lowest) this.lowest = next;
    while (this.lowest < this.levels.length - 1 && this.levels[this.lowest]!.size === 0) this.lowest++;
  }
}

export class ClusterState {
  readonly nodes: NodeState[];
  private readonly byName = new Map<string, NodeState>();
  private readonly namespaces = new Map<string, Demand & { stars: number }>();
  private readonly levels = new Map<string, Levels>();
  private readonly starNode = new Map<string, NodeState>();
  /** How many placed stars have each priority. */
  private readonly priorities = new Map<number, number>();
  /** The nodes that run any star (binpack looks at them first), and where each is in that list (−1: not in it). */
  readonly occupied: number[] = [];
  readonly occupiedAt: Int32Array;

  constructor(snapshot: Snapshot) {
    this.nodes = snapshot.nodes.map((node, index) => ({ node, index, used: { cpuMillis: 0, memoryBytes: 0, diskBytes: 0, pids: 0 }, ports: new Set(), groups: new Map(), stars: new Map() }));
    this.occupiedAt = new Int32Array(this.nodes.length).fill(-1);
    for (const n of this.nodes) this.byName.set(n.node.name, n);
    for (const s of snapshot.placed) {
      const n = this.byName.get(s.node);
      if (n) this.add(n, s);
      else this.charge(s, 1); // on a node gone from the snapshot: still its namespace's
    }
  }

  node(name: string): NodeState | undefined {
    return this.byName.get(name);
  }

  /** What a namespace uses now. */
  usage(namespace: string): Demand & { stars: number } {
    return this.namespaces.get(namespace) ?? { cpuMillis: 0, memoryBytes: 0, diskBytes: 0, pids: 0, stars: 0 };
  }

  /** The nodes by how many of `group`'s stars they run (made on first use, then kept up to date). */
  levelsOf(group: string): Levels {
    let l = this.levels.get(group);
    if (!l) {
      l = new Levels(this.nodes.length);
      for (const n of this.nodes) for (let k = n.groups.get(group) ?? 0; k > 0; k--) l.move(n.index, 1);
      this.levels.set(group, l);
    }
    return l;
  }

  /** The lowest priority of any preemptible star placed (Infinity: none): a star at or below it preempts nothing. */
  lowestPriority(): number {
    let low = Infinity;
    for (const [p, k] of this.priorities) if (k > 0 && p < low) low = p;
    return low;
  }

  add(n: NodeState, s: PlacedStar): void {
    if (s.preemptible !== false) this.priorities.set(s.priority, (this.priorities.get(s.priority) ?? 0) + 1);
    n.used.cpuMillis += s.demand.cpuMillis;
    n.used.memoryBytes += s.demand.memoryBytes;
    n.used.diskBytes += s.demand.diskBytes;
    n.used.pids += s.demand.pids;
    for (const p of s.ports ?? []) n.ports.add(p);
    for (const g of s.group === undefined ? [ALL] : [ALL, s.group]) {
      n.groups.set(g, (n.groups.get(g) ?? 0) + 1);
      this.levels.get(g)?.move(n.index, 1);
    }
    n.stars.set(s.name, s);
    if (n.stars.size === 1) {
      this.occupiedAt[n.index] = this.occupied.length;
      this.occupied.push(n.index);
    }
    this.starNode.set(s.name, n);
    this.charge(s, 1);
  }

  remove(name: string): PlacedStar | undefined {
    const n = this.starNode.get(name);
    const s = n?.stars.get(name);
    if (!n || !s) return undefined;
    n.used.cpuMillis -= s.demand.cpuMillis;
    n.used.memoryBytes -= s.demand.memoryBytes;
    n.used.diskBytes -= s.demand.diskBytes;
    n.used.pids -= s.demand.pids;
    for (const p of s.ports ?? []) n.ports.delete(p);
    for (const g of s.group === undefined ? [ALL] : [ALL, s.group]) {
      n.groups.set(g, n.groups.get(g)! - 1);
      this.levels.get(g)?.move(n.index, -1);
    }
    n.stars.delete(name);
    if (s.preemptible !== false) this.priorities.set(s.priority, this.priorities.get(s.priority)! - 1);
    if (n.stars.size === 0) {
      // Out of the list: the last one takes its place.
      const at = this.occupiedAt[n.index]!;
      const last = this.occupied.pop()!;
      if (last !== n.index) {
        this.occupied[at] = last;
        this.occupiedAt[last] = at;
      }
      this.occupiedAt[n.index] = -1;
    }
    this.starNode.delete(name);
    this.charge(s, -1);
    return s;
  }

  private charge(s: PlacedStar, sign: 1 | -1): void {
    const u = this.usage(s.namespace);
    this.namespaces.set(s.namespace, {
      cpuMillis: u.cpuMillis + sign * s.demand.cpuMillis,
      memoryBytes: u.memoryBytes + sign * s.demand.memoryBytes,
      diskBytes: u.diskBytes + sign * s.demand.diskBytes,
      pids: u.pids + sign * s.demand.pids,
      stars: u.stars + sign,
    });
  }
}
