/**
 * A simulated network for the gossip (src/cluster/gossip/swim.ts): a discrete-event clock, and
 * members that send each other packets over links that lose a share of them and take a little
 * time. Each member is the real state machine; only time, chance and the wire are simulated, so
 * 1,000 members run for minutes of simulated time in seconds. Deterministic for a seed.
 *
 * Used by bench/gossip/gossip-bench.ts and the gossip tests.
 */
import { Packr } from "msgpackr";
import { SEAL_OVERHEAD } from "../../src/cluster/gossip/keyring.js";
import type { GossipConfig } from "../../src/cluster/gossip/config.js";
import type { Packet } from "../../src/cluster/gossip/messages.js";
import { type MemberState, type MemberView, Swim } from "../../src/cluster/gossip/swim.js";

/** A small, fast, seeded PRNG (mulberry32). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A binary min-heap of timers by (at, seq). */
class Timers {
  private readonly heap: Timer[] = [];
  get size(): number {
    return this.heap.length;
  }
  push(t: Timer): void {
    const h = this.heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (before(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }
  peek(): Timer | undefined {
    return this.heap[0];
  }
  pop(): Timer | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

export interface NetworkOptions {
  seed?: number;
  /** Share of packets lost, 0 to 1 (each packet on its own). */
  loss?: number;
  /** One-way delay of a packet: at least this, plus up to `jitterMs` (ms). */
  latencyMs?: number;
  jitterMs?: number;
  config?: Partial<GossipConfig>;
  /** Count the bytes of every packet, as udp.ts sends it (sealed [epoch, counter, packet]): slower. */
  countBytes?: boolean;
}

export interface Change {
  at: number;
  observer: string;
  member: string;
  state: MemberState;
  before: MemberState | undefined;
  incarnation: number;
}

/** One simulated member: its state machine, and whether it is up. */
export interface SimMember {
  name: string;
  address: string;
  swim: Swim;
  up: boolean;
  /**
   * Extra delay of the packets this member sends and hears (a starved CPU: they wait to be
   * handled while its timers, which it checks first, still fire about on time).
   */
  slowMs: number;
  /**
   * A member held to a CPU quota (a cgroup's, throttled): it runs only the first `runMs` of
   * every `periodMs`; what falls due meanwhile waits for its next run — its timers first, then
   * the packets that came (a Node process's event loop: timers, then I/O).
   */
  throttle?: { periodMs: number; runMs: number };
  bytesSent: number;
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true });
/** An epoch as udp.ts makes one (16 hex digits): packets are counted in their envelope. */
const EPOCH = "0123456789abcdef";

export class SimNetwork {
  now = 0;
  readonly random: () => number;
  readonly members = new Map<string, SimMember>();
  private readonly byAddress = new Map<string, SimMember>();
  private readonly timers = new Timers();
  private seq = 0;
  readonly changes: Change[] = [];
  /** Packets sent and lost, for the report. */
  sent = 0;
  lost = 0;
  loss: number;
  /** Whether packets' bytes are counted now (NetworkOptions.countBytes). */
  countBytes: boolean;
  /** Pairs of members that cannot reach each other ("a|b", both ways). */
  private readonly cut = new Set<string>();

  constructor(private readonly options: NetworkOptions = {}) {
    this.random = seeded(options.seed ?? 1);
    this.loss = options.loss ?? 0;
    this.countBytes = options.countBytes ?? false;
  }

  /** Calls `fn` at `now + ms`; the function returned cancels it. */
  after(ms: number, fn: () => void): () => void {
    const t: Timer = { at: this.now + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(t);
    return () => (t.cancelled = true);
  }

  /** A member named `name` at address `name`, started (joining through `seeds`, names of members). */
  add(name: string, seeds: string[] = [], config: Partial<GossipConfig> = {}, clockOffsetMs = 0): SimMember {
    const address = name;
    const sim: SimMember = { name, address, swim: undefined as unknown as Swim, up: true, slowMs: 0, bytesSent: 0 };
    const env = {
      // (A member's clock may be far off the others': its own time is all it measures by.)
      now: () => this.now + clockOffsetMs,
      after: (ms: number, fn: () => void) => this.after(ms, () => sim.up && this.whenRunning(sim, fn, 0)),
      send: (to: string, p: Packet) => this.send(sim, to, p),
      random: this.random,
    };
    sim.swim = new Swim({
      name,
      address,
      meta: { v: "1.0.0" },
      config: { ...this.options.config, ...config },
      env,
      onChange: (m: MemberView, before) => this.changes.push({ at: this.now, observer: name, member: m.name, state: m.state, before, incarnation: m.incarnation }),
    });
    this.members.set(name, sim);
    this.byAddress.set(address, sim);
    sim.swim.start(seeds);
    return sim;
  }

  /** The member stops at once (as a SIGKILL): it sends and hears nothing more. */
  kill(name: string): void {
    const m = this.members.get(name)!;
    m.up = false;
    m.swim.stop();
  }

  /** A killed member comes back as a new process (incarnation 0), joining through `seeds`. */
  restart(name: string, seeds: string[]): SimMember {
    this.kill(name);
    return this.add(name, seeds);
  }

  /** Cuts (or heals) the link between two members. */
  setCut(a: string, b: string, cut: boolean): void {
    const k = a < b ? `${a}|${b}` : `${b}|${a}`;
    if (cut) this.cut.add(k);
    else this.cut.delete(k);
  }

  private send(from: SimMember, to: string, p: Packet): void {
    if (!from.up) return;
    this.sent++;
    if (this.countBytes) {
      const bytes = packr.pack([EPOCH, this.sent, p]).length + SEAL_OVERHEAD; // as udp.ts sends it
      from.bytesSent += bytes;
    }
    const dest = this.byAddress.get(to);
    const k = from.name < to ? `${from.name}|${to}` : `${to}|${from.name}`;
    if (!dest || this.random() < this.loss || this.cut.has(k)) {
      this.lost++;
      return;
    }
    const delay = (this.options.latencyMs ?? 0.2) + this.random() * (this.options.jitterMs ?? 0.3) + from.slowMs + dest.slowMs;
    this.after(delay, () =>
      this.whenRunning(dest, () => {
        if (dest.up && this.byAddress.get(to) === dest) dest.swim.receive(from.address, p);
      }, 0.001),
    );
  }

  /** Runs `fn` now if `m` runs now, else at its next run (`phase` later: packets after timers). */
  private whenRunning(m: SimMember, fn: () => void, phase: number): void {
    const t = m.throttle;
    if (!t) return fn();
    const into = this.now % t.periodMs;
    if (into < t.runMs) return fn();
    this.after(t.periodMs - into + phase, () => m.up && fn());
  }

  /** Runs simulated time forward by `ms`. */
  run(ms: number): void {
    this.runUntil(this.now + ms);
  }

  runUntil(at: number): void {
    for (;;) {
      const t = this.timers.peek();
      if (!t || t.at > at) break;
      this.timers.pop();
      if (t.cancelled) continue;
      this.now = t.at;
      t.fn();
    }
    this.now = at;
  }

  /** Runs until `done()` holds (checked every `stepMs`), at most `limitMs`; the time it took, or undefined. */
  runUntilTrue(done: () => boolean, limitMs: number, stepMs = 50): number | undefined {
    const start = this.now;
    while (this.now - start <= limitMs) {
      if (done()) return this.now - start;
      this.run(stepMs);
    }
    return undefined;
  }

  /** What `observer` thinks of `member` now. */
  stateOf(observer: string, member: string): MemberState | undefined {
    return this.members.get(observer)!.swim.member(member)?.state;
  }

  /** Members up now. */
  live(): SimMember[] {
    return [...this.members.values()].filter((m) => m.up);
  }
}

/** A network of `n` members m0…m(n-1), each joined through m0. */
export function simCluster(n: number, options: NetworkOptions = {}): SimNetwork {
  const net = new SimNetwork(options);
  net.add("m0");
  for (let i = 1; i < n; i++) net.add(`m${i}`, ["m0"]);
  return net;
}

/** Every live member holds every other live member alive. */
export function everyoneKnowsEveryone(net: SimNetwork): boolean {
  const live = net.live();
  return live.every((a) => live.every((b) => a === b || net.stateOf(a.name, b.name) === "alive"));
}
