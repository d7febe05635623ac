/**
 * Leader election on any Store (lease + txn), the recipe of etcd's concurrency package:
 *
 *   campaign ─▶ grant lease ─▶ put <prefix><lease> (only if absent) ─▶ token = its createRevision
 *            ─▶ wait until no key under <prefix> has a smaller createRevision ─▶ leader
 *   leader   ─▶ lease kept alive every TTL/3; lease lost or key deleted ─▶ leadership lost
 *   resign   ─▶ delete the key and revoke the lease ─▶ the next contender in line leads
 *
 * Contenders lead in the order they queued, so tokens grow with every new leader. The token is
 * the fencing token: `leadership.txn()` adds a compare that the leader's key still exists with
 * that createRevision, so a write from a leader that has lost office (its lease expired while
 * it was paused, say) is rejected by the store itself with `NotLeaderError`.
 */
import { CompactedError, InvalidArgumentError, NotLeaderError } from "../model/errors.js";
import { LeaseKeeper } from "./lease-keeper.js";
import type { Compare, KeyValue, Store, TxnRequest, TxnResult } from "./types.js";

export interface ElectionOptions {
  /** Lease TTL in seconds (default 5): how long a dead leader holds office. */
  ttl?: number;
  /** Key prefix for the election's keys (default "elections/"). */
  prefix?: string;
  /** Told once of each key under the prefix that is not a claim (no lease, or not named by it): ignored. */
  log?: (line: string) => void;
}

export interface LeaderInfo {
  key: string;
  value: string;
  /** The fencing token: the revision at which this leader's claim was created. */
  token: number;
}

export class Leadership {
  private ended = false;
  /** Resolves when leadership ends for any reason (resign, lease lost, key deleted). */
  readonly lost: Promise<void>;

  constructor(
    private readonly store: Store,
    readonly election: string,
    readonly key: string,
    /** Fencing token: attach it (via `fence()` or `txn()`) to every write made as leader. */
    readonly token: number,
    /** The store revision at which this contender became leader. */
    readonly wonAt: number,
    private readonly keeper: LeaseKeeper,
    private readonly keyWatch: { gone: Promise<void>; close: () => void },
  ) {
    this.lost = Promise.race([keeper.lost, keyWatch.gone]).then(() => {
      this.ended = true;
      keeper.stop();
      keyWatch.close();
    });
  }

  /** False once leadership is known to be lost (the store is still the judge: see txn()). */
  get active(): boolean {
    return !this.ended;
  }

  /** The compare that holds only while this leadership holds. */
  fence(): Compare {
    return { key: this.key, target: "createRevision", op: "=", value: this.token };
  }

  /**
   * A txn that runs only while this contender still leads. If the fence fails, throws
   * `NotLeaderError` and nothing is written; if only the caller's own compares fail, returns
   * the result with `succeeded: false` as usual. The `failure` branch may only read: it also
   * runs when the fence fails, and a store txn cannot fence it separately.
   */
  async txn(request: TxnRequest): Promise<TxnResult> {
    if (request.failure?.some((op) => op.type !== "range")) {
      throw new InvalidArgumentError(
        "failure",
        "a fenced txn's failure branch may only contain range ops: it would also run for a leader that lost office",
      );
    }
    const res = await this.store.txn({ ...request, compare: [this.fence(), ...(request.compare ?? [])] });
    if (res.succeeded) return res;
    // A fence that holds now held at the txn too (a key never returns with the same createRevision).
    const kv = await this.store.get(this.key);
    if (kv?.createRevision !== this.token) {
      throw new NotLeaderError(this.election, `leadership with token ${this.token} has ended; the write was rejected`);
    }
    return res;
  }

  /** Steps down: deletes the claim and revokes its lease, so the next contender leads now. */
  async resign(): Promise<void> {
    this.ended = true;
    this.keeper.stop();
    this.keyWatch.close();
    await this.store.txn({ compare: [this.fence()], success: [{ type: "delete", range: { key: this.key } }] });
    await this.store.revokeLease(this.keeper.id).catch(() => undefined);
  }
}

export class Election {
  private readonly ttl: number;
  private readonly prefix: string;
  private readonly ignored = new Set<string>();

  constructor(
    private readonly store: Store,
    readonly name: string,
    private readonly options: ElectionOptions = {},
  ) {
    this.ttl = options.ttl ?? 5;
    this.prefix = `${options.prefix ?? "elections/"}${name}/`;
  }

  /**
   * The claims among keys under the prefix: each is named by its own lease (as campaign puts
   * it), so a key written by hand — no lease, or another name — leads nothing (it would lead
   * for ever, never expiring).
   */
  private claims(kvs: KeyValue[]): KeyValue[] {
    return kvs.filter((kv) => {
      if (kv.lease !== undefined && kv.key === `${this.prefix}${kv.lease}`) return true;
      if (!this.ignored.has(kv.key)) {
        this.ignored.add(kv.key);
        this.options.log?.(`election ${this.name}: ignoring ${kv.key}: not a claim (${kv.lease === undefined ? "no lease" : `not named by its lease ${kv.lease}`}); someone wrote it by hand? delete it`);
      }
      return false;
    });
  }

