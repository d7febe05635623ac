/**
 * Memory a node's process gives back. glibc's malloc keeps the pages it frees below memory still
 * in use for good: after 10,000 stars are created, or 100 nodes reconnect at once, a controller
 * would hold ~15 MB it no longer uses (measured: bench/cluster/controller-bench.ts). A node's
 * process hands such pages back to the kernel every few seconds with malloc_trim(0), through a
 * small addon (native/malloc-trim.c) built with the star launcher; where it could not be built
 * (no glibc), nothing is done.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** How often a node's process gives back its free memory (a walk of malloc's free lists: ~1 ms). */
export const TRIM_EVERY_MS = 10_000;

const ADDON = fileURLToPath(new URL("../../native/malloc-trim.node", import.meta.url));

let trimmer: (() => boolean) | null | undefined;

/**
 * Gives the free pages malloc holds back to the kernel. True if some were given back, false if
 * none, undefined where this cannot be done (the addon is not built: not glibc).
 */
export function trimMalloc(): boolean | undefined {
  if (trimmer === undefined) {
    try {
      const trim = (createRequire(import.meta.url)(ADDON) as { trim?: unknown }).trim;
      trimmer = typeof trim === "function" ? (trim as () => boolean) : null;
    } catch {
      trimmer = null; // not built here (not glibc), or not loadable: memory is kept, nothing else
    }
  }
  try {
    return trimmer === null ? undefined : trimmer();
  } catch {
    return undefined;
  }
}

/** Gives back the free memory now and every `everyMs` until the returned function is called. */
export function keepTrimmingMalloc(everyMs = TRIM_EVERY_MS): () => void {
  if (trimMalloc() === undefined) return () => undefined;
  const timer = setInterval(trimMalloc, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
