/**
 * Following a key or prefix: `onChange` gets what is there now, then is called again after every
 * change, until `signal` aborts. A watch that breaks (the store away, a compaction) is made
 * again from a fresh read, so no change is missed for long and none is seen twice as current.
 */
import type { KeyRange, KeyValue, Store } from "./types.js";

export async function follow(
  store: Store,
  range: KeyRange,
  onChange: (kvs: KeyValue[]) => void,
  signal: AbortSignal,
  onError: (err: Error, failures: number) => void,
): Promise<void> {
  let failures = 0;
  while (!signal.aborted) {
    try {
      const { kvs, revision } = await store.range(range);
      onChange(kvs);
      const watch = store.watch(range, { fromRevision: revision + 1 });
      const stop = () => watch.close();
      signal.addEventListener("abort", stop);
      try {
        for await (const _batch of watch) {
          failures = 0;
          // A batch is one or more changes: the whole range is read again (small: a keyring, a list).
          onChange((await store.range(range)).kvs);
        }
      } finally {
        signal.removeEventListener("abort", stop);
        watch.close();
      }
    } catch (err) {
      if (signal.aborted) return;
      onError(err as Error, failures++);
      await new Promise((r) => setTimeout(r, Math.min(5000, 200 * failures)).unref());
    }
  }
}
