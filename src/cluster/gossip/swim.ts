/**
 * Membership by gossip: SWIM with Lifeguard's refinements, as a pure state machine. It does no
 * I/O of its own: packets go out through `env.send`, time comes from `env.now`/`env.after`, and
 * chance from `env.random`, so the same code runs over UDP (gossip/udp.ts) and in a simulator of
 * 1,000 members in one process (bench/gossip). docs/gossip.md tells the protocol in full.
 *
 *   each probe interval (× local health):
 *     ping target ──ack──▶ fine (health −1)
 *        │ no ack within the probe timeout
 *        ▼
 *     ping-req to k others ──ack (relayed)──▶ fine
 *        │ no ack by the end of the interval (health + nacks missed)
 *        ▼
 *     target SUSPECT ──refuted (alive, higher incarnation)──▶ ALIVE
 *        │ suspicion timeout (shrinks with each independent confirmation)
 *        ▼
 *     target DEAD (told to all; a dead member that comes back refutes with a higher incarnation)
 *
 * News (alive, suspect, dead) rides on every packet (retransmitted log(N) times) and on gossip
 * rounds to a few random members; a full state exchange with one member now and then (push-pull)
 * repairs whatever the gossip missed, and is how a member joins.
 */
import { Broadcasts } from "./broadcasts.js";
import { DEFAULT_GOSSIP, type GossipConfig, pushPullInterval, retransmitLimit, suspicionBounds, suspicionTimeout } from "./config.js";
import { type Meta, type News, type Packet, type StateEntry, checkMeta } from "./messages.js";

export type MemberState = "alive" | "suspect" | "dead" | "left";

export interface MemberView {
  name: string;
  address: string;
  meta: Meta;
  incarnation: number;
  state: MemberState;
  /** When this member last changed state, by this member's clock (env.now). */
  since: number;
}

/** What the state machine needs of the world. */
export interface GossipEnv {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Calls `fn` after `ms`; the function returned cancels it. */
  after(ms: number, fn: () => void): () => void;
  /** Sends a packet to an address (best effort: it may be lost). */
  send(to: string, packet: Packet): void;
  /** A number in [0, 1). */
  random(): number;
}

export interface SwimOptions {
  name: string;
  address: string;
  meta?: Meta;
  config?: Partial<GossipConfig>;
  env: GossipEnv;
  /** A member's state changed (or it appeared): `before` is its state until now. */
  onChange?: (member: MemberView, before: MemberState | undefined) => void;
  /** A line for the operator (a name claimed twice, a refutation). */
  log?: (line: string) => void;
}

const STATE_CODE = { alive: 0, suspect: 1, dead: 2, left: 3 } as const;
const CODE_STATE = ["alive", "suspect", "dead", "left"] as const;

interface Suspicion {
  incarnation: number;
  confirmers: Set<string>;
  startedAt: number;
  cancel: () => void;
}

interface Probe {
  target: string;
  acked: boolean;
  nacks: number;
}

interface Relay {
  origin: string;
  seq: number;
  answered: boolean;
}

/**
 * Members dead or left this long are forgotten. Until then a member dead to this one is still
 * tried now and then (a state exchange with one of them each push-pull round), so the two sides
 * of a healed partition find each other again (Serf's reconnect, 24 h as its default).
 */
const FORGET_DEAD_MS = 24 * 3600_000;

/**
 * News of a known member whose incarnation jumps further than this is ignored: a member only
 * ever adds one at a time, and a key holder's news at an enormous incarnation would otherwise
 * leave its victim no incarnation to refute with.
 */
const MAX_JUMP = 10_000;

export class Swim {
  readonly config: GossipConfig;
  private readonly env: GossipEnv;
  private readonly self: MemberView;
  private readonly members = new Map<string, MemberView>();
  /** The members' values, as a list (picking at random from it costs no copy). */
  private all: MemberView[] = [];
  private readonly broadcasts = new Broadcasts();
  private readonly suspicions = new Map<string, Suspicion>();
  private readonly probes = new Map<number, Probe>();
  private readonly relays = new Map<number, Relay>();
  private order: string[] = [];
  private orderAt = 0;
  private seq = 1;
  /** Lifeguard's local health: 0 (healthy) to maxLocalHealth; timeouts are × (1 + it). */
  private health = 0;
  private readonly timers = new Set<() => void>();
  private running = false;
  private leaving = false;
  /** Names whose conflicting claims were already said (once each). */
  private readonly conflicts = new Set<string>();

