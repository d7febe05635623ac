/**
 * What a star may be created with, beyond the spec's own rules (pure functions; the controller
 * applies them at create and start, docs/api.md "Auth"):
 *
 * - fields only an admin may set (they widen what a star can reach);
 * - a child (made by a star's token) gets at most its parent's limits, and inherits the limits
 *   its parent sets that it leaves out;
 * - a node promises at most memoryOvercommit × its memory to the stars that should run there.
 */
import { type Limits, type NodeLimits, type StarSpec, type StarSpecInput, limitsOf, parseStarSpec } from "../model/spec.js";
import { ParentLimitError } from "../model/errors.js";
import { DEFAULT_PRIORITY } from "../scheduler/types.js";

const MB = 2 ** 20;

/** The first field of `spec` that only an admin token may set, with why; undefined if none. */
export function adminOnlyField(spec: StarSpec): { field: string; why: string } | undefined {
  if (spec.seccomp === "unconfined") return { field: "seccomp", why: 'seccomp "unconfined" turns off the system call filter; leave seccomp out to get the default filter' };
  if (spec.mounts.length > 0) return { field: "mounts", why: "mounts show more of the host to the star; leave mounts out" };
  if (spec.root !== undefined) return { field: "root", why: "root runs the star in a root filesystem of the caller's choosing; leave root out" };
  if (spec.runtime === "isolate") {
    return { field: "runtime", why: 'runtime "isolate" runs the star in the node\'s shared isolate host, which is no boundary between stars (docs/runtime.md); leave runtime out (process)' };
  }
  // Restarts: a crash loop of someone else's star backs off like Kubernetes' (to 10 s at least),
  // not as fast as the store can take its events.
  if (spec.backoff_ms < MIN_BACKOFF_MS) return { field: "backoff_ms", why: `backoff_ms under ${MIN_BACKOFF_MS} restarts a crashing star too fast; ask for at least ${MIN_BACKOFF_MS}` };
  if (spec.max_backoff_ms < MIN_MAX_BACKOFF_MS) {
    return { field: "max_backoff_ms", why: `max_backoff_ms under ${MIN_MAX_BACKOFF_MS} keeps a crashing star restarting fast for ever; ask for at least ${MIN_MAX_BACKOFF_MS}` };
  }
  // Each change of a check's verdict is written to the store: a flapping check every 50 ms of
  // someone else's star would write as fast as the store takes it.
  if (spec.health && spec.health.interval_ms < MIN_CHECK_INTERVAL_MS) {
    return { field: "health.interval_ms", why: `health checks more often than every ${MIN_CHECK_INTERVAL_MS} ms write too often; ask for at least ${MIN_CHECK_INTERVAL_MS}` };
  }
  return undefined;
}

/** The fastest restarts a star's token may ask for its children (admins may ask for any). */
export const MIN_BACKOFF_MS = 100;
export const MIN_MAX_BACKOFF_MS = 10_000;
/** The most often a star's child may be health-checked (Kubernetes' periodSeconds is at least 1). */
export const MIN_CHECK_INTERVAL_MS = 1000;

/** A spec's limits with the node's defaults, whatever the node's ceilings (what it has, not may ask). */
export function effectiveLimits(spec: StarSpec, node: NodeLimits): Limits {
  return limitsOf(spec, { cpuCores: Infinity, memoryBytes: Infinity, limits: { ...node, maxPids: Infinity, maxNofile: Infinity, maxLogMb: Infinity } });
}

/** Fields inherited together: a child that sets none of a group gets the parent's fields of it. */
const INHERITED: Array<Array<keyof StarSpecInput>> = [["cpu_percent", "cpu_cores"], ["ram_mb", "ram_gb"], ["disk_mb"], ["pids"], ["nofile"], ["log_max_mb"], ["log_max_files"], ["stop_grace_ms"], ["priority"]];

/**
 * The child's spec as it will be stored: each limit it leaves out that its parent's spec sets is
 * the parent's (written into the child's spec, so it reads back as it runs); a limit the parent
 * leaves out is the node's default for both. Throws ParentLimitError if the child's effective
 * CPU, memory, disk, pids, nofile, log size or stop grace is over its parent's (a child still
 * running in a long grace would hold memory its parent gave back).
 */
