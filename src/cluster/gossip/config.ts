/**
 * The gossip's timing and its arithmetic (pure). Defaults are chosen for detection by every
 * member within 5 s at 1,000 members on a LAN (docs/gossip.md has the reasoning and the
 * simulation that checks it); memberlist's LAN profile is the reference they are measured
 * against (1 s probes, 500 ms timeout, suspicion 4·log10(N)·probe interval).
 */

export interface GossipConfig {
  /** How often a member probes one other (scaled up by its local health, Lifeguard). */
  probeIntervalMs: number;
  /** How long a direct probe waits for its ack before asking others to probe (scaled likewise). */
  probeTimeoutMs: number;
  /** How many others are asked to probe a member that did not answer (memberlist: 3). */
  indirectChecks: number;
  /** How often a member sends what it has to tell, and to how many members. */
  gossipIntervalMs: number;
  gossipFanout: number;
  /** A member dead this long is no longer gossiped to (so it can still hear it was taken for dead). */
  gossipToTheDeadMs: number;
  /** Each piece of news is sent retransmitMult·ceil(log10(N+1)) times. */
  retransmitMult: number;
  /** Suspicion timeout, at the least: suspicionMult·max(1, log10(N))·probe interval … */
  suspicionMult: number;
  /** … and at first (no other member confirmed it yet): this many times the least. */
  suspicionMaxMult: number;
  /** Independent confirmations after which a suspicion times out at its least (Lifeguard's K). */
  suspicionConfirmations: number;
  /** Local health multiplier's ceiling (Lifeguard: timeouts grow up to (1 + this)×). */
  maxLocalHealth: number;
  /** Full state exchange with one random member this often (scaled up past 32 members). */
  pushPullIntervalMs: number;
  /** Bytes of news piggybacked on one packet at most (a UDP packet stays under a typical MTU). */
  maxPiggybackBytes: number;
}

export const DEFAULT_GOSSIP: Readonly<GossipConfig> = Object.freeze({
  probeIntervalMs: 500,
  probeTimeoutMs: 200,
  indirectChecks: 3,
  gossipIntervalMs: 100,
  gossipFanout: 3,
  gossipToTheDeadMs: 30_000,
  retransmitMult: 4,
  suspicionMult: 1,
  suspicionMaxMult: 6,
  suspicionConfirmations: 3,
  maxLocalHealth: 8,
  pushPullIntervalMs: 30_000,
  maxPiggybackBytes: 1200,
});

/** memberlist's LAN profile in our terms (for the simulation's comparison). */
export const MEMBERLIST_LAN: Readonly<GossipConfig> = Object.freeze({
  probeIntervalMs: 1000,
  probeTimeoutMs: 500,
  indirectChecks: 3,
  gossipIntervalMs: 200,
  gossipFanout: 3,
  gossipToTheDeadMs: 30_000,
  retransmitMult: 4,
  suspicionMult: 4,
  suspicionMaxMult: 6,
  suspicionConfirmations: 2, // memberlist: suspicionMult - 2
  maxLocalHealth: 8,
  pushPullIntervalMs: 30_000,
  maxPiggybackBytes: 1200,
});

/** How big the cluster counts for timeouts: log10 of its size, at least 1. */
function nodeScale(members: number): number {
  return Math.max(1, Math.log10(Math.max(1, members)));
}

/** Times a piece of news is sent before it is dropped. */
export function retransmitLimit(config: GossipConfig, members: number): number {
  return config.retransmitMult * Math.ceil(Math.log10(members + 1));
}

/** A suspicion's least and first timeouts, in ms, for a cluster of `members`. */
export function suspicionBounds(config: GossipConfig, members: number): { min: number; max: number } {
  const min = config.suspicionMult * nodeScale(members) * config.probeIntervalMs;
  return { min, max: config.suspicionMaxMult * min };
}

/**
 * Lifeguard's shrinking suspicion: with `confirmations` independent suspicions heard besides the
 * first, the timeout falls from `max` towards `min` (logarithmically), reaching it at `expected`.
 */
export function suspicionTimeout(bounds: { min: number; max: number }, confirmations: number, expected: number): number {
  if (expected < 1) return bounds.min;
  const frac = Math.log(confirmations + 1) / Math.log(expected + 1);
  return Math.max(bounds.min, Math.floor(bounds.max - (bounds.max - bounds.min) * frac));
}

/** The push-pull interval: memberlist's scaling, longer past 32 members so the total stays flat. */
export function pushPullInterval(config: GossipConfig, members: number): number {
  if (members <= 32) return config.pushPullIntervalMs;
  return Math.ceil(Math.log2(members) - Math.log2(32) + 1) * config.pushPullIntervalMs;
}
