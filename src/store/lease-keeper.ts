/**
 * Keeps a lease alive by renewing it every TTL/3 seconds. A renewal that hangs (a member that
 * stopped answering, say) does not hold up the next one: renewals go out on the interval, a few
 * may be in flight at once. Transient errors are retried until the lease's own deadline; after
 * that, or as soon as the store says the lease is gone, the keeper reports the loss once and stops.
 */
import { isConstellationError } from "../model/errors.js";
import type { LeaseId, Store } from "./types.js";

const MAX_IN_FLIGHT = 3;

export class LeaseKeeper {
  private readonly timer: NodeJS.Timeout;
  private stopped = false;
  private isLost = false;
  private inFlight = 0;
  private deadline: number;
  private readonly listeners = new Set<() => void>();
  /** Resolves when the lease is lost (expired, revoked, or unrenewable until its deadline). */
  readonly lost: Promise<void>;

  constructor(
    private readonly store: Store,
    readonly id: LeaseId,
    ttlSeconds: number,
  ) {
    this.deadline = performance.now() + ttlSeconds * 1000;
    this.lost = new Promise((resolve) => this.listeners.add(resolve));
    this.timer = setInterval(() => this.tick(), Math.max(50, (ttlSeconds * 1000) / 3));
  }

  /** Calls `fn` once when the lease is lost; returns a function that unsubscribes. */
  onLost(fn: () => void): () => void {
    if (this.isLost) {
      fn();
      return () => undefined;
    }
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private tick(): void {
    if (performance.now() >= this.deadline) return this.markLost();
    if (this.inFlight < MAX_IN_FLIGHT) void this.renew();
  }

  private async renew(): Promise<void> {
    const sentAt = performance.now();
    this.inFlight++;
    try {
      const ttl = await this.store.keepAliveOnce(this.id);
      this.deadline = Math.max(this.deadline, sentAt + ttl * 1000);
    } catch (err) {
      if (isConstellationError(err) && err.code === "STORE_LEASE_NOT_FOUND") this.markLost();
      // anything else: transient; the next tick tries again while the deadline allows
    } finally {
      this.inFlight--;
    }
  }

  private markLost(): void {
    if (this.isLost) return;
    this.isLost = true;
    this.stop();
    for (const fn of this.listeners) fn();
    this.listeners.clear();
  }

  /** Stops renewing (the lease then expires after its TTL unless revoked). */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  get active(): boolean {
    return !this.stopped;
  }
}
