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
import { type FileHandle, access, lstat, open, readlink, stat } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";

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

/** What says a file has not changed since it was read (git's index does the same). */
export interface Identity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** A file read into a bundle, or a directory or package.json watched (`watch`: no access check). */
export interface Input extends Identity {
  path: string;
  watch?: boolean;
}

/**
 * A file read for a reader: its bytes, real path and identity; or why not — "refused" (not
 * there or not the reader's: one answer), "not-file" or "too-big" (said only of a file the
 * reader may read).
 */
export type ReadAnswer = { ok: true; source: Buffer; real: string; id: Identity } | { ok: false; why: "refused" | "not-file" } | { ok: false; why: "too-big"; size: number };

/**
 * The files as a reader finds them, as the bundler asks: a ReaderView in this process, or one
 * in a helper process running as the reader's user (read-as/), where the kernel decides too.
 */
export interface StarFiles {
  real(path: string): Promise<string | undefined>;
  readable(path: string): Promise<string | undefined>;
  readFile(path: string, max: number): Promise<ReadAnswer>;
  /** Every input (but `skip`) is as it was, and each file readable still. */
  unchanged(inputs: readonly Input[], skip: string): Promise<boolean>;
  /** The identity of each path (undefined: not there for the reader). */
  identities(paths: readonly string[]): Promise<Array<Identity | undefined>>;
  close(): void;
}

export const identityOf = (st: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): Identity => ({
  dev: st.dev,
  ino: st.ino,
  size: st.size,
  mtimeNs: st.mtimeNs,
  ctimeNs: st.ctimeNs,
});

export const sameIdentity = (a: Identity, b: Identity): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;

export class ReaderView implements StarFiles {
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
    /**
     * This process runs as the reader (the reader helper): the kernel decides every access
     * (ACLs too) and mode bits are not checked besides. Only for one user (not "all").
     */
    readonly asReader = false,
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
      return st.isFile() && (await this.may(st, real, 0o4)) ? real : undefined;
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
        if (!this.dirSafe(await dir.stat())) throw new Error("refused");
        const next = await open(`/proc/self/fd/${dir.fd}/${name}`, dirFlags);
        await dir.close();
        dir = next;
      }
      if (!this.dirSafe(await dir.stat())) throw new Error("refused");
      return await open(`/proc/self/fd/${dir.fd}/${names.at(-1)}`, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | constants.O_NOFOLLOW);
    } finally {
      await dir.close();
    }
  }

  /**
   * Reads the file at `path` as the reader may: resolved by the reader's lookups, in no refused
   * place, opened by the checked walk (open), and the open file checked: the one the walk led
   * to (not moved meanwhile, not reached through /proc), readable by the reader, regular, at
   * most `max` bytes. Nothing is read before every check has passed.
   */
  async readFile(path: string, max: number): Promise<ReadAnswer> {
    const refused = { ok: false, why: "refused" } as const;
    let fh: FileHandle | undefined;
    try {
      const real = await this.real(resolve(path));
      if (real === undefined || this.refused(real)) return refused;
      fh = await this.open(real);
      const st = await fh.stat({ bigint: true });
      // What was opened, wherever the path led: it must be the file the checked walk named.
      const opened = await readlink(`/proc/self/fd/${fh.fd}`).catch(() => "");
      const here = opened === real ? await stat(real, { bigint: true }).catch(() => undefined) : undefined;
      if (!here || here.dev !== st.dev || here.ino !== st.ino) return refused;
      // (As the reader, the open itself was the kernel's check.)
      if (!this.asReader && !mayAccess({ uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode) }, this.reader, 0o4)) return refused;
      if (!st.isFile()) return { ok: false, why: "not-file" };
      if (st.size > BigInt(max)) return { ok: false, why: "too-big", size: Number(st.size) };
      // At most max bytes, whatever the file grew to since its size was read.
      const source = await readAtMost(fh, max);
      return source ? { ok: true, source, real, id: identityOf(st) } : { ok: false, why: "too-big", size: max + 1 };
    } catch (err) {
      if (err instanceof LookupLimitError) throw err;
      return refused;
    } finally {
      await fh?.close();
    }
  }

  async unchanged(inputs: readonly Input[], skip: string): Promise<boolean> {
    try {
      for (const input of inputs) {
        if (input.path === skip) continue;
        const st = await stat(input.path, { bigint: true });
        if (!sameIdentity(identityOf(st), input)) return false;
        if (!input.watch && (await this.readable(input.path)) !== input.path) return false;
      }
      return true;
    } catch {
      return false; // gone, or too much to look at: the build says why
    }
  }

  async identities(paths: readonly string[]): Promise<Array<Identity | undefined>> {
    return Promise.all(paths.map((p) => stat(p, { bigint: true }).then(identityOf, () => undefined)));
  }

  close(): void {
    // nothing held
  }

  private realDir(path: string): Promise<string | undefined> {
    return memo(this.dirs, path, () => this.real(path).then(async (r) => (r !== undefined && (await this.mayPass(r)) ? r : undefined)));
  }

  private mayPass(real: string): Promise<boolean> {
    return memo(this.passable, real, () => stat(real).then((st) => st.isDirectory() && this.may(st, real, 0o1), () => false));
  }

  private safeDir(real: string): Promise<boolean> {
    return memo(this.safe, real, () =>
      stat(real).then(async (st) => this.dirSafe(st) && (real === "/" || (await this.safeDir(dirname(real)))), () => false),
    );
  }

  /** May the reader read (4) or search (1) the file `st` at `path`: the kernel's answer when this process is the reader. */
  private async may(st: { uid: number; gid: number; mode: number }, path: string, bit: 4 | 1): Promise<boolean> {
    if (!this.asReader) return mayAccess(st, this.reader, bit);
    return access(path, bit === 4 ? constants.R_OK : constants.X_OK).then(
      () => true,
      () => false,
    );
  }

  /** A directory the reader may pass (as the reader: the kernel checks as it is passed), which no one but its owner may change (no group or world write without the sticky bit). */
  private dirSafe(st: { uid: number; gid: number; mode: number; isDirectory(): boolean }): boolean {
    return st.isDirectory() && (this.asReader || mayAccess(st, this.reader, 0o1)) && ((st.mode & 0o022) === 0 || (st.mode & 0o1000) !== 0);
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

/** The file's bytes from where it is, or undefined if there are more than `max`. */
async function readAtMost(fh: FileHandle, max: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const b = Buffer.allocUnsafe(Math.min(2 ** 20, max + 1 - total));
    const { bytesRead } = await fh.read(b, 0, b.length, null);
    if (bytesRead === 0) return Buffer.concat(chunks, total);
    chunks.push(b.subarray(0, bytesRead));
    total += bytesRead;
    if (total > max) return undefined;
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

/** The promise kept for `key`, made on first use. */
function memo<T>(map: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let known = map.get(key);
  if (!known) {
    known = make();
    map.set(key, known);
  }
  return known;
}

function underAny(path: string, places: readonly string[]): boolean {
  return places.some((d) => path === d || path.startsWith(`${d}/`));
}
