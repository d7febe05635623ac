/**
 * What the process runtime keeps on disk per star so that a restarted agent can take its stars
 * back (recovery): <star dir>/state.json, rewritten atomically on every change, and the shim's
 * `end` file. Also: telling a live launcher from a recycled pid (its start time in /proc).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { RestartHistory } from "../restart.js";
import type { StarSpec } from "../spec.js";
import type { StarStatus } from "../types.js";

export interface RunInfo {
  /** The star's cgroup id. */
  groupId: string;
  shimPid: number;
  /** The shim's start time (clock ticks since boot, /proc/<pid>/stat field 22). */
  shimStart: number;
  initPid: number;
  /** The init's start time, like shimStart (0 if unknown). */
  initStart?: number;
  /** The group's OOM-kill count when the run began. */
  oomBefore: number;
}

export interface SavedStar {
  version: 1;
  spec: StarSpec;
  status: StarStatus;
  history: RestartHistory;
  stopRequested: boolean;
  run?: RunInfo;
  /** The star's own user id. */
  uid?: number;
}

/**
 * Written synchronously (a few tens of microseconds): when start() resolves, the star's state is
 * on disk, so an agent killed right after still finds it. No fsync: a crash of the agent, not of
 * the machine, is what this guards against (a reboot ends the stars anyway).
 */
export function saveStar(dir: string, saved: SavedStar): void {
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  const path = join(dir, "state.json");
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(saved), { mode: 0o600 }); // holds the spec's env: for root only
  renameSync(tmp, path);
}

export async function loadStar(dir: string): Promise<SavedStar | undefined> {
  try {
    const saved = JSON.parse(await readFile(join(dir, "state.json"), "utf8")) as SavedStar;
    return saved.version === 1 ? saved : undefined;
  } catch {
    return undefined; // no state (or half a file from a crash in the old format): not ours to take
  }
}

/** Start time of a process (clock ticks since boot), or undefined if it does not exist. */
export function processStart(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command (which may hold spaces) start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19]); // field 22 overall
  } catch {
    return undefined;
  }
}

/** How a run ended, from the shim's `end` file ("exit N" | "signal N"). */
export async function readEnd(path: string): Promise<{ exitCode: number | null; signal: number | null } | undefined> {
  try {
    const m = /^(exit|signal) (\d+)$/.exec((await readFile(path, "utf8")).trim());
    if (!m) return undefined;
    return m[1] === "exit" ? { exitCode: Number(m[2]), signal: null } : { exitCode: null, signal: Number(m[2]) };
  } catch {
    return undefined;
  }
}