  constructor(private readonly options: SwimOptions) {
    this.config = { ...DEFAULT_GOSSIP, ...options.config };
    this.env = options.env;
    this.self = { name: options.name, address: options.address, meta: checkMeta(options.meta ?? {}), incarnation: 0, state: "alive", since: this.env.now() };
  }

  /** Starts probing and gossiping; joins through `seeds` (addresses of members) if any. */
  start(seeds: string[] = []): void {
    if (this.running) return;
    this.running = true;
    this.broadcasts.add(this.aliveNews());
    this.schedule(this.randomDelay(this.config.probeIntervalMs), () => this.probe());
    this.every(this.config.gossipIntervalMs, () => this.gossip());
    this.schedulePushPull();
    this.forgetDead();
    this.join(seeds);
  }

  /** Stops every timer (packets received later are ignored). */
  stop(): void {
    this.running = false;
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    for (const s of this.suspicions.values()) s.cancel();
    this.suspicions.clear();
  }

  /** Says this member is leaving (others mark it left, not dead); gossip goes on until `stop`. */
  leave(): void {
    this.leaving = true;
    this.self.incarnation++;
    this.self.state = "left";
    this.broadcasts.add({ k: "d", n: this.self.name, i: this.self.incarnation, f: this.self.name });
  }

  /**
   * Joins through `seeds` (addresses of members): a state exchange with each, asked again every
   * two probe intervals (a packet may be lost) until one answers.
   */
  join(seeds: string[]): void {
    if (seeds.length === 0) return;
    this.joined = false;
    const ask = () => {
      if (this.joined || !this.running) return;
      for (const s of seeds) this.pushTo(s, true);
      this.schedule(2 * this.config.probeIntervalMs, ask);
    };
    ask();
  }

  /** A seed (or any member) answered a state exchange of ours. */
  private joined = true;

  /** New meta for this member (told to all with a higher incarnation). */
  setMeta(meta: Meta): void {
    this.self.meta = checkMeta(meta);
    this.self.incarnation++;
    this.broadcasts.add(this.aliveNews());
  }

  get name(): string {
    return this.self.name;
  }

  get localHealth(): number {
    return this.health;
  }

  get incarnation(): number {
    return this.self.incarnation;
  }

  /** Every member known, this one included. */
  list(): MemberView[] {
    return [{ ...this.self }, ...[...this.members.values()].map((m) => ({ ...m }))];
  }

  member(name: string): MemberView | undefined {
    if (name === this.self.name) return { ...this.self };
    const m = this.members.get(name);
    return m ? { ...m } : undefined;
  }

  /** Members alive or suspect, this one included (the cluster's size, for timeouts). */
  get size(): number {
    return this.liveCount + 1;
  }

  /** Members alive or suspect (kept as states change: `size` is asked for every packet). */
  private liveCount = 0;

  /** A packet from `from` (the address it came from). */
  receive(from: string, p: Packet): void {
    if (!this.running) return;
    if ("g" in p && p.g) {
      // News older than what is known here (a suspicion already refuted) is answered at once,
      // to its sender, with the newer news: one member that missed a refutation would otherwise
      // keep its suspicion and, its timeout over, declare a live member dead.
      const newer: News[] = [];
      for (const n of p.g) if (this.isStale(n)) newer.push(this.newsOf(n.n)!);
      else this.apply(n);
      if (newer.length > 0) this.env.send(from, { t: "gos", f: this.self.name, g: newer.slice(0, 8) });
    }
    switch (p.t) {
      case "ping":
        // Meant for another member (an address reused): not answered, so it is not taken for alive.
        if (p.n !== this.self.name) return;
        this.env.send(from, this.withNews({ t: "ack", q: p.q, f: this.self.name }, from));
        return;
      case "ack": {
        const probe = this.probes.get(p.q);
        if (probe) {
          probe.acked = true;
          return;
        }
        const relay = this.relays.get(p.q);
        if (relay && !relay.answered) {
          relay.answered = true;
          this.env.send(relay.origin, { t: "ack", q: relay.seq, f: this.self.name });
        }
        return;
      }
      case "preq": {
        const q = this.seq++;
        this.relays.set(q, { origin: from, seq: p.q, answered: false });
        this.env.send(p.a, this.withNews({ t: "ping", q, f: this.self.name, n: p.n }, p.n));
        // (Unscaled by this member's health, as memberlist: a slow relay's late nack would count
        // against a healthy prober.)
        this.schedule(this.config.probeTimeoutMs, () => {
          const r = this.relays.get(q);
          if (r && !r.answered) this.env.send(from, { t: "nack", q: p.q, f: this.self.name });
        });
        this.schedule(this.scaled(this.config.probeIntervalMs), () => this.relays.delete(q));
        return;
      }
      case "nack": {
        const probe = this.probes.get(p.q);
        if (probe) probe.nacks++;
        return;
      }
      case "gos":
        return;
      case "push":
        this.merge(p.f, p.s);
        // Answered once per exchange (to its first part), with all of this member's parts.
        // The answer goes to the address the sender gave (sealed with the cluster key), not to
        // where the packet came from: a captured push replayed from elsewhere makes no one send
        // its whole state to a third party.
        if (p.k === 0) for (const [k, s] of this.stateParts().entries()) this.env.send(p.a, { t: "pull", f: this.self.name, k, s });
        return;
      case "pull":
        this.joined = true;
        this.merge(p.f, p.s);
        return;
    }
  }