export function withinParent(input: StarSpecInput, parentInput: StarSpecInput, parentName: string, node: NodeLimits): StarSpecInput {
  const out: Record<string, unknown> = { ...input };
  for (const group of INHERITED) {
    if (group.some((f) => input[f] !== undefined)) continue;
    for (const f of group) if (parentInput[f] !== undefined) out[f] = parentInput[f];
  }
  const childSpec = parseStarSpec(out);
  const parentSpec = parseStarSpec(parentInput);
  const c = effectiveLimits(childSpec, node);
  const p = effectiveLimits(parentSpec, node);
  const over = (field: string, asked: string, has: string, parentSets: boolean): never => {
    throw new ParentLimitError(field, asked, parentName, `${has}${parentSets ? "" : " (the node's default)"}`);
  };
  // (A limit the parent sets and the child leaves out was inherited above: the child has one.)
  if (p.cpuMillis !== undefined && c.cpuMillis! > p.cpuMillis) {
    if (childSpec.cpu_cores !== undefined) over("cpu_cores", `${childSpec.cpu_cores} cores`, `${p.cpuMillis / 1000} cores`, true);
    over("cpu_percent", `${childSpec.cpu_percent} % of a core`, `${p.cpuMillis / 10} % of a core`, true);
  }
  if (c.memoryBytes! > p.memoryBytes!) {
    const sets = parentSpec.ram_mb !== undefined || parentSpec.ram_gb !== undefined;
    over(childSpec.ram_gb !== undefined ? "ram_gb" : "ram_mb", `${mb(c.memoryBytes!)} MB`, `${mb(p.memoryBytes!)} MB`, sets);
  }
  if (p.diskBytes !== undefined && c.diskBytes! > p.diskBytes) over("disk_mb", `${mb(c.diskBytes!)} MB`, `${mb(p.diskBytes)} MB`, parentSpec.disk_mb !== undefined);
  if (c.pids > p.pids) over("pids", `${c.pids} processes`, `${p.pids} processes`, parentSpec.pids !== undefined);
  if (c.nofile! > p.nofile!) over("nofile", `${c.nofile} open files`, `${p.nofile} open files`, parentSpec.nofile !== undefined);
  const logs = (s: StarSpec) => 2 * s.log_max_mb * s.log_max_files;
  if (logs(childSpec) > logs(parentSpec)) {
    const field = input.log_max_mb === undefined && input.log_max_files !== undefined ? "log_max_files" : "log_max_mb";
    over(field, `${logs(childSpec)} MB of logs`, `${logs(parentSpec)} MB of logs (2 streams × log_max_mb × log_max_files)`, true);
  }
  if (childSpec.stop_grace_ms > parentSpec.stop_grace_ms) {
    over("stop_grace_ms", `${childSpec.stop_grace_ms} ms`, `${parentSpec.stop_grace_ms} ms`, parentInput.stop_grace_ms !== undefined);
  }
  // A star may not make a child that would push aside stars it could not push aside itself.
  if ((childSpec.priority ?? DEFAULT_PRIORITY) > (parentSpec.priority ?? DEFAULT_PRIORITY)) {
    over("priority", `priority ${childSpec.priority}`, `priority ${parentSpec.priority ?? DEFAULT_PRIORITY}`, true);
  }
  return out as StarSpecInput;
}

/** How much of a node's memory is promised to stars that should run there. */
export interface MemoryBudget {
  /** memoryOvercommit × the node's memory. */
  allowedBytes: number;
  usedBytes: number;
  leftBytes: number;
}

export function memoryBudget(memoryBytes: number, overcommit: number, committed: Iterable<number>): MemoryBudget {
  const allowedBytes = Math.floor(memoryBytes * overcommit);
  let usedBytes = 0;
  for (const b of committed) usedBytes += b;
  return { allowedBytes, usedBytes, leftBytes: Math.max(0, allowedBytes - usedBytes) };
}

/** Whether a star with this much memory fits in the budget. */
export function fits(budget: MemoryBudget, bytes: number): boolean {
  return budget.usedBytes + bytes <= budget.allowedBytes;
}

export function mb(bytes: number): number {
  return Math.round(bytes / MB);
}
