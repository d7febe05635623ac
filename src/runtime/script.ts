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
import { constants, rmSync } from "node:fs";
import { type FileHandle, chmod, chown, mkdir, mkdtemp, open, readFile, readlink, rename, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, extname, join, resolve } from "node:path";
import { isBuiltin } from "node:module";
import { pathToFileURL } from "node:url";
import type * as Esbuild from "esbuild";
import type { BuildResult, ImportKind, Loader, Message, Plugin } from "esbuild";
import { ScriptError } from "../model/errors.js";
import { packageTarget } from "./package-exports.js";
import { HelperGoneError, ReadBudgetError, RemoteView } from "./read-as/read-as.js";
import { type FileUser, type Identity, type Input, LookupLimitError, type Reader, ReaderView, type StarFiles, identityOf, sameIdentity } from "./reader-view.js";
import type { StarSpec } from "../model/spec.js";

export type { FileUser } from "./reader-view.js";

/** What a star's script may be. */
const ENTRY_EXTS = [".js", ".mjs", ".cjs", ".ts", ".mts", ".cts"];
/** What a bundle may take in, by esbuild's loader. */
const LOADERS: Record<string, Loader> = {
  ".js": "js", ".mjs": "js", ".cjs": "js", ".jsx": "jsx",
  ".ts": "ts", ".mts": "ts", ".cts": "ts", ".tsx": "tsx",
  ".json": "json", ".txt": "text",
};