  // ---- probing -------------------------------------------------------------------------

  private scaled(ms: number): number {
    return ms * (1 + this.health);
  }

  private adjustHealth(delta: number): void {
    this.health = Math.min(this.config.maxLocalHealth, Math.max(0, this.health + delta));
  }

  /** The next member to probe: round robin over a shuffled list, reshuffled at each pass. */
  private nextTarget(): MemberView | undefined {
    for (let tries = 0; tries < 2; tries++) {
      while (this.orderAt < this.order.length) {
        const m = this.members.get(this.order[this.orderAt++]!);
        if (m && (m.state === "alive" || m.state === "suspect")) return m;
      }
      this.order = this.shuffle([...this.members.values()].filter((m) => m.state === "alive" || m.state === "suspect").map((m) => m.name));
      this.orderAt = 0;
    }
    return undefined;
  }

  /**
   * Runs `fn` after `ms`, and says whether this member's own clock let it run on time: a timer
   * that fires much later than asked means this member was stalled (starved of CPU, paused), so
   * what it measured meanwhile — answers that did not come — is not to be trusted.
   */
  private timed(ms: number, fn: (stalled: boolean) => void): void {
    const due = this.env.now() + ms;
    this.schedule(ms, () => fn(this.env.now() - due > this.stallMs()));
  }

  /** How late a timer may fire before this member takes itself for stalled. */
  private stallMs(): number {
    return this.config.probeTimeoutMs / 4;
  }

  private probe(): void {
    if (!this.running) return;
    const interval = this.scaled(this.config.probeIntervalMs);
    const target = this.nextTarget();
    if (!target) {
      this.schedule(interval, () => this.probe());
      return;
    }
    const q = this.seq++;
    const probe: Probe = { target: target.name, acked: false, nacks: 0 };
    this.probes.set(q, probe);
    this.env.send(target.address, this.withNews({ t: "ping", q, f: this.self.name, n: target.name }, target.name));
    let asked = 0;
    let stalled = false;
    this.timed(this.scaled(this.config.probeTimeoutMs), (late) => {
      stalled ||= late;
      if (probe.acked) return;
      const relays = this.pick(this.config.indirectChecks, (m) => m.state === "alive" && m.name !== target.name);
      asked = relays.length;
      for (const r of relays) this.env.send(r.address, this.withNews({ t: "preq", q, f: this.self.name, n: target.name, a: target.address }, r.name));
    });
    this.timed(interval, (late) => {
      stalled ||= late;
      // Judged a turn later: what came while this member was busy or stalled (an ack waiting in
      // its socket behind the timers) is read first.
      this.schedule(0, () => this.judge(q, probe, target, asked, stalled));
    });
  }

