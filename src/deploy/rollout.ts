/**
 * The deployment controller's pure core (issue 13): a deployment's wanted state and what its
 * stars are doing in, the next step out — stars to make of the current template, stars to
 * remove, how the rollout stands, and whether to roll back. No I/O, no clock (the time is
 * given): the loop (controller/deployments.ts) reads the store, calls `plan`, and writes.
 *
 * A rolling update as Kubernetes' Deployment does it: at most count + max_surge stars at any
 * moment and at least count − max_unavailable of them available (ready for min_ready_ms), so
 * new stars are made as room allows and old ones removed as new ones become available — the
 * old ones that are not available first (removing them costs nothing). A new star that fails
 * (ends for good, crash-loops, or is not ready within the progress deadline) fails the rollout,
 * which goes back to the last template that completed when auto_rollback is on. Once complete,
 * the deployment keeps its count: stars lost or failed for good are replaced.
 */
import type { RolloutState, UpdatePolicy } from "../model/deployment.js";

/** What the plan needs of one star of the deployment. */
export interface StarFact {
  name: string;
  /** The hash of the template it was made from. */
  hash: string;
  createdAt: number;
  /** pending: not running yet (unplaced, starting); running; ended: exited, no restart coming; failed: gave up. */
  state: "pending" | "running" | "ended" | "failed";
  /** Running and passing its health check. */
  ready: boolean;
  /** Since when it has been running (for min_ready_ms). */
  runningSince?: number;
  restarts: number;
  /** Why it is not running, when something says (its state's reason, or why it is not placed). */
  why?: string;
}

export interface PlanInput {
  /** Stars it should have. */
  count: number;
  /** The current template's hash and revision. */
  hash: string;
  revision: number;
  update: UpdatePolicy;
  rollout: { revision: number; state: RolloutState };
  /** The last revision that completed (a rollback's target), if any other than the current. */
  lastGood?: number;
  stars: readonly StarFact[];
  now: number;
  /** In steady state, failed stars are replaced only from this time on (a backoff; absent: now). */
  replaceFrom?: number;
}

export interface Plan {
  /** New stars of the current template to make. */
  create: number;
  remove: Array<{ name: string; why: string }>;
  /** The rollout as it stands after this step. */
  rollout: { state: RolloutState; message: string };
  /** Go back to this revision (a new revision with its template), for this reason. */
  rollback?: { to: number; reason: string };
  /** A failed star is waiting for the replacement backoff: look again then. */
  wakeAt?: number;
}

/** Restarts within one run after which a new star counts as crash-looping. */
export const CRASH_RESTARTS = 3;

/** Why a star of the rollout's template has failed it, or undefined. */
export function failureOf(s: StarFact, u: UpdatePolicy, now: number): string | undefined {
  if (s.state === "failed" || s.state === "ended") return `${s.state}${s.why ? `: ${s.why}` : ""}`;
  if (s.restarts >= CRASH_RESTARTS) return `restarted ${s.restarts} times${s.why ? ` (${s.why})` : ""}`;
  if (!s.ready && now - s.createdAt > u.progress_deadline_ms) {
    return `not ready within ${Math.round(u.progress_deadline_ms / 1000)} s${s.why ? ` (${s.why})` : s.state === "pending" ? " (not running)" : " (failing its health check)"}`;
  }
  return undefined;
}

const available = (s: StarFact, u: UpdatePolicy, now: number) => s.ready && s.state === "running" && now - (s.runningSince ?? now) >= u.min_ready_ms;

/** Stars in the order they are given up first: not running, not ready, then the newest. */
function giveUpOrder(stars: readonly StarFact[]): StarFact[] {
  const rank = (s: StarFact) => (s.state !== "running" ? 0 : !s.ready ? 1 : 2);
  return [...stars].sort((a, b) => rank(a) - rank(b) || b.createdAt - a.createdAt || a.name.localeCompare(b.name));
}

