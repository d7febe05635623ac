/**
 * When a node is dead to the controller (pure): its lease with the controller has expired *and*
 * gossip agrees — it says the node dead or left, or has no word of it (no gossip here, or the
 * node never gossiped) — or the lease has been gone so long (`LEASE_ONLY_AFTER` TTLs) that the
 * node must be treated as dead whatever gossip says (cut off from its controller but not from
 * its peers, its exclusive stars are stopped by its own fence and must run elsewhere).
 *
 * So a controller too busy to renew leases (its event loop held) moves nothing while gossip
 * says its nodes are alive, and a gossip false positive moves nothing while the lease holds.
 */
import type { MemberState } from "../cluster/gossip/swim.js";

/** How many TTLs without a lease make a node dead even while gossip says it is alive. */
export const LEASE_ONLY_AFTER = 3;

export interface LivenessFacts {
  /** The node's lease key is there (a heartbeat renewed it within the TTL). */
  leaseHeld: boolean;
  /** How long its lease has been gone (ms, monotonic), when it is. */
  leaseGoneForMs?: number;
  /** What the controller's gossip member says of it, if it knows it. */
  gossip?: MemberState;
}

export function isDead(f: LivenessFacts, ttlMs: number): boolean {
  if (f.leaseHeld) return false;
  if (f.gossip === undefined || f.gossip === "dead" || f.gossip === "left") return true;
  return (f.leaseGoneForMs ?? 0) >= LEASE_ONLY_AFTER * ttlMs;
}
