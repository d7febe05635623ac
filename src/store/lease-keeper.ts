/**
 * Keeps a lease alive by renewing it every TTL/3 seconds. Transient errors are retried until
 * the lease's own deadline; after that, or as soon as the store says the lease is gone, the
 * keeper reports the loss once and stops.
 */
import { isConstellationError } from "../errors.js";
import type { LeaseId, Store } from "./types.js";

export class LeaseKeeper {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private deadline: number;
  /** Resolves when the lease is lost (expired, revoked, or unrenewable until its deadline). */
  readonly lost: Promise<void>;
  private markLost!: () => void;

  constructor(
    private readonly store: Store,
    readonly id: LeaseId,
    private readonly ttlSeconds: number,
  ) {
    this.deadline = Date.now() + ttlSeconds * 1000;
    this.lost = new Promise((resolve) => (this.markLost = resolve));
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.renew(), Math.max(50, (this.ttlSeconds * 1000) / 3));
  }

  private async renew(): Promise<void> {
    const sentAt = Date.now();
    try {
      const ttl = await this.store.keepAliveOnce(this.id);
      this.deadline = sentAt + ttl * 1000;
    } catch (err) {
      if ((isConstellationError(err) && err.code === "STORE_LEASE_NOT_FOUND") || Date.now() >= this.deadline) {
        this.stop();
        this.markLost();
        return;
      }
    }
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
