/**
 * A node is dead when its lease has expired and gossip agrees (src/controller/liveness.ts), or
 * its lease has been gone for LEASE_ONLY_AFTER TTLs whatever gossip says.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { LEASE_ONLY_AFTER, isDead } from "../../src/controller/liveness.js";

test("dead = lease expired and gossip agrees (or no gossip), or the lease long gone", () => {
  const ttl = 10_000;
  assert.equal(isDead({ leaseHeld: true, gossip: "dead" }, ttl), false, "a gossip false positive moves nothing while the lease holds");
  assert.equal(isDead({ leaseHeld: false, leaseGoneForMs: 0 }, ttl), true, "no gossip: the lease alone, as before");
  assert.equal(isDead({ leaseHeld: false, leaseGoneForMs: 0, gossip: "dead" }, ttl), true);
  assert.equal(isDead({ leaseHeld: false, leaseGoneForMs: 0, gossip: "left" }, ttl), true);
  for (const g of ["alive", "suspect"] as const) {
    assert.equal(isDead({ leaseHeld: false, leaseGoneForMs: ttl, gossip: g }, ttl), false, `a busy controller's lapsed lease, gossip ${g}: not dead`);
    assert.equal(isDead({ leaseHeld: false, leaseGoneForMs: LEASE_ONLY_AFTER * ttl, gossip: g }, ttl), true, `cut off from its controller for ${LEASE_ONLY_AFTER} TTLs: dead`);
  }
});