export interface ScriptAccess {
  /**
   * Who must be able to read the script: "all" (every user: o+r on the file, o+x on each
   * directory of its real path), one user (by the same rules, as owner, group or other), or
   * nobody in particular (root reads it: a script an admin named).
   */
  reader?: Reader;
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

/**
 * A star's files as its reader finds them: looked up and read by a helper process running as
 * that user when the node is root (the kernel decides: ACLs too), else by this process on the
 * same rules (mode bits).
 */
function filesFor(reader: Reader, refuseUnder: readonly string[] = []): StarFiles {
  return process.getuid?.() === 0 ? new RemoteView(reader, refuseUnder) : new ReaderView(reader, refuseUnder);
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

/** A node's copy of uploaded code (agent.ts withCode): `<...>/artifacts/<sha256 of its bytes>/main.mjs`. */
const ARTIFACT_FILE = /\/artifacts\/([0-9a-f]{64})\/main\.mjs$/;

export async function resolveProgram(spec: StarSpec, access: ScriptAccess = {}): Promise<ResolvedProgram> {
  if (spec.command) return { argv: [...spec.command, ...spec.args] };
  const script = resolve(access.baseDir ?? process.cwd(), spec.script!);
  const artifact = ARTIFACT_FILE.exec(script);
  if (artifact && access.reader === undefined) {
    // Uploaded code is one bundle already, made where it was deployed: run as it is, never
    // bundled again here (a bundle made with the node's rights would read what its imports
    // name). It must be the code its name says; its directory is not shown to the star.
    const code = await readFile(script);
    if (createHash("sha256").update(code).digest("hex") !== artifact[1]) throw new ScriptError(script, "is not the code its name says (its hash differs): not run");
    if (!access.cacheDir) return { argv: [process.execPath, "--enable-source-maps", script, ...spec.args] };
    const file = await writeTranspiled(access.cacheDir, artifact[1], code, access.cacheReader);
    return { argv: [process.execPath, "--enable-source-maps", file, ...spec.args], file };
  }
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
    if (await unchanged(bundle, entry.real, access)) {
      bundles.delete(key); // least recently used goes first
      bundles.set(key, known);
      return bundle;
    }
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

/** Every file a bundle read (but its entry, read already) is as it was, and readable still by its reader. */
async function unchanged(bundle: Bundle, entry: string, access: ScriptAccess): Promise<boolean> {
  if (access.reader !== undefined) {
    const files = filesFor(access.reader, access.refuseUnder);
    try {
      return await files.unchanged(bundle.inputs, entry);
    } catch {
      return false; // the build says why
    } finally {
      files.close();
    }
  }
  try {
    for (const input of bundle.inputs) {
      if (input.path !== entry && !sameIdentity(await stat(input.path, { bigint: true }), input)) return false;
    }
    return true;
  } catch {
    return false; // gone: the build says why
  }
}

/** Longest a bundle may take to build. */
const BUILD_TIMEOUT_MS = 60_000;

let empty: Promise<string> | undefined;
/** A directory of root's with nothing in it (one per process), where esbuild works for a star's script. */
function emptyDir(): Promise<string> {
  empty ??= mkdtemp(join(tmpdir(), "constellation-esbuild-")).then((dir) => {
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  });
  return empty;
}

/** esbuild's namespace for a star's files: esbuild reads nothing there itself. */
const READER_NS = "star-file";
/** esbuild's name for a star's entry. */
const STAR_ENTRY = "<star entry>";
/** Most bytes a bundle takes in, all files together. */
export const MAX_BUNDLE_BYTES = 64 * 2 ** 20;
/** What an import without an extension may name, in Node's order and then TypeScript's. */
const PROBE = [".ts", ".tsx", ".mts", ".cts", ".js", ".mjs", ".cjs", ".jsx", ".json"];
/** TypeScript's rule: `./util.js` in a .ts project names util.ts. */
const TS_FOR: Record<string, string[]> = { ".js": [".ts", ".tsx"], ".mjs": [".mts"], ".cjs": [".cts"], ".jsx": [".tsx"] };

/**
 * Node's resolution, as far as a star's script needs it, made only of lookups the reader may
 * make (every probe through `view`, every package.json read by `readScript` with its checks): a
 * relative or absolute path (with extensions probed, TypeScript's `.js` → `.ts`, a directory's
 * package.json `main` or index), a `#name` from the nearest package.json's `imports`, or a
 * package in the nearest `node_modules` (its `exports` under Node's conditions for this kind of
 * import, else `main`, else index). The real path, or undefined for nothing the reader may read.
 */
async function resolveAsReader(spec: string, from: string, kind: ImportKind, view: StarFiles, depth = 0): Promise<string | undefined> {
  const conditions = ["node", kind === "require-call" || kind === "require-resolve" ? "require" : "import"];
  if (spec.startsWith("./") || spec.startsWith("../") || spec.startsWith("/") || spec === "." || spec === "..") {
    const base = resolve(from, spec);
    return (await asFile(base, view)) ?? (await asDir(base, view));
  }
  if (spec.startsWith("#")) {
    // the package's own imports: its nearest package.json (not beyond a node_modules)
    for (let dir = from; basename(dir) !== "node_modules"; dir = dirname(dir)) {
      const pkg = await packageJson(dir, view);
      if (pkg) {
        const target = packageTarget(pkg.imports, spec, conditions, "imports");
        if (target === undefined) return undefined;
        if ("path" in target) return asFile(resolve(dir, target.path), view);
        return target.bare.startsWith("#") || depth > 0 ? undefined : resolveAsReader(target.bare, dir, kind, view, depth + 1);
      }
      if (dir === dirname(dir)) return undefined;
    }
    return undefined;
  }
  const parts = spec.split("/");
  const nameLen = spec.startsWith("@") ? 2 : 1;
  const name = parts.slice(0, nameLen).join("/");
  const sub = parts.slice(nameLen).join("/");
  if (!name || name.includes("..") || parts.slice(0, nameLen).some((p) => p === "" || p === ".")) return undefined;
  for (let dir = from; ; dir = dirname(dir)) {
    if (basename(dir) !== "node_modules") {
      const pkgDir = join(dir, "node_modules", name);
      const pkg = await packageJson(pkgDir, view);
      if (pkg) {
        if (pkg.exports !== undefined) {
          // exports hide what they do not name
          const target = packageTarget(pkg.exports, sub ? `./${sub}` : ".", conditions, "exports");
          return target !== undefined && "path" in target ? asFile(resolve(pkgDir, target.path), view) : undefined;
        }
        const base = sub ? join(pkgDir, sub) : pkgDir;
        return (await asFile(base, view)) ?? (await asDir(base, view));
      }
      // no package.json: a file or directory by that name, as Node looks for one
      const base = join(dir, "node_modules", spec);
      if ((await view.real(dirname(base))) !== undefined) {
        const found = (await asFile(base, view)) ?? (await asDir(base, view));
        if (found) return found;
      }
    }
    if (dir === dirname(dir)) return undefined;
  }
}

async function asFile(path: string, view: StarFiles): Promise<string | undefined> {
  const ext = extname(path);
  const candidates = [path, ...PROBE.map((e) => path + e), ...(TS_FOR[ext] ?? []).map((e) => path.slice(0, -ext.length) + e)];
  for (const c of candidates) {
    const real = await view.readable(c);
    if (real) return real;
  }
  return undefined;
}

async function asDir(dir: string, view: StarFiles): Promise<string | undefined> {
  const main = (await packageJson(dir, view))?.main;
  if (typeof main === "string") {
    const found = (await asFile(resolve(dir, main), view)) ?? (await asFile(join(resolve(dir, main), "index"), view));
    if (found) return found;
  }
  return asFile(join(dir, "index"), view);
}

interface PackageJson {
  main?: unknown;
  exports?: unknown;
  imports?: unknown;
}

/** Largest package.json read (a larger one counts as absent). */
const MAX_PACKAGE_JSON = 2 ** 20;
/** package.json files read in a build, by real path: each read and parsed once. */
const packageJsons = new WeakMap<StarFiles, Map<string, Promise<PackageJson | undefined>>>();

/** A directory's package.json, read as the reader may (nothing if absent, unreadable, too large or not JSON). */
async function packageJson(dir: string, view: StarFiles): Promise<PackageJson | undefined> {
  const real = await view.readable(join(dir, "package.json"));
  if (!real) return undefined;
  let known = packageJsons.get(view);
  if (!known) packageJsons.set(view, (known = new Map()));
  let parsed = known.get(real);
  if (!parsed) {
    parsed = (async () => {
      try {
        const file = await view.readFile(real, MAX_PACKAGE_JSON);
        if (!file.ok) return undefined;
        const v = JSON.parse(file.source.toString("utf8")) as unknown;
        return v !== null && typeof v === "object" ? (v as PackageJson) : undefined;
      } catch {
        return undefined;
      }
    })();
    known.set(real, parsed);
  }
  return parsed;
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
  // One view for the whole build: each directory is looked up once, however many imports pass it.
  const view = reader === undefined ? undefined : filesFor(reader, access.refuseUnder);
  try {
    return await buildWith(entry, access, esbuild, view);
  } finally {
    view?.close();
  }
}

async function buildWith(entry: ReadFile, access: ScriptAccess, esbuild: typeof Esbuild, view: StarFiles | undefined): Promise<Bundle> {
  const reader = access.reader;
  const inputs: Input[] = [];
  const content = createHash("sha256").update(`${esbuild.version}\0${process.versions.node.split(".")[0]}\0`);
  const RESOLVING = Symbol("resolving");
  let total = 0;
  const load = async (path: string) => {
    const loader = LOADERS[extname(path)];
    if (!loader) return { errors: [{ text: `no loader for "${extname(path)}" files: a star's bundle takes ${Object.keys(LOADERS).join(", ")} (load other files at run time)` }] };
    let file: ReadFile;
    try {
      file = path === entry.real ? entry : await readScript(path, access, view);
    } catch (err) {
      return { errors: [{ text: (err as Error).message }] };
    }
    total += file.source.length;
    if (total > MAX_BUNDLE_BYTES) return { errors: [{ text: `the bundle takes in more than ${MAX_BUNDLE_BYTES} bytes: import less (or load large files at run time)` }] };
    inputs.push({ path: file.real, ...file.id });
    content.update(`${file.real}\0${file.source.length}\0`).update(file.source);
    const text = file.source.toString("utf8");
    const contents = loader === "js" || loader === "ts" || loader === "jsx" || loader === "tsx" ? withOwnNames(text, file.real) : text;
    // A star's module gets no directory of esbuild's: esbuild then looks nothing up beside it
    // (not even the source map its sourceMappingURL comment names, which it would read as root).
    return reader === undefined ? { contents, loader, resolveDir: dirname(file.real) } : { contents, loader };
  };
  const plugin: Plugin = {
    name: "constellation",
    setup(b) {
      if (reader === undefined) {
        // An admin's script: esbuild resolves as root (tsconfig paths and all); addons stay out.
        b.onResolve({ filter: /\.node$/ }, async (args) => {
          if (args.pluginData === RESOLVING) return undefined;
          const r = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: RESOLVING });
          return r.errors.length > 0 ? { errors: r.errors } : { path: r.path, external: true };
        });
        b.onLoad({ filter: /.*/, namespace: "file" }, (args) => load(args.path));
        return;
      }
      // A star's script: every import is resolved here, by reads the reader may make (so esbuild
      // itself reads no file: no package.json, tsconfig.json or directory of the node's), in a
      // namespace of its own. One answer for "not there" and "not yours".
      b.onResolve({ filter: /.*/ }, async (args) => {
        if (args.kind === "entry-point") return { path: entry.real, namespace: READER_NS };
        if (isBuiltin(args.path)) return { path: args.path, external: true };
        let found: string | undefined;
        try {
          found = await resolveAsReader(args.path, dirname(args.importer), args.kind, view!);
        } catch (err) {
          if (err instanceof LookupLimitError) return { errors: [{ text: err.message }] };
          throw err;
        }
        if (found?.endsWith(".node")) return { path: found, external: true };
        if (found) return { path: found, namespace: READER_NS };
        // A require() that finds nothing is left to run time (often optional, inside a try).
        if (args.kind === "require-call" || args.kind === "require-resolve") return { path: args.path, external: true };
        return { errors: [{ text: `Could not resolve "${args.path}" (no such file that the star's user can read)` }] };
      });
      b.onLoad({ filter: /.*/, namespace: READER_NS }, (args) => load(args.path));
    },
  };
  const outfile = join(dirname(entry.real), "constellation-bundle.mjs"); // never written: names the map's sources
  let out: BuildResult<{ write: false }>;
  let timer: NodeJS.Timeout | undefined;
  try {
    const building = esbuild.build({
      // A star's entry by a name of no file (resolved by the plugin into its namespace): esbuild
      // then looks nothing up at its real path (it opened the entry's directory, a FIFO swapped
      // in there held its thread).
      entryPoints: [reader === undefined ? entry.real : STAR_ENTRY],
      // For a star's script esbuild works from an empty directory of root's: it lists and opens
      // nothing of the star's (a FIFO swapped in for the script's directory hung it).
      absWorkingDir: reader === undefined ? dirname(entry.real) : await emptyDir(),
      bundle: true,
      write: false,
      outfile,
      format: "esm",
      platform: "node",
      target: `node${process.versions.node.split(".")[0]}`,
      sourcemap: "external",
      sourcesContent: false,
      define: DEFINE,
      // require() from the script's place; argv[1] is the script (main-module checks work).
      banner: {
        js:
          `import { createRequire as __constellationRequire } from "node:module"; globalThis.require ??= __constellationRequire(${JSON.stringify(pathToFileURL(entry.real).href)}); ` +
          `process.argv[1] = ${JSON.stringify(entry.real)};`,
      },
      plugins: [plugin],
      logLevel: "silent",
    });
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`bundling took more than ${BUILD_TIMEOUT_MS / 1000} s: import less, or from fewer places`)), BUILD_TIMEOUT_MS);
      timer.unref();
    });
    out = await Promise.race([building, late]);
  } catch (err) {
    const first = (err as { errors?: Message[] }).errors?.[0];
    const loc = first?.location;
    const file = loc?.file.startsWith(`${READER_NS}:`) ? loc.file.slice(READER_NS.length + 1) : resolve(dirname(entry.real), loc?.file ?? "");
    const where = loc ? `${file}:${loc.line}:${loc.column + 1}: ` : "";
    throw new ScriptError(entry.real, `cannot bundle it: ${where}${first?.text ?? (err as Error).message}`, err);
  } finally {
    clearTimeout(timer);
  }
  const code = out.outputFiles.find((f) => f.path === outfile)!.text;
  const map = JSON.parse(out.outputFiles.find((f) => f.path === `${outfile}.map`)!.text) as { sources: string[] };
  map.sources = map.sources.map((s) => pathToFileURL(s.startsWith(`${READER_NS}:`) ? s.slice(READER_NS.length + 1) : resolve(dirname(outfile), s)).href);
  const inline = Buffer.from(JSON.stringify(map)).toString("base64");
  // What resolution read besides the files: each of their directories (a file added beside an
  // import may be what it names next time) and its package.json (`main`, `exports`).
  // (For a reader, as the reader sees them.)
  const paths = [...new Set(inputs.map((i) => dirname(i.path)))].flatMap((dir) => [dir, join(dir, "package.json")]);
  const ids = view
    ? await view.identities(paths).catch((err: Error) => {
        throw new ScriptError(entry.real, `cannot bundle it: ${err.message}`, err);
      })
    : await Promise.all(paths.map((p) => stat(p, { bigint: true }).then(identityOf, () => undefined)));
  const watched: Input[] = paths.flatMap((path, i) => (ids[i] ? [{ path, watch: true, ...ids[i] }] : []));
  return { code: `${code}//# sourceMappingURL=data:application/json;base64,${inline}\n`, hash: content.digest("hex").slice(0, 32), inputs: [...inputs, ...watched] };
}