  /** The end of a probe: an answer, or a suspicion — unless this member was the slow one. */
  private judge(q: number, probe: Probe, target: MemberView, asked: number, stalled: boolean): void {
    this.probes.delete(q);
    if (probe.acked) this.adjustHealth(-1);
    else if (stalled) {
      // Its own timers ran late: it cannot tell a silent target from its own stall. It accuses
      // no one, and slows its detector (Lifeguard's local health, measured directly).
      this.adjustHealth(1);
    } else {
      // Lifeguard: relays that did not even say "no answer" point at this member's own trouble.
      this.adjustHealth(asked > 0 ? asked - probe.nacks : 1);
      const now = this.members.get(target.name);
      if (now && now.state === "alive" && now.incarnation === target.incarnation) {
        this.apply({ k: "s", n: target.name, i: target.incarnation, f: this.self.name });
      } else if (now && now.state === "suspect") {
        this.apply({ k: "s", n: target.name, i: now.incarnation, f: this.self.name });
      }
    }
    this.probe();
  }

  // ---- news ------------------------------------------------------------------------------

  private aliveNews(): News {
    return { k: "a", n: this.self.name, i: this.self.incarnation, ad: this.self.address, m: this.self.meta };
  }

  /** A packet with news piggybacked (about `about` first, if any waits: the buddy system). */
  private withNews<P extends Packet & { g?: News[] }>(p: P, about?: string): P {
    const g = this.broadcasts.take(this.config.maxPiggybackBytes, retransmitLimit(this.config, this.size), about);
    return g.length > 0 ? { ...p, g } : p;
  }

  private gossip(): void {
    if (this.broadcasts.size === 0) return;
    const now = this.env.now();
    const targets = this.pick(this.config.gossipFanout, (m) => m.state === "alive" || m.state === "suspect" || (m.state === "dead" && now - m.since < this.config.gossipToTheDeadMs));
    const limit = retransmitLimit(this.config, this.size);
    for (const t of targets) {
      const g = this.broadcasts.take(this.config.maxPiggybackBytes, limit);
      if (g.length === 0) return;
      this.env.send(t.address, { t: "gos", f: this.self.name, g });
    }
  }

  private refute(incarnation: number): void {
    this.self.incarnation = Math.max(this.self.incarnation, incarnation) + 1;
    this.broadcasts.add(this.aliveNews());
    this.adjustHealth(1); // Lifeguard: a member suspected of being dead may be the slow one
  }

  private changed(m: MemberView, before: MemberState | undefined): void {
    const live = (s: MemberState | undefined) => s === "alive" || s === "suspect";
    this.liveCount += (live(m.state) ? 1 : 0) - (live(before) ? 1 : 0);
    this.options.onChange?.({ ...m }, before);
  }

  /** Takes in one piece of news (from a packet, a state exchange, or this member's own probing). */
  private apply(n: News): void {
    if (n.n === this.self.name) {
      this.aboutSelf(n);
      return;
    }
    const known = this.members.get(n.n);
    if (known && n.i > known.incarnation + MAX_JUMP) return;
    switch (n.k) {
      case "a": {
        if (!known) {
          const m: MemberView = { name: n.n, address: n.ad, meta: n.m, incarnation: n.i, state: "alive", since: this.env.now() };
          this.members.set(n.n, m);
          this.all.push(m);
          // A newcomer goes at a random place of the probe order (not everyone probes it next).
          this.order.splice(this.orderAt + Math.floor(this.env.random() * (this.order.length - this.orderAt + 1)), 0, n.n);
          this.broadcasts.add(n);
          this.changed(m, undefined);
          return;
        }
        if (n.i <= known.incarnation) return;
        if (n.ad !== known.address && (known.state === "alive" || known.state === "suspect")) {
          // Two members claim one name: the one known keeps it until it is dead or left.
          if (!this.conflicts.has(n.n)) {
            this.conflicts.add(n.n);
            this.options.log?.(`gossip: member ${n.n} is claimed from ${n.ad} while it is alive at ${known.address}: ignored (two members with one name?)`);
          }
          return;
        }
        const before = known.state;
        this.endSuspicion(n.n);
        known.incarnation = n.i;
        known.address = n.ad;
        known.meta = n.m;
        known.state = "alive";
        if (before !== "alive") known.since = this.env.now();
        this.broadcasts.add(n);
        this.changed(known, before);
        return;
      }
      case "s": {
        if (!known || n.i < known.incarnation || known.state === "dead" || known.state === "left") return;
        if (known.state === "suspect" && n.i === known.incarnation) {
          this.confirm(known, n);
          return;
        }
        const before = known.state;
        known.incarnation = n.i;
        known.state = "suspect";
        known.since = this.env.now();
        this.startSuspicion(known, n.f);
        this.broadcasts.add(n);
        this.changed(known, before);
        return;
      }
      case "d": {
        if (!known || n.i < known.incarnation || known.state === "dead" || known.state === "left") return;
        const before = known.state;
        this.endSuspicion(n.n);
        known.incarnation = n.i;
        known.state = n.f === n.n ? "left" : "dead";
        known.since = this.env.now();
        this.broadcasts.add(n);
        this.changed(known, before);
        return;
      }
    }
  }

