/**
 * The files as one user would find them, for root reading on that user's behalf (a star's
 * script and what it imports). Every lookup is one the user could make itself: a path is
 * resolved one component at a time, each directory passed only if the user may search it, each
 * link followed from where it is (so a link through a directory the user may not enter finds
 * nothing, and says nothing of what is there); a file is opened by walking directory
 * descriptors from `/` with no link followed, each directory checked as it is held, so no
 * directory swapped after a check can lead the open elsewhere. Lookups are cached for the
 * view's life (one bundle's build) and capped, so a deep tree cannot make a build quadratic.
 */
import { constants, realpathSync } from "node:fs";
import { type FileHandle, lstat, open, readlink, stat } from "node:fs/promises";
import { basename, dirname } from "node:path";

/** A user as the kernel checks file access: its uid and its one group (stars have no others). */
export interface FileUser {
  uid: number;
  gid: number;
}

/** Who reads: every user (what "other" may), or one user. */
export type Reader = "all" | FileUser;

/** Where a star's file is never opened from, whatever its modes. */
const OPEN_NEVER = ["/proc", "/sys", "/dev", "/run"];
/** Links followed in one lookup at most (the kernel's limit). */
const MAX_LINKS = 40;
/** Lookups (one directory entry each) one view makes at most. */
export const MAX_LOOKUPS = 200_000;

export class LookupLimitError extends Error {
  constructor() {
    super(`more than ${MAX_LOOKUPS} file lookups: import from fewer places (or a shallower tree)`);
  }
}

export class ReaderView {
  /** Lexical directory path → its real path, if the reader may search it. */
  private readonly dirs = new Map<string, Promise<string | undefined>>();
  /** Real directory → may the reader search it. */
  private readonly passable = new Map<string, Promise<boolean>>();
  /** Real directory → it and every directory above may be passed, and changed by their owners only. */
  private readonly safe = new Map<string, Promise<boolean>>();
  private lookups = 0;

  /** Directory entries looked up so far (each at most once per view, cached after). */
  get lookupsMade(): number {
    return this.lookups;
  }

  /** Every place refused, as given and as its real path (a hidden /home may be a link). */
  private readonly refusedPlaces: string[];

  constructor(
    readonly reader: Reader,
    /** Places whose files are refused whatever their modes (hidden from stars). */
    readonly refuseUnder: readonly string[] = [],
  ) {
    const real = (p: string) => {
      try {
        return realpathSync(p);
      } catch {
        return p;
      }
    };
    this.refusedPlaces = [...new Set([...OPEN_NEVER, ...refuseUnder, ...refuseUnder.map(real)])];
  }

  /**
   * The real path `path` (absolute, normalized) leads to, found by lookups the reader may make,
   * or undefined (not there, or not the reader's to find: one answer).
   */
  async real(path: string): Promise<string | undefined> {
    if (path === "/") return "/";
    const parent = await this.realDir(dirname(path));
    return parent === undefined ? undefined : this.step(parent, basename(path), { hops: 0 });
  }

  /**
   * The real path of `path` if the reader may read it there: a regular file, readable by it,
   * in directories it may pass that only their owners may change, in no refused place.
   */
  async readable(path: string): Promise<string | undefined> {
    try {
      const real = await this.real(path);
      if (real === undefined || this.refused(real) || !(await this.safeDir(dirname(real)))) return undefined;
      const st = await stat(real);
      return st.isFile() && mayAccess(st, this.reader, 0o4) ? real : undefined;
    } catch (err) {
      if (err instanceof LookupLimitError) throw err;
      return undefined;
    }
  }

  /** Whether `real` is in a place never opened for a star (/proc, /sys, /dev, /run, hidden places). */
  refused(real: string): boolean {
    return underAny(real, this.refusedPlaces);
  }

