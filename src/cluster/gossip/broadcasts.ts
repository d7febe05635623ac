/**
 * News waiting to be told (memberlist's TransmitLimitedQueue): each piece is piggybacked on
 * packets until it has been sent `limit` times, the least-sent first; news of a member replaces
 * older news of that member (only the latest matters).
 */
import type { News } from "./messages.js";

interface Item {
  news: News;
  size: number;
  sent: number;
  /** Order of arrival: among equally-sent news, the newest goes first. */
  order: number;
}

/** A packet's bytes for a piece of news, about (its JSON's length: a little more than its MessagePack). */
export function newsSize(news: News): number {
  return JSON.stringify(news).length;
}

export class Broadcasts {
  private readonly items = new Map<string, Item>();
  private order = 0;

  get size(): number {
    return this.items.size;
  }

  /** News to tell: replaces any news of the same member not yet told out. */
  add(news: News): void {
    this.items.set(news.n, { news, size: newsSize(news), sent: 0, order: this.order++ });
  }

  /** The news of a member waiting to be told, if any. */
  about(member: string): News | undefined {
    return this.items.get(member)?.news;
  }

  /**
   * News for one packet: up to `budget` bytes, the least-sent first (`first`, if waiting, before
   * all: the buddy system tells a suspected member of its suspicion on the probe itself). Each
   * taken piece counts as sent once; after `limit` sends it is dropped.
   */
  take(budget: number, limit: number, first?: string): News[] {
    if (this.items.size === 0) return [];
    const sorted = [...this.items.values()].sort((a, b) => a.sent - b.sent || b.order - a.order);
    const lead = first === undefined ? undefined : this.items.get(first);
    if (lead) sorted.unshift(lead);
    const out: News[] = [];
    const taken = new Set<Item>();
    let left = budget;
    for (const item of sorted) {
      if (taken.has(item) || item.size > left) continue;
      taken.add(item);
      left -= item.size;
      out.push(item.news);
      if (++item.sent >= limit) this.items.delete(item.news.n);
      if (left < 16) break;
    }
    return out;
  }
}
