/**
 * Namespace quotas (issue 13), one rule for the controller's admission (create, start, deploy,
 * scale: a clear error) and the scheduler's feasibility (a star over its namespace's quota is
 * placed nowhere): what the namespace holds plus what a star asks, against its caps.
 */
import type { Demand, Quota } from "./types.js";

/** What a namespace holds: its stars' demands, and how many stars it has. */
export type Usage = Pick<Demand, "cpuMillis" | "memoryBytes" | "diskBytes"> & { stars: number };

/**
 * Why `asker` ("this star", "this deployment") asking `ask` and `newStars` more stars does not
 * fit in namespace `ns` under `quota`, in a user's terms; undefined if it fits.
 */
export function quotaProblem(
  ns: string,
  quota: Quota,
  used: Usage,
  ask: Pick<Demand, "cpuMillis" | "memoryBytes" | "diskBytes">,
  newStars = 1,
  asker = "this star",
): string | undefined {
  const over = (what: string, u: number, d: number, cap: number | undefined, unit: (v: number) => string) =>
    cap !== undefined && u + d > cap ? `namespace ${ns} is at its quota of ${what}: ${unit(u)} of ${unit(cap)} used, ${asker} asks ${unit(d)}` : undefined;
  return (
    (newStars > 0 ? over("stars", used.stars, newStars, quota.stars, String) : undefined) ??
    over("cpu", used.cpuMillis, ask.cpuMillis, quota.cpuMillis, (v) => `${v / 1000} ${v === 1000 ? "core" : "cores"}`) ??
    over("memory", used.memoryBytes, ask.memoryBytes, quota.memoryBytes, mib) ??
    over("disk", used.diskBytes, ask.diskBytes, quota.diskBytes, mib)
  );
}

const mib = (v: number) => `${Math.round(v / 2 ** 20)} MiB`;
