/**
 * News waiting to be told (memberlist's TransmitLimitedQueue): each piece is piggybacked on
 * packets until it has been sent `limit` times, the least-sent first; news of a member replaces
 * older news of that member (only the latest matters). Kept in buckets by times sent, so taking
 * a packet's worth costs the few pieces taken, not a sort of the whole queue (a thousand members
 * joining is a thousand pieces of news).
 */
import type { News } from "./messages.js";

interface Item {
  news: News;
  size: number;
  sent: number;
}

/** A packet's bytes for a piece of news, about (its JSON's length: a little more than its MessagePack). */
export function newsSize(news: News): number {
  return JSON.stringify(news).length;
}

export class Broadcasts {
  private readonly items = new Map<string, Item>();
  /** Items by times sent. */
  private readonly buckets: Array<Set<Item>> = [];

  get size(): number {
    return this.items.size;
  }

  /** News to tell: replaces any news of the same member not yet told out. */
  add(news: News): void {
    const old = this.items.get(news.n);
    if (old) this.buckets[old.sent]!.delete(old);
    const item: Item = { news, size: newsSize(news), sent: 0 };
    this.items.set(news.n, item);
    (this.buckets[0] ??= new Set()).add(item);
  }

  /**
   * News for one packet: up to `budget` bytes, the least-sent first (`first`, if waiting, before
   * all: the buddy system tells a suspected member of its suspicion on the probe itself). Each
   * taken piece counts as sent once; after `limit` sends it is dropped.
   */
  take(budget: number, limit: number, first?: string): News[] {
    if (this.items.size === 0) return [];
    const taken: Item[] = [];
    let left = budget;
    const lead = first === undefined ? undefined : this.items.get(first);
    if (lead && lead.size <= left) {
      taken.push(lead);
      left -= lead.size;
    }
    scan: for (const bucket of this.buckets) {
      if (!bucket) continue;
      for (const item of bucket) {
        if (left < 16) break scan;
        if (item === lead || item.size > left) continue;
        taken.push(item);
        left -= item.size;
      }
    }
    for (const item of taken) {
      this.buckets[item.sent]!.delete(item);
      if (++item.sent >= limit) this.items.delete(item.news.n);
      else (this.buckets[item.sent] ??= new Set()).add(item);
    }
    return taken.map((i) => i.news);
  }
}
