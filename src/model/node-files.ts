/**
 * What a running node leaves in its data directory for the CLI and the SDK on the same machine:
 * where that directory is by default, and ready.json (no secrets), written once the node is up.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

/**
 * Node's flags for a node's long-running process (`up`, `init`; the CLI's #! line has them too):
 * a small young generation, V8's memory-saving mode, and no V8 helper threads (their malloc
 * arenas held ~10 MB, mostly free). Measured with 100 nodes and 10,000 stars
 * (bench/cluster/controller-bench.ts, docs/benchmarks.md).
 */
export const DAEMON_NODE_FLAGS = ["--max-semi-space-size=1", "--optimize-for-size", "--single-threaded"];

/**
 * The environment a node's long-running process gets where it is started for the user (`init`'s
 * detached process, the SDK's init, the systemd unit, `npm start`): one malloc arena, so what the
 * process's threads free is one pool to reuse and give back (src/server/memory.ts), not one each.
 */
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: "1" };

/** The data directory: the one given, else $CONSTELLATION_DATA, else ~/.constellation. */
export function dataDirOf(given?: string): string {
  return resolve(given ?? process.env.CONSTELLATION_DATA ?? join(homedir(), ".constellation"));
}

/** What a running node (`init`, `join`) wrote once it was up: <data>/ready.json. */
export interface NodeReady {
  pid: number;
  /** When that process started (Linux: /proc/PID/stat's start time, in clock ticks since boot): a pid reused by another process is not the node. */
  started?: number;
  role: "controller" | "agent";
  cluster: string;
  node: string;
  /** The controller's API (a controller only). */
  url?: string;
  /** Where nodes join: this controller's cluster address, or an agent's controller. */
  address: string;
  /** The API over HTTPS for other machines (a controller only): `constellation login` it. */
  httpsUrl?: string;
  /** The SHA-256 fingerprint (hex) of the cluster's CA, which `login` pins (a controller only). */
  caFingerprint?: string;
}

export const readyFile = (dataDir: string): string => join(dataDir, "ready.json");

/** A process's state and start time from /proc (Linux), if it can be read. */
function procStat(pid: number): { state: string; started: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After the command's closing parenthesis: state is the 1st field, start time the 20th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0]!, started: Number(fields[19]) };
  } catch {
    return undefined;
  }
}

/** When this process started (for ready.json), where the system says. */
export function processStarted(pid = process.pid): number | undefined {
  return procStat(pid)?.started;
}

/**
 * Whether a process of this pid runs (one of another user's counts): not a zombie (killed, not
 * yet reaped by its parent), and, when `started` is given, the same process (not the pid reused).
 */
export function pidAlive(pid: number, started?: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const stat = procStat(pid);
  if (!stat) return true; // (no /proc: the signal's word)
  if (stat.state === "Z" || stat.state === "X") return false;
  return started === undefined || stat.started === started;
}

/** The node running from `dataDir`, if one is (a ready.json whose process has ended is none). */
export function readReady(dataDir: string): NodeReady | undefined {
  try {
    const r = JSON.parse(readFileSync(readyFile(dataDir), "utf8")) as NodeReady;
    return Number.isInteger(r.pid) && r.pid > 0 && pidAlive(r.pid, typeof r.started === "number" ? r.started : undefined) ? r : undefined;
  } catch {
    return undefined;
  }
}

/** A node's gossip view file is written at least this often while it runs (its `at` says so). */
export const VIEW_EVERY_MS = 10_000;

/** This node's view of the members (`constellation gossip members` reads it), kept as it changes. */
export const membersFile = (dataDir: string) => join(dataDir, "gossip-members.json");

/** A member as the view file and `gossip members` show it: `since` in ms since the epoch. */
export interface MemberRow {
  name: string;
  address: string;
  state: "alive" | "suspect" | "dead" | "left";
  since: number;
  incarnation: number;
  meta: Record<string, unknown>;
}

/** What the view file holds. */
export interface MembersView {
  /** The member whose view this is. */
  self: string;
  at: number;
  members: MemberRow[];
}

/** A gossip view file's text → the view, or undefined if it is not one. */
export function membersViewOf(text: string): MembersView | undefined {
  let v: Partial<MembersView>;
  try {
    v = JSON.parse(text) as Partial<MembersView>;
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== "object" || typeof v.self !== "string" || typeof v.at !== "number" || !Array.isArray(v.members)) return undefined;
  const states = new Set(["alive", "suspect", "dead", "left"]);
  const ok = v.members.every((m: Partial<MemberRow>) => m !== null && typeof m === "object" && typeof m.name === "string" && typeof m.address === "string" && states.has(m.state as string) && typeof m.since === "number" && typeof m.incarnation === "number");
  return ok ? (v as MembersView) : undefined;
}