/**
 * Gives a module its own `import.meta.url`, `__dirname` and `__filename` (see DEFINE), on its
 * first line so that its line numbers stay as they are (after a `#!` line, which must be first).
 */
function withOwnNames(text: string, file: string): string {
  if (!/import\.meta|__dirname|__filename/.test(text)) return text;
  const names = `var __constellation_url = ${JSON.stringify(pathToFileURL(file).href)}, __constellation_file = ${JSON.stringify(file)}, __constellation_dir = ${JSON.stringify(dirname(file))};`;
  if (text.startsWith("\uFEFF")) text = text.slice(1); // a BOM before #! is not JavaScript to esbuild
  if (!text.startsWith("#!")) return names + text;
  const nl = text.indexOf("\n");
  return nl < 0 ? text : `${text.slice(0, nl + 1)}${names}${text.slice(nl + 1)}`;
}

/** A file as read: its bytes, its real path, and its identity and times as opened. */
interface ReadFile {
  source: Buffer;
  real: string;
  id: Identity;
}

/**
 * Opens a script once and checks the open file: a regular file of at most MAX_SCRIPT_BYTES,
 * found where its real path says in this process's own view of the files (not through
 * /proc/<pid>/root into another star's private /tmp, not a deleted file). Opened non-blocking,
 * so a path naming a FIFO or a device cannot stall the process (an open of a FIFO waits for a
 * writer). For a reader, it is read as the reader finds it (StarFiles.readFile: by lookups the
 * reader could make, in no place stars never read from, opened by a checked walk; as that user
 * itself when the node is root), and every refusal says the same, so a star learns nothing of
 * files it may not read (not even whether they exist).
 */
