/**
 * A lease keeper times its lease by the monotonic clock: a step of the wall clock (NTP, an
 * operator) neither loses a lease the store keeps nor keeps one the store cannot renew.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { StoreUnavailableError } from "../../src/model/errors.js";
import { LeaseKeeper } from "../../src/store/lease-keeper.js";
import { openStore } from "../../src/store/open.js";
import type { Store } from "../../src/store/types.js";
import { waitFor } from "../helpers/wait.js";

/** Runs `f` with Date.now() moved by `shiftMs`. */
async function withClockShift<T>(shiftMs: number, f: () => Promise<T>): Promise<T> {
  const real = Date.now;
  Date.now = () => real() + shiftMs;
  try {
    return await f();
  } finally {
    Date.now = real;
  }
}

describe("LeaseKeeper and the wall clock", () => {
  it("a jump forward of an hour does not lose a lease the store renews", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    try {
      const { id, ttl } = await store.grantLease(1);
      const keeper = new LeaseKeeper(store, id, ttl);
      await withClockShift(3600_000, async () => {
        // Three TTLs of renewals: still held.
        const deadline = performance.now() + 3000;
        await waitFor("three TTLs", () => (performance.now() > deadline ? true : undefined), { timeoutMs: 10_000 });
        assert.equal(keeper.active, true, "the lease was taken for lost on the wall clock's jump");
      });
      keeper.stop();
    } finally {
      await store.close();
    }
  });

  it("a jump back of an hour does not keep a lease the store cannot renew: lost after its TTL", async () => {
    const real = await openStore({ backend: "sqlite", path: ":memory:" });
    try {
      const { id, ttl } = await real.grantLease(1);
      // The store away: every renewal fails as an unreachable etcd's would.
      const away = new Proxy(real, {
        get: (t, p, r) => (p === "keepAliveOnce" ? () => Promise.reject(new StoreUnavailableError("etcd is away")) : Reflect.get(t, p, r)),
      }) as Store;
      const keeper = new LeaseKeeper(away, id, ttl);
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const tooLate = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("the lease was kept 10 s with no renewal")), 10_000)));
      await withClockShift(-3600_000, () => Promise.race([keeper.lost, tooLate]));
      clearTimeout(timer);
      const after = performance.now() - started;
      assert.ok(after >= 900 && after < 3000, `lost after ${Math.round(after)} ms (TTL 1 s)`);
    } finally {
      await real.close();
    }
  });
});
