/**
 * Leases of the SQLite store run on a steady clock: the machine's clock set an hour forward
 * does not expire a lease (which took every node for dead at once), nor set back keep it alive;
 * a lease still expires after its TTL in real time.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openStore } from "../../src/store/open.js";
import { waitFor } from "../helpers/wait.js";

const HOUR = 3_600_000;

describe("sqlite store: leases and a clock that jumps", () => {
  for (const [what, jump] of [["forward", HOUR], ["back", -HOUR]] as const) {
    it(`a clock set an hour ${what} neither expires a lease early nor keeps it alive`, async () => {
      const realNow = Date.now;
      let offset = 0; // the machine's clock, as this process sees it
      Date.now = () => realNow() + offset;
      const store = await openStore({ backend: "sqlite", path: ":memory:" });
      try {
        const lease = await store.grantLease(2);
        await store.put("alive/n1", "x", { lease: lease.id });
        const grantedAt = performance.now();
        offset = jump;
        // At once after the jump: alive, about its TTL left, and renewable.
        const info = await store.leaseInfo(lease.id);
        assert.ok(info && info.ttl > 0 && info.ttl <= 2, JSON.stringify(info));
        assert.ok(await store.get("alive/n1"));
        assert.equal(await store.keepAliveOnce(lease.id), 2);
        // Not renewed again: it ends after its TTL in real time, not an hour off.
        await waitFor("the lease to expire", async () => ((await store.get("alive/n1")) === undefined ? true : undefined), { timeoutMs: 6000 });
        assert.ok(performance.now() - grantedAt >= 1900, "not before its TTL");
      } finally {
        Date.now = realNow;
        await store.close();
      }
    });
  }
});