async function readScript(script: string, access: ScriptAccess, view?: StarFiles): Promise<ReadFile> {
  const reader = access.reader;
  if (reader !== undefined) {
    const who = reader === "all" ? "every user" : `the star's user (uid ${reader.uid})`;
    const files = view ?? filesFor(reader, access.refuseUnder);
    let a;
    try {
      a = await files.readFile(resolve(script), MAX_SCRIPT_BYTES);
    } catch (err) {
      if (err instanceof LookupLimitError || err instanceof ReadBudgetError) throw new ScriptError(script, err.message, err);
      if (err instanceof HelperGoneError) {
        throw new ScriptError(script, `cannot be read as ${who}: ${err.message} (it is Node, ${process.execPath}, run as that user: every user must be able to run it)`, err);
      }
      a = { ok: false, why: "refused" } as const;
    } finally {
      if (!view) files.close();
    }
    if (a.ok) return { source: a.source, real: a.real, id: a.id };
    if (a.why === "not-file") throw new ScriptError(script, "is not a regular file: give a .js, .mjs or .ts file");
    if (a.why === "too-big") throw new ScriptError(script, `is ${a.size} bytes, over ${MAX_SCRIPT_BYTES}: give a smaller script (or a command)`);
    throw new ScriptError(script, `is not a file that ${who} can read here: a star's token may only name scripts its stars can read`);
  }
  let fh: FileHandle | undefined;
  try {
    fh = await open(script, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    const st = await fh.stat({ bigint: true });
    // What was opened, wherever the path led: the real path is this file's.
    const real = await readlink(`/proc/self/fd/${fh.fd}`).catch(() => "");
    const here = real.startsWith("/") ? await stat(real, { bigint: true }).catch(() => undefined) : undefined;
    if (!here || here.dev !== st.dev || here.ino !== st.ino) {
      throw new ScriptError(script, "is not where its path leads in this node's files (a path through /proc, or a deleted file): give a plain path");
    }
    if (!st.isFile()) throw new ScriptError(script, "is not a regular file: give a .js, .mjs or .ts file");
    if (st.size > MAX_SCRIPT_BYTES) throw new ScriptError(script, `is ${st.size} bytes, over ${MAX_SCRIPT_BYTES}: give a smaller script (or a command)`);
    return { source: await fh.readFile(), real, id: identityOf(st) };
  } catch (err) {
    if (err instanceof ScriptError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new ScriptError(script, code === "ENOENT" ? "no such file" : `cannot read it (${code})`, err);
  } finally {
    await fh?.close();
  }
}

/** Writes the transpiled code once into `dir`: root's, readable by `reader`'s group only. */
async function writeTranspiled(dir: string, hash: string, code: string | Uint8Array, reader: FileUser | undefined): Promise<string> {
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
