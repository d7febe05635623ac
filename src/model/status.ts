/**
 * A star as its node sees it: its state, its run, its limits, its health; and its log lines.
 * Part of the shared vocabulary (docs/architecture.md): the runtime makes these, the agent
 * reports them, the controller keeps them, the API and the SDK show them.
 */
import type { Limits } from "./spec.js";

export type StarState = "pending" | "starting" | "running" | "exited" | "failed" | "oom_killed" | "stopped";

export interface StarStatus {
  id: string;
  name: string;
  state: StarState;
  /** Host pid of the star's program while it runs. */
  pid?: number;
  exitCode?: number | null;
  signal?: string | null;
  /** Why the star is in its state (exec error, OOM, restart cap reached, ...). */
  reason?: string;
  restarts: number;
  /** ms since epoch. */
  startedAt?: number;
  finishedAt?: number;
  /** When a restart is scheduled (ms since epoch). */
  restartAt?: number;
  limits: Limits;
  /**
   * Running and passing its health check (a star without a check is ready while it runs).
   */
  ready: boolean;
  /** The health check's view, when the star has one. */
  health?: { failures: number; lastError?: string };
  /** False only in dev mode on a node that cannot enforce the limits asked for. */
  limitsEnforced: boolean;
  /** The ports its node gave it, by name (the spec's `ports`; the node's choice for those asked as 0). */
  ports?: Record<string, number>;
}

export interface StarStats {
  cpuUsageUsec: number;
  memoryBytes: number;
  memoryPeakBytes?: number;
  pids: number;
}

export interface LogLine {
  stream: "stdout" | "stderr";
  line: string;
  /** When the node read it from the star (ISO 8601, ms), when known. */
  time?: string;
}

export interface LogOptions {
  /** Last N lines of each stream (default: all that is kept). */
  tail?: number;
  /** Only lines read at or after this time (ms since the epoch); lines of unknown time go with the line before. */
  since?: number;
  /** Keep yielding new lines until the star ends or the signal aborts. */
  follow?: boolean;
  signal?: AbortSignal;
}

