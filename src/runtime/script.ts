/**
 * Turns a star's `script` or `command` into the argv to run. A script is bundled with esbuild
 * from its own directory before anything starts (relative imports, packages, JSON; `require`;
 * each module's own `import.meta.url`, `__dirname`, `__filename`; a source map naming the
 * user's files), so a missing import or a syntax error is a ScriptError naming the file and
 * line. The bundle is built once and kept in memory while none of the files it holds changes,
 * and written into the star's own directory under the hash of everything it holds.
 *
 * Who may read what: root does the reading, so a script is opened once, and the open file is
 * what is checked (mode, owner, and the directories of its real path) and what is read — a
 * symlink re-pointed between a check and a start cannot make root read a file for a star
 * (docs/security.md). Every file a bundle takes in is read the same way, for the same reader;
 * an import a star's user may not read gets the same answer as one that is not there.
 */
import { createHash, randomUUID } from "node:crypto";
import { type BigIntStats, constants } from "node:fs";
import { type FileHandle, chmod, chown, mkdir, open, readlink, realpath, rename, stat, writeFile } from "node:fs/promises";
import { dirname, extname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { BuildResult, Loader, Message, Plugin } from "esbuild";
import { ScriptError } from "../errors.js";
import type { StarSpec } from "./spec.js";

/** What a star's script may be. */
const ENTRY_EXTS = [".js", ".mjs", ".cjs", ".ts", ".mts", ".cts"];
/** What a bundle may take in, by esbuild's loader. */
const LOADERS: Record<string, Loader> = {
  ".js": "js", ".mjs": "js", ".cjs": "js", ".jsx": "jsx",
  ".ts": "ts", ".mts": "ts", ".cts": "ts", ".tsx": "tsx",
  ".json": "json", ".txt": "text",
};

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

/** Largest file read (a bundle larger than this is not a script to check at every start). */
export const MAX_SCRIPT_BYTES = 16 * 2 ** 20;

/** A file read into a bundle, and what says it has not changed since (git's index does the same). */
interface Input {
  path: string;
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** A built bundle: its code, the hash of everything in it (its file name), and what it read. */
interface Bundle {
  code: string;
  hash: string;
  inputs: Input[];
}

/** Bundles by entry (its path, content and reader), or the build under way. */
const bundles = new Map<string, Promise<Bundle>>();
const KEEP_BUNDLES = 64;

export async function resolveProgram(spec: StarSpec, access: ScriptAccess = {}): Promise<ResolvedProgram> {
  if (spec.command) return { argv: [...spec.command, ...spec.args] };
  const script = resolve(access.baseDir ?? process.cwd(), spec.script!);
  const ext = extname(script);
  if (!ENTRY_EXTS.includes(ext)) throw new ScriptError(script, `unsupported extension "${ext}": use ${ENTRY_EXTS.join(", ")} (or give a command)`);
  const entry = await readScript(script, access);
  const bundle = await bundleOf(entry, access);
  // Source maps on: stack traces name the user's files and lines, not the bundle's.
  if (!access.cacheDir) return { argv: [process.execPath, "--enable-source-maps", entry.real, ...spec.args], source: entry.real };
  const file = await writeTranspiled(access.cacheDir, bundle.hash, bundle.code, access.cacheReader);
  return { argv: [process.execPath, "--enable-source-maps", file, ...spec.args], file, source: entry.real };
}

/**
 * The bundle of an entry: built once, and again only when one of the files it read has changed
 * (by its identity, size and times) or may no longer be read by the reader. Concurrent starts of
 * one script share one build; a failed build is not remembered (the file may be fixed).
 */
async function bundleOf(entry: ReadFile, access: ScriptAccess): Promise<Bundle> {
  const reader = access.reader === undefined ? "root" : access.reader === "all" ? "all" : `${access.reader.uid}:${access.reader.gid}`;
  const key = createHash("sha256")
    .update(`${entry.real}\0${reader}\0${(access.refuseUnder ?? []).join("\0")}\0`)
    .update(entry.source)
    .digest("hex");
  const known = bundles.get(key);
  if (known) {
    const bundle = await known;
    if (await unchanged(bundle, entry.real, access)) return bundle;
    if (bundles.get(key) === known) bundles.delete(key);
  }
  const pending = build(entry, access);
  bundles.set(key, pending);
  pending.catch(() => {
    if (bundles.get(key) === pending) bundles.delete(key);
  });
  if (bundles.size > KEEP_BUNDLES) bundles.delete(bundles.keys().next().value!);
  return pending;
}

/** Every file a bundle read (but its entry, read already) is as it was, and readable still. */
async function unchanged(bundle: Bundle, entry: string, access: ScriptAccess): Promise<boolean> {
  const reader = access.reader;
  const passed = new Set<string>();
  try {
    for (const input of bundle.inputs) {
      if (input.path === entry) continue;
      const st = await stat(input.path, { bigint: true });
      if (st.dev !== input.dev || st.ino !== input.ino || st.size !== input.size || st.mtimeNs !== input.mtimeNs || st.ctimeNs !== input.ctimeNs) return false;
      if (reader === undefined) continue;
      if (!mayAccess({ uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode) }, reader, 0o4)) return false;
      if (underAny(input.path, access.refuseUnder ?? [])) return false;
      const dir = dirname(input.path);
      if (!passed.has(dir)) {
        await checkDirs(input.path, reader, () => new Error("refused"));
        passed.add(dir);
      }
    }
    return true;
  } catch {
    return false; // gone, or refused: the build says why
  }
}

function underAny(path: string, places: string[]): boolean {
  return places.some((d) => path === d || path.startsWith(`${d}/`));
}

/** Names every module's own file, directory and URL for it, wherever the bundle runs from. */
const DEFINE = {
  "import.meta.url": "__constellation_url",
  "import.meta.filename": "__constellation_file",
  "import.meta.dirname": "__constellation_dir",
  __filename: "__constellation_file",
  __dirname: "__constellation_dir",
};

/**
 * Bundles an entry with esbuild from its own directory: relative imports and packages resolved
 * there, every file read as the entry is (by the same checks, for the same reader), `require`
 * working (resolved from the entry's place), each module's `import.meta.url`, `__dirname` and
 * `__filename` its own, and a source map whose sources are the user's files. Native addons
 * (`.node`) stay where they are and are loaded from there.
 */
async function build(entry: ReadFile, access: ScriptAccess): Promise<Bundle> {
  const esbuild = await import("esbuild"); // loaded on first use only
  const reader = access.reader;
  const inputs: Input[] = [];
  const content = createHash("sha256").update(`${esbuild.version}\0${process.versions.node.split(".")[0]}\0`);
  const RESOLVING = Symbol("resolving");
  const plugin: Plugin = {
    name: "constellation",
    setup(b) {
      b.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === RESOLVING || args.kind === "entry-point") return undefined;
        const native = args.path.endsWith(".node");
        if (reader === undefined && !native) return undefined;
        const r = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, namespace: args.namespace, pluginData: RESOLVING });
        // For a star's script, one answer for a file that is not there and one it may not read.
        const refused = { errors: [{ text: `Could not resolve "${args.path}" (no such file that the star's user can read)` }] };
        if (r.errors.length > 0) return reader === undefined ? { errors: r.errors } : refused;
        if (r.external || r.namespace !== "file") return { path: r.path, external: r.external, namespace: r.namespace };
        if (reader !== undefined && !(await readable(r.path, reader, access.refuseUnder ?? []))) return refused;
        return native ? { path: r.path, external: true } : { path: r.path, sideEffects: r.sideEffects };
      });
      b.onLoad({ filter: /.*/, namespace: "file" }, async (args) => {
        const loader = LOADERS[extname(args.path)];
        if (!loader) return { errors: [{ text: `no loader for "${extname(args.path)}" files: a star's bundle takes ${Object.keys(LOADERS).join(", ")} (load other files at run time)` }] };
        let file: ReadFile;
        try {
          file = args.path === entry.real ? entry : await readScript(args.path, access);
        } catch (err) {
          return { errors: [{ text: (err as Error).message }] };
        }
        const st = file.stat;
        inputs.push({ path: file.real, dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs });
        content.update(`${file.real}\0${file.source.length}\0`).update(file.source);
        const text = file.source.toString("utf8");
        return { contents: loader === "js" || loader === "ts" || loader === "jsx" || loader === "tsx" ? withOwnNames(text, file.real) : text, loader, resolveDir: dirname(file.real) };
      });
    },
  };
  const outfile = join(dirname(entry.real), "constellation-bundle.mjs"); // never written: names the map's sources
  let out: BuildResult<{ write: false }>;
  try {
    out = await esbuild.build({
      entryPoints: [entry.real],
      absWorkingDir: dirname(entry.real),
      bundle: true,
      write: false,
      outfile,
      format: "esm",
      platform: "node",
      target: `node${process.versions.node.split(".")[0]}`,
      sourcemap: "external",
      sourcesContent: false,
      define: DEFINE,
      banner: { js: `import { createRequire as __constellationRequire } from "node:module"; globalThis.require ??= __constellationRequire(${JSON.stringify(pathToFileURL(entry.real).href)});` },
      plugins: [plugin],
      logLevel: "silent",
    });
  } catch (err) {
    const first = (err as { errors?: Message[] }).errors?.[0];
    const loc = first?.location;
    const where = loc ? `${resolve(dirname(entry.real), loc.file)}:${loc.line}:${loc.column + 1}: ` : "";
    throw new ScriptError(entry.real, `cannot bundle it: ${where}${first?.text ?? (err as Error).message}`, err);
  }
  const code = out.outputFiles.find((f) => f.path === outfile)!.text;
  const map = JSON.parse(out.outputFiles.find((f) => f.path === `${outfile}.map`)!.text) as { sources: string[] };
  map.sources = map.sources.map((s) => pathToFileURL(resolve(dirname(outfile), s)).href);
  const inline = Buffer.from(JSON.stringify(map)).toString("base64");
  return { code: `${code}//# sourceMappingURL=data:application/json;base64,${inline}\n`, hash: content.digest("hex").slice(0, 32), inputs };
}

