/**
 * What the process runtime keeps so that a restarted agent can take its stars back (recovery):
 * one SQLite file, <dataDir>/runtime.db (mode 0600: it holds the stars' env), a row per star,
 * written synchronously on every change; and each init's `end` file. Also: telling a live init
 * from a recycled pid (its start time in /proc).
 *
 * Why SQLite and not a JSON file per star: a save happens two or three times per start, on the
 * agent's event loop. Replacing a file by rename cost 0.4–0.9 ms here (ext4 flushes the new
 * file's data on a rename over an existing one), so saves were most of the agent's time per
 * start; an upsert in WAL mode costs tens of microseconds. No fsync per save: a crash of the
 * agent, not of the machine, is what this guards against (a reboot ends the stars anyway), and
 * a committed WAL frame survives the process.
 */
import { chmodSync, closeSync, openSync, readFileSync, readlinkSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type Database from "better-sqlite3";
import { Sqlite } from "../../store/sqlite/driver.js";
import type { RestartHistory } from "../restart.js";
import type { StarSpec } from "../../model/spec.js";
import type { StarStatus } from "../../model/status.js";

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
  /** Made by an admin (StartOptions.trusted); absent in rows of older agents: true. */
  trusted?: boolean;
  /** StartOptions.identity. */
  identity?: string[];
}

/** The runtime's table of stars. One process at a time owns it (an exclusive lock). */
export class StarStateDb {
  private readonly db: Database.Database;
  private readonly upsert: Database.Statement<[string, string]>;
  private readonly remove: Database.Statement<[string]>;

  private constructor(
    db: Database.Database,
    private readonly path: string,
  ) {
    this.db = db;
    this.upsert = db.prepare("INSERT INTO stars (id, state) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state");
    this.remove = db.prepare("DELETE FROM stars WHERE id = ?");
  }

  /** Paths open in this process: a second open would be a second lock owner (see open()). */
  private static readonly openPaths = new Set<string>();

  static open(dataDir: string): StarStateDb {
    const path = resolve(dataDir, "runtime.db");
    // Closing any descriptor of a file drops all of this process's locks on it (POSIX locks),
    // so nothing here may open the file while another connection in this process holds it.
    if (StarStateDb.openPaths.has(path)) throw new Error(`${path} is already open in this process`);
    try {
      closeSync(openSync(path, "wx", 0o600)); // created 0600 before SQLite creates it with 0644
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    chmodSync(path, 0o600);
    const db = new Sqlite(path, { timeout: 2000 });
    try {
      db.pragma("locking_mode = EXCLUSIVE"); // one agent per data dir; no shared-memory file
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.exec("CREATE TABLE IF NOT EXISTS stars (id TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID");
    } catch (err) {
      db.close();
      throw err;
    }
    StarStateDb.openPaths.add(path);
    return new StarStateDb(db, path);
  }

  save(id: string, saved: SavedStar): void {
    this.upsert.run(id, JSON.stringify(saved));
  }

  delete(id: string): void {
    this.remove.run(id);
  }

  /** Every saved star (rows in an unknown format are skipped: not ours to take). */
  all(): Array<{ id: string; saved: SavedStar }> {
    const out: Array<{ id: string; saved: SavedStar }> = [];
    for (const row of this.db.prepare("SELECT id, state FROM stars ORDER BY id").all() as Array<{ id: string; state: string }>) {
      try {
        const saved = JSON.parse(row.state) as SavedStar;
        if (saved.version === 1) out.push({ id: row.id, saved });
      } catch {
        // skipped
      }
    }
    return out;
  }

  close(): void {
    if (this.db.open) this.db.close();
    StarStateDb.openPaths.delete(this.path);
  }
}

/**
 * Start time of a process (clock ticks since boot), or undefined if it does not exist or has
 * ended (a zombie: its parent has not reaped it yet, which may take a while when the parent is
 * the host's init).
 */
export function processStart(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command (which may hold spaces) start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") return undefined;
    return Number(fields[19]); // field 22 overall
  } catch {
    return undefined;
  }
}

/** What /proc says of a process: its pids in each pid namespace (host first), its real uid, its parent. */
export function processInfo(pid: number): { nspid: number[]; uid: number; ppid: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status)?.[1]?.trim().split(/\s+/).map(Number) ?? [];
    return { nspid: field("NSpid"), uid: field("Uid")[0] ?? -1, ppid: field("PPid")[0] ?? 0 };
  } catch {
    return undefined;
  }
}

/** The pid namespace a process is in (`ns/pid`), or its children will be in (`ns/pid_for_children`). */
export function pidNamespace(pid: number, which: "pid" | "pid_for_children" = "pid"): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/${which}`);
  } catch {
    return undefined;
  }
}

/**
 * A star's init among a group's processes (pid 1 of a pid namespace of its own), and its
 * program's user (pid 2 there, or any process of the star not root's).
 */
export function findInit(pids: number[]): { pid: number; program?: number; uid?: number } | undefined {
  const infos = pids.map((pid) => ({ pid, info: processInfo(pid) }));
  const init = infos.find((p) => p.info && p.info.nspid.length >= 2 && p.info.nspid.at(-1) === 1);
  if (!init) return undefined;
  const star = infos.filter((p) => p.info && p.info.nspid.length >= 2 && p.pid !== init.pid);
  const program = star.find((p) => p.info!.nspid.at(-1) === 2 && p.info!.ppid === init.pid) ?? star.find((p) => p.info!.uid > 0);
  return program ? { pid: init.pid, program: program.pid, uid: program.info!.uid } : { pid: init.pid };
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
