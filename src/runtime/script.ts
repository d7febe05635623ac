/**
 * Turns a star's `script` or `command` into the argv to run. Scripts are checked before anything
 * starts: a missing file or a syntax error is a ScriptError naming the file and line. `.ts` is
 * transpiled with esbuild (once per content: the output is kept in memory by the content's hash)
 * and written into the star's own directory; `.js` and `.mjs` run as they are, after esbuild has
 * parsed them.
 *
 * Who may read what: root does the reading, so a script is opened once, and the open file is
 * what is checked (mode, owner, and the directories of its real path) and what is read — a
 * symlink re-pointed between a check and a start cannot make root read a file for a star
 * (docs/security.md).
 */
import { createHash, randomUUID } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, chmod, chown, mkdir, open, readlink, realpath, rename, stat, writeFile } from "node:fs/promises";
import { dirname, extname, join, resolve } from "node:path";
import { ScriptError } from "../errors.js";
import type { StarSpec } from "./spec.js";

const LOADERS = { ".js": "js", ".mjs": "js", ".cjs": "js", ".ts": "ts", ".mts": "ts" } as const;

/** A user as the kernel checks file access: its uid and its one group (stars have no others). */
export interface FileUser {
  uid: number;
  gid: number;
}

export interface ScriptAccess {
  /**
   * Who must be able to read the script: "all" (every user: o+r on the file, o+x on each
   * directory of its real path), one user (by the same rules, as owner, group or other), or
   * nobody in particular (root reads it: a script an admin named).
   */
  reader?: "all" | FileUser;
  /** With a reader: places whose files are refused whatever their modes (hidden from stars). */
  refuseUnder?: string[];
  /** Where a transpiled .ts is written (absent: checked only, nothing written). */
  cacheDir?: string;
  /** Who may read the written file besides root (its group), e.g. the star's user. */
  cacheReader?: FileUser;
  /** Resolves a relative script path (default: the process's working directory). */
  baseDir?: string;
}

export interface ResolvedProgram {
  argv: string[];
  /** The file the star runs, when it is a script (after transpiling). */
  file?: string;
  /** The script's real path (symlinks resolved, as opened), when it is a script. */
  source?: string;
}

/** Largest script read (a bundle larger than this is not a script to check at every start). */
export const MAX_SCRIPT_BYTES = 16 * 2 ** 20;

/** Transpiled code by content hash (and file name, for the source map), or the check under way. */
const transpiled = new Map<string, Promise<string | undefined>>();
const KEEP_TRANSPILED = 64;

export async function resolveProgram(spec: StarSpec, access: ScriptAccess = {}): Promise<ResolvedProgram> {
  if (spec.command) return { argv: [...spec.command, ...spec.args] };
  const script = resolve(access.baseDir ?? process.cwd(), spec.script!);
  const ext = extname(script) as keyof typeof LOADERS;
  const loader = LOADERS[ext];
  if (!loader) throw new ScriptError(script, `unsupported extension "${ext}": use .js, .mjs or .ts (or give a command)`);
  const { source, real } = await readScript(script, access);
  const hash = createHash("sha256").update(source).update(ext).update(real).digest("hex").slice(0, 32);
  // Concurrent starts of one script share one transpile.
  let pending = transpiled.get(hash);
  if (!pending) {
    pending = check(real, source, loader);
    transpiled.set(hash, pending);
    pending.catch(() => transpiled.delete(hash)); // a failure is not remembered: the file may be fixed
    if (transpiled.size > KEEP_TRANSPILED) transpiled.delete(transpiled.keys().next().value!);
  }
  const code = await pending;
  if (code === undefined) return { argv: [process.execPath, real, ...spec.args], file: real, source: real };
  if (!access.cacheDir) return { argv: [process.execPath, real, ...spec.args], source: real };
  const file = await writeTranspiled(access.cacheDir, hash, code, access.cacheReader);
  return { argv: [process.execPath, file, ...spec.args], file, source: real };
}

/**
 * Opens a script once and checks the open file: a regular file of at most MAX_SCRIPT_BYTES,
 * readable by `reader`, and found where its real path says in this process's own view of the
 * files (not through /proc/<pid>/root into another star's private /tmp, not a deleted file).
 * Opened non-blocking, so a path naming a FIFO or a device cannot stall the process (an open of
 * a FIFO waits for a writer). For a reader, nothing is read before every check has passed, and
 * every refusal says the same, so a star learns nothing of files it may not read (not even
 * whether they exist).
 */
/**
 * Every directory above `file` may be passed by `reader`, and only its owner may change it (no
 * group or world write without the sticky bit): else `refused()`. A star's own places are under
 * directories only root may pass, so no step of such a path is the star's to swap.
 */
async function checkDirs(file: string, reader: "all" | FileUser, refused: () => Error): Promise<void> {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const st = await stat(dir);
    if (!mayAccess(st, reader, 0o1)) throw refused();
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) throw refused();
    if (dir === dirname(dir)) break;
  }
}

/** Where a star's script is never opened from. */
const OPEN_NEVER = ["/proc", "/sys", "/dev", "/run"];

