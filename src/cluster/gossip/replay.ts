/**
 * Replayed gossip packets are dropped (pure). Each sender numbers its packets from a random
 * epoch (one per process start): a packet whose (epoch, counter) was seen, or that is older than
 * the last 1,024 of its epoch, is a replay. The last few epochs of each sender are kept (a packet
 * of an earlier process that comes late is still judged by its own window).
 */

/** Packets of one epoch: the highest counter seen, and which of the 1,024 below it were. */
interface Window {
  top: number;
  seen: Uint32Array;
  used: number;
}

const WINDOW = 1024;
const EPOCHS_KEPT = 4;

export class ReplayGuard {
  private readonly senders = new Map<string, Map<string, Window>>();
  private uses = 0;

  constructor(
    /** Senders remembered at most (the least recently heard are forgotten). */
    private readonly maxSenders = 100_000,
  ) {}

  /** True the first time (sender, epoch, counter) is seen within its window; false for a replay. */
  accept(sender: string, epoch: string, counter: number): boolean {
    let epochs = this.senders.get(sender);
    if (!epochs) {
      if (this.senders.size >= this.maxSenders) this.forgetOldest();
      epochs = new Map();
      this.senders.set(sender, epochs);
    }
    let w = epochs.get(epoch);
    if (!w) {
      if (epochs.size >= EPOCHS_KEPT) {
        let oldest: string | undefined;
        let least = Number.POSITIVE_INFINITY;
        for (const [e, x] of epochs) if (x.used < least) [oldest, least] = [e, x.used];
        epochs.delete(oldest!);
      }
      w = { top: -1, seen: new Uint32Array(WINDOW / 32), used: 0 };
      epochs.set(epoch, w);
    }
    w.used = ++this.uses;
    if (counter > w.top) {
      // Slide: counters between the old top and this one were not seen.
      const shift = counter - w.top;
      if (shift >= WINDOW) w.seen.fill(0);
      else for (let c = w.top + 1; c < counter; c++) clear(w.seen, c % WINDOW);
      w.top = counter;
      set(w.seen, counter % WINDOW);
      return true;
    }
    if (w.top - counter >= WINDOW) return false; // too old to judge: taken for a replay
    if (get(w.seen, counter % WINDOW)) return false;
    set(w.seen, counter % WINDOW);
    return true;
  }

  private forgetOldest(): void {
    let oldest: string | undefined;
    let least = Number.POSITIVE_INFINITY;
    for (const [s, epochs] of this.senders) {
      for (const w of epochs.values()) if (w.used < least) [oldest, least] = [s, w.used];
    }
    if (oldest !== undefined) this.senders.delete(oldest);
  }
}

function get(bits: Uint32Array, i: number): boolean {
  return (bits[i >> 5]! & (1 << (i & 31))) !== 0;
}
function set(bits: Uint32Array, i: number): void {
  bits[i >> 5]! |= 1 << (i & 31);
}
function clear(bits: Uint32Array, i: number): void {
  bits[i >> 5]! &= ~(1 << (i & 31));
}
