/**
 * The event log: every decision and state change, as keys under /constellation/events/. A key
 * is the writer's clock, node and counter (unique without coordination); an event's `seq` is the
 * store revision that wrote it, so events read back in the order the store took them, and
 * `since` a seq resumes exactly.
 */
import { setImmediate } from "node:timers/promises";
import type { KeyValue, Store } from "../store/types.js";
import { type Event, type EventKind, KEYS } from "../model/records.js";

/** Events kept; older ones are pruned. */
export const EVENTS_KEPT = 10_000;

export class EventLog {
  private counter = 0;

  constructor(
    private readonly store: Store,
    private readonly writer: string,
  ) {}

  async record(kind: EventKind, message: string, about: { star?: string; uid?: string; node?: string; deployment?: string } = {}): Promise<void> {
    const key = `${KEYS.events}${String(Date.now()).padStart(15, "0")}-${this.writer}-${String(++this.counter).padStart(8, "0")}`;
    const body: Omit<Event, "seq"> = { at: Date.now(), kind, message, ...about };
    await this.store.put(key, JSON.stringify(body));
  }

  /** Events after `since` (a seq), oldest first, at most `limit` (the newest ones). */
  /** Events after `since`, about `star` (and of that very star, `uid`: not an earlier one of its name). */
  async list(options: { since?: number; limit?: number; star?: string; uid?: string; deployment?: string } = {}): Promise<Event[]> {
    const { kvs } = await this.store.range({ prefix: KEYS.events });
    let events = kvs
      .map(eventOf)
      .filter((e) => e.seq > (options.since ?? 0) && (!options.star || e.star === options.star) && (!options.uid || e.uid === options.uid) && (!options.deployment || e.deployment === options.deployment));
    events.sort((a, b) => a.seq - b.seq);
    if (options.limit !== undefined && events.length > options.limit) events = events.slice(events.length - options.limit);
    return events;
  }

  /** Keeps the newest EVENTS_KEPT events. */
  async prune(): Promise<number> {
    const { kvs, count } = await this.store.range({ prefix: KEYS.events }, { keysOnly: true });
    if (count <= EVENTS_KEPT) return 0;
    const old = [...kvs].sort((a, b) => a.modRevision - b.modRevision).slice(0, count - EVENTS_KEPT);
    for (let i = 0; i < old.length; i += 100) {
      await this.store.txn({ success: old.slice(i, i + 100).map((kv) => ({ type: "delete" as const, range: { key: kv.key } })) });
      await setImmediate(); // the store answers at once: let the event loop turn between batches
    }
    return old.length;
  }
}

export function eventOf(kv: KeyValue): Event {
  return { ...(JSON.parse(kv.value) as Omit<Event, "seq">), seq: kv.modRevision };
}
