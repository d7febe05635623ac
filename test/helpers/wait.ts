/** Polling helpers: tests wait for a condition with a deadline, never for a fixed time. */
import { setTimeout as delay } from "node:timers/promises";
import type { Watch, WatchBatch } from "../../src/store/types.js";

export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  { timeoutMs = 10_000, intervalMs = 20 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    }
    await delay(intervalMs);
  }
}

/** Reads batches from a watch until `enough` says so, or fails after the deadline. */
export async function collect(
  watch: Watch,
  enough: (batches: WatchBatch[]) => boolean,
  timeoutMs = 10_000,
): Promise<WatchBatch[]> {
  const batches: WatchBatch[] = [];
  const it = watch[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`watch: timed out after ${timeoutMs} ms with ${batches.length} batches`)), timeoutMs);
  });
  try {
    while (!enough(batches)) {
      const next = await Promise.race([it.next(), timeout]);
      if (next.done) break;
      batches.push(next.value);
    }
    return batches;
  } finally {
    clearTimeout(timer);
  }
}

export function eventCount(batches: WatchBatch[]): number {
  return batches.reduce((n, b) => n + b.events.length, 0);
}

/** Ends a process as a user would (SIGTERM), and if it has not ended within 10 s, kills it. */
export async function endProcess(pid: number, what = `process ${pid}`): Promise<void> {
  const gone = () => {
    try {
      process.kill(pid, 0);
      return undefined;
    } catch {
      return true;
    }
  };
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return; // ended already
  }
  await waitFor(`${what} to end`, gone).catch(() => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // ended meanwhile
    }
  });
}
