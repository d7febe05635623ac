/**
 * Pure lifecycle rules: what state a finished run ends in, and whether (and when) to restart.
 *
 *            start()            running         exit
 *   pending ───────▶ starting ──────────▶ running ──────▶ exited | failed | oom_killed | stopped
 *                       ▲                                        │
 *                       └──────── restart (policy, backoff, cap) ┘
 *
 * Restarts back off exponentially (backoff_ms × 2^streak, at most max_backoff_ms), where the
 * streak counts consecutive runs shorter than STABLE_RUN_MS; and no more than max_restarts
 * happen within restart_window_s (PM2's most-reported failure is a restart loop of thousands).
 */
import type { StarState } from "../model/status.js";
import type { StarSpec } from "../model/spec.js";

export const TERMINAL_STATES: ReadonlySet<StarState> = new Set(["exited", "failed", "oom_killed", "stopped"]);

/** A run that lasted this long resets the backoff streak. */
export const STABLE_RUN_MS = 10_000;

export interface RunEnd {
  exitCode: number | null;
  signal: string | null;
  oomKilled: boolean;
  /** The stop was asked for (stop(), or the runtime shutting the star down). */
  stopRequested: boolean;
}

export function endState(end: RunEnd): StarState {
  if (end.stopRequested) return "stopped";
  if (end.oomKilled) return "oom_killed";
  if (end.exitCode === 0 && end.signal === null) return "exited";
  return "failed";
}

export interface RestartHistory {
  /** When each restart within the window happened (ms since epoch). */
  restarts: number[];
  /** Consecutive short runs (drives the backoff). */
  streak: number;
}

export type RestartDecision =
  | { restart: true; delayMs: number; history: RestartHistory }
  | { restart: false; reason: string; history: RestartHistory };

type Policy = Pick<StarSpec, "restart" | "backoff_ms" | "max_backoff_ms" | "max_restarts" | "restart_window_s">;

export function decideRestart(policy: Policy, state: StarState, history: RestartHistory, now: number, ranForMs: number): RestartDecision {
  const windowStart = now - policy.restart_window_s * 1000;
  const recent = history.restarts.filter((t) => t > windowStart);
  const streak = ranForMs >= STABLE_RUN_MS ? 0 : history.streak;
  const kept: RestartHistory = { restarts: recent, streak };
  if (state === "stopped") return { restart: false, reason: "stopped on request", history: kept };
  if (policy.restart === "never") return { restart: false, reason: "restart policy is never", history: kept };
  if (policy.restart === "on-failure" && state === "exited") {
    return { restart: false, reason: "exited with code 0 (restart policy on-failure)", history: kept };
  }
  if (recent.length >= policy.max_restarts) {
    return {
      restart: false,
      reason: `restarted ${recent.length} times within ${policy.restart_window_s} s (max_restarts ${policy.max_restarts}): giving up`,
      history: kept,
    };
  }
  const delayMs = Math.min(policy.max_backoff_ms, policy.backoff_ms * 2 ** Math.min(streak, 30));
  return { restart: true, delayMs, history: { restarts: [...recent, now + delayMs], streak: streak + 1 } };
}
