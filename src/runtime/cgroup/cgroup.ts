/**
 * One interface over the kernel's two cgroup versions (and their absence). A driver makes a
 * group per star with its limits, names the files a process writes itself into (the star's
 * launcher joins before its first instruction), reads usage, kills everything inside, removes it.
 * One file per driver: cgroup-v1.ts, cgroup-v2.ts, cgroup-none.ts; detect.ts picks one.
 */
import type { Limits } from "../../model/spec.js";

export type CgroupVersion = "v1" | "v2" | "none";

/** What a driver can enforce on this node (false: it would be silently unlimited). */
export interface CgroupCapabilities {
  cpu: boolean;
  memory: boolean;
  pids: boolean;
  /** Why something is missing, for error messages. */
  missing: string[];
}

export interface CgroupStats {
  /** CPU time used, microseconds. */
  cpuUsageUsec: number;
  memoryBytes: number;
  /** Highest memory use seen, when the kernel reports it. */
  memoryPeakBytes?: number;
  pids: number;
  /** Times the kernel's OOM killer killed a process of this group. */
  oomKills: number;
}

export interface StarCgroup {
  /** The cgroup.procs files a process writes "0" into to join (one per v1 hierarchy). */
  readonly procsFiles: string[];
  setLimits(limits: Limits): Promise<void>;
  stats(): Promise<CgroupStats>;
  /** CPU time and memory in use, read synchronously from two files (for frequent sampling). */
  usage(): { cpuUsageUsec: number; memoryBytes: number };
  /** Process IDs inside the group. */
  pids(): Promise<number[]>;
  /** Sends a signal to every process in the group (until it is empty, for SIGKILL). */
  killAll(signal: NodeJS.Signals): Promise<void>;
  /** Removes the group (retrying while the kernel still tears down its processes). */
  destroy(): Promise<void>;
}

/**
 * How to make a star's group with its limits, as plain file operations, so the star's launcher
 * can carry them out itself (in microseconds, in C) right before joining.
 */
export interface CgroupPlan {
  mkdirs: string[];
  /** [file, value] in order. */
  writes: Array<[string, string]>;
  /** The cgroup.procs files to join. */
  procsFiles: string[];
}

/**
 * A CPU limit for one thread of a process (an isolate star's worker thread in the isolate host):
 * v1 a cpu cgroup of its own (a thread may sit in any cpu cgroup), v2 a threaded child of the
 * process's group (cgroup.type "threaded"; the cpu controller handles threads).
 */
export interface ThreadGroup {
  readonly dir: string;
  /** Moves the thread (its id as the host sees it) into the group. */
  addThread(tid: number): Promise<void>;
  /** Removes the group (once its thread has ended or left). */
  destroy(): Promise<void>;
}

export interface CgroupDriver {
  readonly version: CgroupVersion;
  capabilities(): CgroupCapabilities;
  /** Makes (or takes over, after a restart) the group of star `id` and applies its limits. */
  create(id: string, limits: Limits): Promise<StarCgroup>;
  /** The file operations that create() would do (for a launcher to do them itself). */
  plan(id: string, limits: Limits): Promise<CgroupPlan>;
  /** The group of star `id`, by its paths, without touching the file system. */
  handle(id: string): StarCgroup;
  /** The group of star `id` if it exists (recovery after the host process restarted). */
  open(id: string): Promise<StarCgroup | undefined>;
  /** The ids of the groups under this driver's parent (every star group the node has on the host). */
  groups(): Promise<string[]>;
  /**
   * A CPU-limited group `id` for threads of the process in group `ownerId` (made by plan() or
   * create()); undefined where threads cannot be limited (no cpu controller).
   */
  threadGroup(ownerId: string, id: string, cpuMillis: number): Promise<ThreadGroup | undefined>;
}

/** CFS period used for CPU limits: 100 ms, the kernel's default. */
export const CPU_PERIOD_USEC = 100_000;

export function cpuQuotaUsec(cpuMillis: number): number {
  return Math.max(1000, Math.round((cpuMillis / 1000) * CPU_PERIOD_USEC));
}
