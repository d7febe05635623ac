/**
 * A watch on the SQLite store. It holds only a cursor (the next revision to deliver); when its
 * consumer asks for more and nothing is buffered, it reads the log from the cursor in one
 * snapshot, keeps the changes in its range, and moves the cursor past everything it read. So a
 * slow consumer costs no memory (it reads later, from the file), delivery is in revision order
 * with no gaps or duplicates, and a consumer that falls behind compaction gets `CompactedError`.
 *
 *   consumer next() ──▶ buffer empty? ──▶ read log [cursor, current] ──▶ none? wait for wake()
 */
import type { Watch, WatchBatch, WatchEvent } from "../types.js";
import { type ByteRange, inByteRange } from "../validate.js";
import { type LogRow, kvFromLog, prevKvFromLog } from "./schema.js";

/** Most log rows read per step; a step always ends at a revision boundary. */
const READ_ROWS = 1000;

export interface WatchSource {
  /** Log rows from `fromRev` on, ending at a revision boundary; `more`: the log goes on past `upTo`. */
  read(fromRev: number, maxRows: number): { rows: LogRow[]; upTo: number; more: boolean };
}

export class SqliteWatch implements Watch {
  readonly ready: Promise<void> = Promise.resolve();
  private cursor: number;
  private readonly buffer: WatchBatch[] = [];
  private waiter: (() => void) | undefined;
  private closed = false;
  private error: Error | undefined;

  constructor(
    private readonly source: WatchSource,
    private readonly range: ByteRange,
    fromRevision: number,
    private readonly prevKv: boolean,
    private readonly onClose: (w: SqliteWatch) => void,
  ) {
    this.cursor = fromRevision;
  }

  /** Called by the store when the log may have grown. */
  wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this);
    this.wake();
  }

  /** Ends the watch with an error its consumer will see (e.g. the store was closed). */
  fail(err: Error): void {
    this.error ??= err;
    this.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WatchBatch> {
    try {
      while (!this.closed) {
        const next = this.buffer.shift();
        if (next) {
          yield next;
          continue;
        }
        this.fill();
        if (this.buffer.length === 0 && !this.closed) {
          await new Promise<void>((resolve) => (this.waiter = resolve));
        }
      }
      if (this.error) throw this.error;
    } finally {
      this.close();
    }
  }

  private fill(): void {
    for (;;) {
      const { rows, upTo, more } = this.source.read(this.cursor, READ_ROWS);
      let batch: WatchBatch | undefined;
      for (const row of rows) {
        if (!inByteRange(this.range, row.key)) continue;
        if (!batch || batch.revision !== row.rev) {
          batch = { revision: row.rev, events: [] };
          this.buffer.push(batch);
        }
        batch.events.push(this.event(row));
      }
      if (upTo >= this.cursor) this.cursor = upTo + 1;
      // Keep reading while the pages read held nothing for us and the log goes on.
      if (this.buffer.length > 0 || !more) return;
    }
  }

  private event(row: LogRow): WatchEvent {
    const ev: WatchEvent = { type: row.deleted ? "delete" : "put", kv: kvFromLog(row) };
    if (this.prevKv) {
      const prev = prevKvFromLog(row);
      if (prev) ev.prevKv = prev;
    }
    return ev;
  }
}