/**
 * Gives a module its own `import.meta.url`, `__dirname` and `__filename` (see DEFINE), on its
 * first line so that its line numbers stay as they are (after a `#!` line, which must be first).
 */
function withOwnNames(text: string, file: string): string {
  if (!/import\.meta|__dirname|__filename/.test(text)) return text;
  const names = `var __constellation_url = ${JSON.stringify(pathToFileURL(file).href)}, __constellation_file = ${JSON.stringify(file)}, __constellation_dir = ${JSON.stringify(dirname(file))};`;
  if (!text.startsWith("#!")) return names + text;
  const nl = text.indexOf("\n");
  return nl < 0 ? text : `${text.slice(0, nl + 1)}${names}${text.slice(nl + 1)}`;
}

/** May `reader` read `path` (its real path), as readScript would let it? Without opening it. */
async function readable(path: string, reader: "all" | FileUser, refuseUnder: string[]): Promise<boolean> {
  try {
    const real = await realpath(path);
    if (underAny(real, [...OPEN_NEVER, ...refuseUnder])) return false;
    await checkDirs(real, reader, () => new Error("refused"));
    return mayAccess(await stat(real), reader, 0o4);
  } catch {
    return false;
  }
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

/** A file as read: its bytes, its real path, and its identity and times as opened. */
interface ReadFile {
  source: Buffer;
  real: string;
  stat: BigIntStats;
}

async function readScript(script: string, access: ScriptAccess): Promise<ReadFile> {
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
    const big = await fh.stat({ bigint: true });
    const st = { uid: Number(big.uid), gid: Number(big.gid), mode: Number(big.mode), dev: Number(big.dev), ino: Number(big.ino), size: Number(big.size) };
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
    if (!big.isFile()) throw new ScriptError(script, "is not a regular file: give a .js, .mjs or .ts file");
    if (st.size > MAX_SCRIPT_BYTES) throw new ScriptError(script, `is ${st.size} bytes, over ${MAX_SCRIPT_BYTES}: give a smaller script (or a command)`);
    return { source: await fh.readFile(), real, stat: big };
  } catch (err) {
    if (err instanceof ScriptError) throw err;
    if (reader !== undefined) throw refused();
    const code = (err as NodeJS.ErrnoException).code;
    throw new ScriptError(script, code === "ENOENT" ? "no such file" : `cannot read it (${code})`, err);
  } finally {
    await fh?.close();
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
function mayAccess(st: { uid: number; gid: number; mode: number }, who: "all" | FileUser, bit: number): boolean {
  if (who === "all") return (st.mode & bit) !== 0;
  if (st.uid === who.uid) return (st.mode & (bit << 6)) !== 0;
  if (st.gid === who.gid) return (st.mode & (bit << 3)) !== 0;
  return (st.mode & bit) !== 0;
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