async function readScript(script: string, access: ScriptAccess): Promise<{ source: Buffer; real: string }> {
  const reader = access.reader;
  const who = reader === undefined ? "" : reader === "all" ? "every user" : `the star's user (uid ${reader.uid})`;
  const refused = () => new ScriptError(script, `is not a file that ${who} can read here: a star's token may only name scripts its stars can read`);
  let fh: FileHandle | undefined;
  try {
    let path = script;
    if (reader !== undefined) {
      // Not even opened where a file's opening may do something (a device, a star's FIFO seen
      // through /proc/<pid>/root): the path is resolved first without opening anything (a path
      // through /proc/<pid>/root resolves into the node's own view, where a star's private
      // places are not), every directory on the way must be one the reader may pass and no one
      // but its owner may change (so no step of it can be swapped for a link meanwhile), and the
      // resolved path is opened without following a link at its end. The open file is checked
      // after, as for anyone.
      path = await realpath(script);
      if (OPEN_NEVER.some((d) => path === d || path.startsWith(`${d}/`))) throw refused();
      await checkDirs(path, reader, refused);
    }
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | (reader === undefined ? 0 : constants.O_NOFOLLOW));
    const st = await fh.stat();
    // What was opened, wherever the path led: the real path checked below is this file's.
    const real = await readlink(`/proc/self/fd/${fh.fd}`).catch(() => "");
    const here = real.startsWith("/") ? await stat(real).catch(() => undefined) : undefined;
    if (!here || here.dev !== st.dev || here.ino !== st.ino) {
      if (reader !== undefined) throw refused();
      throw new ScriptError(script, "is not where its path leads in this node's files (a path through /proc, or a deleted file): give a plain path");
    }
    if (reader !== undefined) {
      if (!mayAccess(st, reader, 0o4) || (access.refuseUnder ?? []).some((d) => real === d || real.startsWith(`${d}/`))) throw refused();
      await checkDirs(real, reader, refused);
    }
    if (!st.isFile()) throw new ScriptError(script, "is not a regular file: give a .js, .mjs or .ts file");
    if (st.size > MAX_SCRIPT_BYTES) throw new ScriptError(script, `is ${st.size} bytes, over ${MAX_SCRIPT_BYTES}: give a smaller script (or a command)`);
    return { source: await fh.readFile(), real };
  } catch (err) {
    if (err instanceof ScriptError) throw err;
    if (reader !== undefined) throw refused();
    const code = (err as NodeJS.ErrnoException).code;
    throw new ScriptError(script, code === "ENOENT" ? "no such file" : `cannot read it (${code})`, err);
  } finally {
    await fh?.close();
  }
}

/** The kernel's rule for one access bit (4 read, 1 search/execute): owner, else group, else other. */
function mayAccess(st: { uid: number; gid: number; mode: number }, who: "all" | FileUser, bit: number): boolean {
  if (who === "all") return (st.mode & bit) !== 0;
  if (st.uid === who.uid) return (st.mode & (bit << 6)) !== 0;
  if (st.gid === who.gid) return (st.mode & (bit << 3)) !== 0;
  return (st.mode & bit) !== 0;
}

/** Parses (and for TypeScript transpiles) a script: the code to write, or undefined for JavaScript. */
async function check(script: string, source: Buffer, loader: "js" | "ts"): Promise<string | undefined> {
  const { transform } = await import("esbuild"); // loaded on first use only
  try {
    const out = await transform(source.toString("utf8"), {
      loader,
      format: loader === "ts" ? "esm" : undefined,
      target: `node${process.versions.node.split(".")[0]}`,
      sourcefile: script,
      sourcemap: loader === "ts" ? "inline" : false,
    });
    return loader === "ts" ? out.code : undefined;
  } catch (err) {
    const first = (err as { errors?: Array<{ text: string; location?: { line: number; column: number } }> }).errors?.[0];
    const where = first?.location ? ` at line ${first.location.line}, column ${first.location.column + 1}` : "";
    throw new ScriptError(script, `syntax error${where}: ${first?.text ?? (err as Error).message}`, err);
  }
}

/** Writes the transpiled code once into `dir`: root's, readable by `reader`'s group only. */
async function writeTranspiled(dir: string, hash: string, code: string, reader: FileUser | undefined): Promise<string> {
  const target = join(dir, `${hash}.mjs`);
  if (await stat(target).then((s) => s.isFile(), () => false)) return target;
  await mkdir(dirname(dir), { recursive: true, mode: 0o755 });
  await mkdir(dir, { mode: 0o750 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "EEXIST") throw e;
  });
  const tmp = `${target}.${process.pid}.${randomUUID()}.tmp`; // unique: concurrent starts may write it too
  await writeFile(tmp, code, { mode: 0o600 });
  if (reader && process.getuid?.() === 0) {
    await chown(dir, 0, reader.gid);
    await chmod(dir, 0o750);
    await chown(tmp, 0, reader.gid);
    await chmod(tmp, 0o640);
  } else if (!reader) {
    await chmod(tmp, 0o644); // no user of its own (dev mode, or a shared host): the directory guards it
  }
  await rename(tmp, target);
  return target;
}