  /** Suspicion or death of a member at an incarnation older than the alive one known here. */
  private isStale(n: News): boolean {
    if (n.k === "a") return false;
    const known = n.n === this.self.name ? (this.leaving ? undefined : this.self) : this.members.get(n.n);
    return known !== undefined && known.state === "alive" && n.i < known.incarnation;
  }

  /** What is known here of a member, as news. */
  private newsOf(name: string): News | undefined {
    const m = name === this.self.name ? this.self : this.members.get(name);
    return m && { k: "a", n: m.name, i: m.incarnation, ad: m.address, m: m.meta };
  }

  private aboutSelf(n: News): void {
    if (this.leaving || n.i > this.self.incarnation + MAX_JUMP) return;
    switch (n.k) {
      case "a":
        // Our own news coming back is nothing; a claim of our name from elsewhere, or at an
        // incarnation past ours, is refuted.
        if (n.i < this.self.incarnation || (n.i === this.self.incarnation && n.ad === this.self.address)) return;
        if (n.ad !== this.self.address && !this.conflicts.has(this.self.name)) {
          this.conflicts.add(this.self.name);
          this.options.log?.(`gossip: this member's name ${this.self.name} is claimed from ${n.ad}: refuted (two members with one name?)`);
        }
        this.refute(n.i);
        return;
      case "s":
      case "d":
        if (n.i < this.self.incarnation) return;
        this.refute(n.i);
        return;
    }
  }

  // ---- suspicion (Lifeguard) -------------------------------------------------------------

  private startSuspicion(m: MemberView, from: string): void {
    this.endSuspicion(m.name);
    const bounds = suspicionBounds(this.config, this.size);
    const expected = this.expectedConfirmations();
    const s: Suspicion = { incarnation: m.incarnation, confirmers: new Set([from]), startedAt: this.env.now(), cancel: () => undefined };
    this.suspicions.set(m.name, s);
    s.cancel = this.suspicionTimer(m.name, s, suspicionTimeout(bounds, 0, expected));
  }

  /**
   * Ends suspicion `s` after `ms` — a turn later (a refutation waiting in the socket is read
   * first), and later still if this member's timer ran late (it was stalled: the refutation may
   * not have reached it yet).
   */
  private suspicionTimer(name: string, s: Suspicion, ms: number): () => void {
    let cancel: () => void;
    const due = this.env.now() + ms;
    cancel = this.env.after(ms, () => {
      const stalled = this.env.now() - due > this.stallMs();
      if (stalled) this.adjustHealth(1);
      cancel = this.env.after(stalled ? this.scaled(this.config.probeIntervalMs) : 0, () => this.suspicionOver(name, s));
    });
    return () => cancel();
  }

  private expectedConfirmations(): number {
    const k = this.config.suspicionConfirmations;
    return this.size - 2 < k ? 0 : k;
  }

  /** Another member suspects it too: the timeout shrinks (only news of a new suspecter counts). */
  private confirm(m: MemberView, n: News & { k: "s" }): void {
    const s = this.suspicions.get(m.name);
    if (!s || s.incarnation !== n.i || s.confirmers.has(n.f)) return;
    s.confirmers.add(n.f);
    this.broadcasts.add(n); // told on: others count it too
    const bounds = suspicionBounds(this.config, this.size);
    const timeout = suspicionTimeout(bounds, s.confirmers.size - 1, this.expectedConfirmations());
    s.cancel();
    const left = Math.max(0, s.startedAt + timeout - this.env.now());
    s.cancel = this.suspicionTimer(m.name, s, left);
  }

  private suspicionOver(name: string, s: Suspicion): void {
    if (this.suspicions.get(name) !== s) return;
    this.suspicions.delete(name);
    const m = this.members.get(name);
    if (!this.running || !m || m.state !== "suspect" || m.incarnation !== s.incarnation) return;
    this.apply({ k: "d", n: name, i: m.incarnation, f: this.self.name });
  }