  /**
   * Opens the file at the real path `real` for reading: each directory from `/` opened in turn
   * from the one before (through /proc/self/fd, as openat would) without following a link, and
   * checked as held (the reader may search it; only its owner may change it); the file itself
   * opened without following a link, non-blocking (a FIFO cannot stall it), no controlling tty.
   * Throws (a plain error) on any refusal; the caller says one thing for all of them.
   */
  async open(real: string): Promise<FileHandle> {
    if (!real.startsWith("/") || real.split("/").some((c) => c === "." || c === "..")) throw new Error("not a real path");
    const names = real.split("/").filter(Boolean);
    const dirFlags = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
    let dir = await open("/", dirFlags);
    try {
      for (const name of names.slice(0, -1)) {
        if (++this.lookups > MAX_LOOKUPS) throw new LookupLimitError();
        if (!dirSafe(await dir.stat(), this.reader)) throw new Error("refused");
        const next = await open(`/proc/self/fd/${dir.fd}/${name}`, dirFlags);
        await dir.close();
        dir = next;
      }
      if (!dirSafe(await dir.stat(), this.reader)) throw new Error("refused");
      return await open(`/proc/self/fd/${dir.fd}/${names.at(-1)}`, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | constants.O_NOFOLLOW);
    } finally {
      await dir.close();
    }
  }

  private realDir(path: string): Promise<string | undefined> {
    return memo(this.dirs, path, () => this.real(path).then(async (r) => (r !== undefined && (await this.mayPass(r)) ? r : undefined)));
  }

  private mayPass(real: string): Promise<boolean> {
    return memo(this.passable, real, () => stat(real).then((st) => st.isDirectory() && mayAccess(st, this.reader, 0o1), () => false));
  }

  private safeDir(real: string): Promise<boolean> {
    return memo(this.safe, real, () =>
      stat(real).then(async (st) => dirSafe(st, this.reader) && (real === "/" || (await this.safeDir(dirname(real)))), () => false),
    );
  }

  /** `name` in the real directory `dir` (which the reader may search), with a link at it followed as the kernel would. */
  private async step(dir: string, name: string, links: { hops: number }): Promise<string | undefined> {
    if (++this.lookups > MAX_LOOKUPS) throw new LookupLimitError();
    const here = dir === "/" ? `/${name}` : `${dir}/${name}`;
    // Nothing is looked at inside a refused place, not even a link's target on the way (a link
    // in /proc/<pid>/ or a hidden home says what the star may not know).
    if (this.refused(here)) return undefined;
    const st = await lstat(here).catch(() => undefined);
    if (!st) return undefined;
    if (!st.isSymbolicLink()) return here;
    if (++links.hops > MAX_LINKS) return undefined;
    const target = await readlink(here).catch(() => undefined);
    if (target === undefined) return undefined;
    let cur = target.startsWith("/") ? "/" : dir;
    for (const part of target.split("/")) {
      if (part === "" || part === ".") continue;
      if (!(await this.mayPass(cur))) return undefined;
      if (part === "..") {
        cur = dirname(cur);
        continue;
      }
      const next = await this.step(cur, part, links);
      if (next === undefined) return undefined;
      cur = next;
    }
    return cur;
  }
}

/** May `user` enter `dir` (search every directory from / down to it)? */
export async function mayEnter(dir: string, user: FileUser): Promise<boolean> {
  try {
    for (let d = dir; ; d = dirname(d)) {
      if (!mayAccess(await stat(d), user, 0o1)) return false;
      if (d === dirname(d)) return true;
    }
  } catch {
    return false;
  }
}

/** The kernel's rule for one access bit (4 read, 1 search/execute): owner, else group, else other. */
export function mayAccess(st: { uid: number; gid: number; mode: number }, who: Reader, bit: number): boolean {
  if (who === "all") return (st.mode & bit) !== 0;
  if (st.uid === who.uid) return (st.mode & (bit << 6)) !== 0;
  if (st.gid === who.gid) return (st.mode & (bit << 3)) !== 0;
  return (st.mode & bit) !== 0;
}

/** A directory the reader may pass, which no one but its owner may change (no group or world write without the sticky bit). */
function dirSafe(st: { uid: number; gid: number; mode: number; isDirectory(): boolean }, who: Reader): boolean {
  return st.isDirectory() && mayAccess(st, who, 0o1) && ((st.mode & 0o022) === 0 || (st.mode & 0o1000) !== 0);
}

/** The promise kept for `key`, made on first use. */
function memo<T>(map: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let known = map.get(key);
  if (!known) {
    known = make();
    map.set(key, known);
  }
  return known;
}

export function underAny(path: string, places: readonly string[]): boolean {
  return places.some((d) => path === d || path.startsWith(`${d}/`));
}