export function plan(p: PlanInput): Plan {
  const u = p.update;
  const cur = p.stars.filter((s) => s.hash === p.hash);
  const old = p.stars.filter((s) => s.hash !== p.hash);
  const avail = (s: StarFact) => available(s, u, p.now);
  const progressing = p.rollout.revision === p.revision && p.rollout.state === "progressing";
  const failedRollout = p.rollout.revision === p.revision && p.rollout.state === "failed";

  if (progressing) {
    const failing = cur.map((s) => ({ s, why: failureOf(s, u, p.now) })).find((f) => f.why !== undefined);
    if (failing) {
      const reason = `star ${failing.s.name} of revision ${p.revision} ${failing.why}`;
      if (u.auto_rollback && p.lastGood !== undefined && p.lastGood !== p.revision) return { create: 0, remove: [], rollout: { state: "failed", message: reason }, rollback: { to: p.lastGood, reason } };
      return { create: 0, remove: [], rollout: { state: "failed", message: `${reason}; ${p.lastGood === undefined ? "no earlier revision completed to go back to" : "auto_rollback is off"}: fix it and deploy again, or constellation rollout undo` } };
    }
  }
  if (failedRollout) {
    // Held as it is until the next deploy or undo (its stars are there to look at).
    return { create: 0, remove: [], rollout: { state: "failed", message: "" } };
  }

  const remove: Plan["remove"] = [];
  let wakeAt: number | undefined;
  // Steady state: a star of the current template that failed for good is replaced (after the backoff).
  let keep = cur;
  if (!progressing) {
    const dead = cur.filter((s) => s.state === "failed" || s.state === "ended");
    if (dead.length > 0) {
      if (p.replaceFrom === undefined || p.now >= p.replaceFrom) {
        for (const s of dead) remove.push({ name: s.name, why: `replaced: it ${s.state}${s.why ? ` (${s.why})` : ""}` });
        keep = cur.filter((s) => !dead.includes(s));
      } else wakeAt = p.replaceFrom;
    }
  }
  // Too many of the current template (scaled down): the ones worth least go.
  if (keep.length > p.count) {
    for (const s of giveUpOrder(keep).slice(0, keep.length - p.count)) remove.push({ name: s.name, why: `scaled down to ${p.count}` });
    keep = keep.filter((s) => !remove.some((r) => r.name === s.name));
  }
  // Old stars: those not serving (not running and ready) go at once — they hold nothing up;
  // serving ones while the stars available stay at least count − max_unavailable (Kubernetes'
  // maxScaledDown). An old star that serves counts as available (min_ready_ms is for new ones:
  // an old star deployed a moment ago still serves).
  const serving = (s: StarFact) => s.ready && s.state === "running";
  const minAvailable = Math.max(0, p.count - u.max_unavailable);
  let budget = keep.filter(avail).length + old.filter(serving).length - minAvailable;
  const oldLeft: StarFact[] = [];
  for (const s of giveUpOrder(old)) {
    if (!serving(s) || budget > 0) {
      remove.push({ name: s.name, why: `replaced by revision ${p.revision}` });
      if (serving(s)) budget--;
    } else oldLeft.push(s);
  }
  // New stars as room allows: at most count + max_surge in all.
  const total = keep.length + oldLeft.length;
  const room = p.count + u.max_surge - total;
  const create = Math.max(0, Math.min(p.count - keep.length, room));

  const readyNew = keep.filter(avail).length;
  const complete = oldLeft.length === 0 && keep.length === p.count && readyNew === p.count && create === 0;
  const message = complete
    ? `${p.count} of ${p.count} stars of revision ${p.revision} available`
    : `${keep.length + create} of ${p.count} stars of revision ${p.revision} made, ${readyNew} available${oldLeft.length > 0 ? `, ${oldLeft.length} of earlier revisions left` : ""}`;
  // (Once complete, it stays so: scaling and replacing are not a rollout.)
  return { create, remove, rollout: { state: progressing && !complete ? "progressing" : "complete", message }, ...(wakeAt !== undefined ? { wakeAt } : {}) };
}