  private endSuspicion(name: string): void {
    const s = this.suspicions.get(name);
    if (!s) return;
    s.cancel();
    this.suspicions.delete(name);
  }

  // ---- full state exchange -----------------------------------------------------------------

  private state(): StateEntry[] {
    const out: StateEntry[] = [{ n: this.self.name, ad: this.self.address, i: this.self.incarnation, st: STATE_CODE[this.self.state], m: this.self.meta }];
    for (const m of this.members.values()) out.push({ n: m.name, ad: m.address, i: m.incarnation, st: STATE_CODE[m.state], m: m.meta });
    return out;
  }

  /** This member's state in parts that each fit one packet. */
  private stateParts(): StateEntry[][] {
    const parts: StateEntry[][] = [[]];
    let bytes = 0;
    for (const e of this.state()) {
      const size = JSON.stringify(e).length;
      if (bytes + size > this.config.maxPiggybackBytes && parts.at(-1)!.length > 0) {
        parts.push([]);
        bytes = 0;
      }
      parts.at(-1)!.push(e);
      bytes += size;
    }
    return parts;
  }

  private pushTo(address: string, join: boolean): void {
    for (const [k, s] of this.stateParts().entries()) this.env.send(address, { t: "push", f: this.self.name, a: this.self.address, j: join, k, s });
  }

  /** Another member's whole view: what it says dead is only suspected here (its word alone kills no one). */
  private merge(from: string, entries: StateEntry[]): void {
    for (const e of entries) {
      const st = CODE_STATE[e.st];
      if (st === "alive") this.apply({ k: "a", n: e.n, i: e.i, ad: e.ad, m: e.m });
      else if (st === "left") this.apply({ k: "d", n: e.n, i: e.i, f: e.n });
      else {
        if (!this.members.has(e.n) && e.n !== this.self.name) continue; // not known alive: nothing to suspect
        this.apply({ k: "s", n: e.n, i: e.i, f: from });
      }
    }
  }

  private schedulePushPull(): void {
    const wait = pushPullInterval(this.config, this.size);
    this.schedule(this.randomDelay(wait), () => {
      const [peer] = this.pick(1, (m) => m.state === "alive");
      if (peer) this.pushTo(peer.address, false);
      const [gone] = this.pick(1, (m) => m.state === "dead");
      if (gone) this.pushTo(gone.address, false);
      this.schedulePushPull();
    });
  }

  private forgetDead(): void {
    this.schedule(FORGET_DEAD_MS / 10, () => {
      const now = this.env.now();
      for (const [name, m] of this.members) {
        if ((m.state === "dead" || m.state === "left") && now - m.since > FORGET_DEAD_MS) this.members.delete(name);
      }
      if (this.all.length !== this.members.size) this.all = [...this.members.values()];
      this.forgetDead();
    });
  }

  // ---- helpers ------------------------------------------------------------------------------

  /** Up to `k` distinct random members that pass `ok`. */
  private pick(k: number, ok: (m: MemberView) => boolean): MemberView[] {
    const all = this.all;
    const out: MemberView[] = [];
    // Random probes first (cheap at 1,000 members), then a full scan if too few were found.
    for (let tries = 0; tries < 3 * k && out.length < k && all.length > 0; tries++) {
      const m = all[Math.floor(this.env.random() * all.length)]!;
      if (ok(m) && !out.includes(m)) out.push(m);
    }
    if (out.length < k) {
      for (const m of this.shuffle(all.filter((m) => ok(m) && !out.includes(m)))) {
        if (out.length >= k) break;
        out.push(m);
      }
    }
    return out;
  }

  private shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.env.random() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }

  private randomDelay(ms: number): number {
    return Math.floor(this.env.random() * ms);
  }

  /** A timer that is cancelled by `stop`. */
  private schedule(ms: number, fn: () => void): void {
    const cancel = this.env.after(ms, () => {
      this.timers.delete(cancel);
      if (this.running) fn();
    });
    this.timers.add(cancel);
  }

  private every(ms: number, fn: () => void): void {
    const tick = () => {
      fn();
      this.schedule(ms, tick);
    };
    this.schedule(ms, tick);
  }
}
