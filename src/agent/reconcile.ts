/**
 * The agent's decision for one star, as a pure function: what the store says the star should be
 * (its record, if assigned to this node) against what this node's runtime has.
 *
 *   no record for us     + runs here                 → remove
 *   record, other uid    + runs here                 → replace (remove, then start the new star)
 *   record, running      + not here                  → start
 *   record, running      + ended, newer generation   → resume (a `start` after it ended)
 *   record, stopped      + running here              → stop
 *   otherwise                                        → nothing (restarts are the runtime's policy)
 */
import type { StarStatus } from "../model/status.js";
import type { StarRecord } from "../model/records.js";

export interface LocalStar {
  uid: string;
  /** The record generation last acted on. */
  generation: number;
  status?: StarStatus;
}

export type Action = "start" | "resume" | "stop" | "remove" | "replace";

export function decide(record: StarRecord | undefined, local: LocalStar | undefined): Action | undefined {
  if (!record) return local ? "remove" : undefined;
  if (!local) return record.desired === "running" ? "start" : undefined;
  if (local.uid !== record.uid) return "replace";
  const active = isActive(local.status);
  if (record.desired === "running") return !active && record.generation > local.generation ? "resume" : undefined;
  return active ? "stop" : undefined;
}

/** Running, starting, or waiting for a restart: not settled. */
export function isActive(status: StarStatus | undefined): boolean {
  if (!status) return false;
  return status.state === "running" || status.state === "starting" || status.state === "pending" || status.restartAt !== undefined;
}
