/**
 * The Runtime contract (in the manner of Nomad's task driver: start, wait, stop, stats, logs,
 * recover). Implementations: `process` (Linux cgroups + namespaces), `isolate` (V8 isolates in a
 * host process) and `fake` (in memory, for scheduler/controller tests and 1,000-node simulations).
 */
import type { StarSpecInput } from "../model/spec.js";
import type { LogLine, LogOptions, StarStats, StarStatus } from "../model/status.js";

export interface StartOptions {
  /**
   * The star was made by an admin: its script is read with root's rights and its directory is
   * shown to the star. Otherwise (a star's child) the script must be readable by every user,
   * checked on the open file at every start, and nothing hidden is shown (docs/security.md).
   */
  trusted?: boolean;
  /** The env keys the node put into the spec (the star's identity: endpoint, token), not the user. */
  identity?: string[];
}

/**
 * Processes of the node that no star's run accounts for (issue 9): in the group of a star this
 * runtime has no record of (its records were lost, or it was removed while nobody watched), or
 * in a star's group but not of its run (a second copy).
 */
export interface Orphan {
  /** The group they are in (a star's name). */
  group: string;
  pids: number[];
  /** The group belongs to a star this runtime knows (the pids are strays beside its run). */
  known: boolean;
  /** A star's init among them (a whole star running unrecorded), and its program's user. */
  init?: { pid: number; uid?: number };
}

export interface Runtime {
  readonly kind: "process" | "isolate" | "fake";
  /** Checks the spec, creates the star and starts it; resolves once it runs (or throws why not). */
  start(id: string, spec: StarSpecInput, options?: StartOptions): Promise<StarStatus>;
  /** Checks a spec as start() would, without starting anything (throws what start would). */
  validate(spec: StarSpecInput, options?: StartOptions): Promise<void>;
  /** Starts a star that has ended again (same spec, same files); no-op if it runs. */
  resume(id: string): Promise<StarStatus>;
  /** Resolves when the star has ended for good (no restart pending). */
  wait(id: string): Promise<StarStatus>;
  /** SIGTERM, then SIGKILL after the grace period; no restart follows. */
  stop(id: string, options?: { graceMs?: number }): Promise<StarStatus>;
  status(id: string): StarStatus | undefined;
  list(): StarStatus[];
  stats(id: string): Promise<StarStats>;
  /** CPU time and memory now, cheaply and synchronously (for sampling many stars often). */
  usage(id: string): { cpuUsageUsec: number; memoryBytes: number } | undefined;
  logs(id: string, options?: LogOptions): AsyncIterable<LogLine>;
  /** Stops the star if it runs and removes everything it left (cgroup, files). */
  remove(id: string): Promise<void>;
  /** Calls `fn` on every state change; returns an unsubscribe function. */
  onChange(fn: (status: StarStatus) => void): () => void;
  /** Releases the runtime (stars keep running; a new runtime can recover them). */
  close(): Promise<void>;
  /** The spec a star runs with (as started: with the identity the agent gave it) and whether it is trusted. */
  saved?(id: string): { spec: StarSpecInput; trusted: boolean; identity?: string[] } | undefined;
  /** Processes of the node that no star's run accounts for (runtimes that can tell). */
  orphans?(): Promise<Orphan[]>;
  /** Ends an orphan's processes (and its group, if no star of this runtime has it). */
  endOrphan?(orphan: Orphan): Promise<void>;
  /**
   * Takes over the star already running unrecorded in group `id` (an orphan with an init) as a
   * star of this spec, instead of starting a copy: its runtime records were lost (issue 9).
   */
  reattach?(id: string, spec: StarSpecInput, options?: StartOptions): Promise<StarStatus>;
}