  /**
   * Queues for leadership and resolves when this contender leads. Abort with `signal` to leave
   * the queue (the claim is withdrawn).
   *
   * @example
   * const leadership = await new Election(store, "controller").campaign("node-1");
   * await leadership.txn({ success: [{ type: "put", key: "deployments/web", value: spec }] });
   */
  async campaign(value: string, options: { signal?: AbortSignal } = {}): Promise<Leadership> {
    const lease = await this.store.grantLease(this.ttl);
    const keeper = new LeaseKeeper(this.store, lease.id, lease.ttl);
    const key = `${this.prefix}${lease.id}`;
    try {
      const res = await this.store.txn({
        compare: [{ key, target: "createRevision", op: "=", value: 0 }],
        success: [{ type: "put", key, value, lease: lease.id }],
      });
      const token = res.revision;
      const wonAt = await this.waitForPredecessors(key, token, keeper, options.signal);
      return new Leadership(this.store, this.name, key, token, wonAt, keeper, this.watchKey(key, token, wonAt + 1));
    } catch (err) {
      keeper.stop();
      await this.store.revokeLease(lease.id).catch(() => undefined);
      throw err;
    }
  }

  /** The current leader, if any. */
  async leader(): Promise<LeaderInfo | undefined> {
    const { kvs } = await this.store.range({ prefix: this.prefix });
    return leaderOf(this.claims(kvs));
  }

  /**
   * Every change of leader, starting with the current one (undefined: nobody leads).
   * @example
   * for await (const leader of election.observe()) console.log(leader?.value ?? "no leader");
   */
  async *observe(signal?: AbortSignal): AsyncGenerator<LeaderInfo | undefined> {
    const snapshot = await this.store.range({ prefix: this.prefix });
    const keys = new Map(snapshot.kvs.map((kv) => [kv.key, kv]));
    let last = leaderOf(this.claims([...keys.values()]));
    yield last;
    const watch = this.store.watch({ prefix: this.prefix }, { fromRevision: snapshot.revision + 1 });
    const stop = () => watch.close();
    signal?.addEventListener("abort", stop, { once: true });
    if (signal?.aborted) stop(); // aborted while we were suspended at the first yield
    try {
      for await (const batch of watch) {
        for (const ev of batch.events) {
          if (ev.type === "put") keys.set(ev.kv.key, ev.kv);
          else keys.delete(ev.kv.key);
        }
        const now = leaderOf(this.claims([...keys.values()]));
        if (now?.key !== last?.key || now?.token !== last?.token) {
          last = now;
          yield now;
        }
      }
    } finally {
      signal?.removeEventListener("abort", stop);
      watch.close();
    }
  }

  /** Waits until no claim older than ours remains; returns the revision at which that held. */
  private async waitForPredecessors(key: string, token: number, keeper: LeaseKeeper, signal?: AbortSignal): Promise<number> {
    for (;;) {
      signal?.throwIfAborted();
      if (!keeper.active) throw new NotLeaderError(this.name, "our lease was lost while waiting to lead");
      const { kvs, revision } = await this.store.range({ prefix: this.prefix });
      const mine = kvs.find((kv) => kv.key === key);
      if (!mine || mine.createRevision !== token) {
        throw new NotLeaderError(this.name, "our claim disappeared (lease lost) while waiting to lead");
      }
      const older = this.claims(kvs).filter((kv) => kv.createRevision < token);
      if (older.length === 0) return revision;
      // Wait for the newest older claim to go (as etcd does: no thundering herd).
      const prev = older.reduce((a, b) => (a.createRevision > b.createRevision ? a : b));
      await this.waitUntilGone(prev.key, revision + 1, keeper, signal);
    }
  }

  private async waitUntilGone(key: string, fromRevision: number, keeper: LeaseKeeper, signal?: AbortSignal): Promise<void> {
    const watch = this.store.watch({ key }, { fromRevision });
    const stop = () => watch.close();
    signal?.addEventListener("abort", stop, { once: true });
    const unsubscribe = keeper.onLost(stop);
    if (signal?.aborted) stop();
    try {
      for await (const batch of watch) {
        if (batch.events.some((ev) => ev.type === "delete")) return;
      }
    } catch (err) {
      // History compacted under us: the caller looks at the current state again.
      if (!(err instanceof CompactedError)) throw err;
    } finally {
      signal?.removeEventListener("abort", stop);
      unsubscribe();
      watch.close();
    }
  }

  /**
   * `gone` resolves when our claim is deleted (or replaced), i.e. leadership is over. Watches
   * from `fromRevision`, at which the claim was seen to exist; if that history has been
   * compacted, it looks at the claim again and watches on from there.
   */
  private watchKey(key: string, token: number, fromRevision: number): { gone: Promise<void>; close: () => void } {
    let closed = false;
    let watch = this.store.watch({ key }, { fromRevision });
    const gone = (async () => {
      for (;;) {
        try {
          for await (const batch of watch) {
            if (batch.events.some((ev) => ev.type === "delete" || ev.kv.createRevision !== token)) return;
          }
          return; // closed
        } catch (err) {
          if (!(err instanceof CompactedError) || closed) return; // broken: counts as lost; the fence still guards writes
          const { kvs, revision } = await this.store.range({ key }).catch(() => ({ kvs: [], revision: 0 }));
          if (kvs[0]?.createRevision !== token || closed) return;
          watch = this.store.watch({ key }, { fromRevision: revision + 1 });
        }
      }
    })().finally(() => watch.close());
    return {
      gone,
      close: () => {
        closed = true;
        watch.close();
      },
    };
  }
}

function leaderOf(kvs: KeyValue[]): LeaderInfo | undefined {
  let best: KeyValue | undefined;
  for (const kv of kvs) if (!best || kv.createRevision < best.createRevision) best = kv;
  return best ? { key: best.key, value: best.value, token: best.createRevision } : undefined;
}
