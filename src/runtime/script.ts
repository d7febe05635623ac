/**
 * Turns a star's `script` or `command` into the argv to run. Scripts are checked before anything
 * starts: a missing file or a syntax error is a ScriptError naming the file and line. `.ts` is
 * transpiled with esbuild into a cache keyed by the content's hash (so an unchanged script is not
 * transpiled twice); `.js` and `.mjs` run as they are, after esbuild has parsed them.
 */
import { createHash, randomUUID } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, chmod, mkdir, open, realpath, rename, stat, writeFile } from "node:fs/promises";
import { dirname, extname, join, resolve } from "node:path";
import { ScriptError } from "../errors.js";
import type { StarSpec } from "./spec.js";

const LOADERS = { ".js": "js", ".mjs": "js", ".cjs": "js", ".ts": "ts", ".mts": "ts" } as const;

export interface ResolvedProgram {
  argv: string[];
  /** The file the star runs, when it is a script (after transpiling). */
  file?: string;
}

/** Files already checked (by path and content hash) in this process, or being checked. */
const checked = new Map<string, Promise<string>>();

export async function resolveProgram(spec: StarSpec, cacheDir: string, baseDir = process.cwd()): Promise<ResolvedProgram> {
  if (spec.command) return { argv: [...spec.command, ...spec.args] };
  const script = resolve(baseDir, spec.script!);
  const ext = extname(script) as keyof typeof LOADERS;
  const loader = LOADERS[ext];
  if (!loader) throw new ScriptError(script, `unsupported extension "${ext}": use .js, .mjs or .ts (or give a command)`);
  const source = await readScript(script);
  const hash = createHash("sha256").update(source).update(ext).digest("hex").slice(0, 32);
  const key = `${script}:${hash}`;
  // Concurrent starts of one script share one check (and one write into the cache).
  let pending = checked.get(key);
  if (!pending) {
    pending = prepare(script, source, loader, hash, cacheDir);
    checked.set(key, pending);
    pending.catch(() => checked.delete(key)); // a failure is not remembered: the file may be fixed
  }
  const file = await pending;
  return { argv: [process.execPath, file, ...spec.args], file };
}

/** Largest script read (a bundle larger than this is not a script to check at every start). */
export const MAX_SCRIPT_BYTES = 16 * 2 ** 20;

/**
 * Reads a script: only a regular file, at most MAX_SCRIPT_BYTES. Opened non-blocking, so a path
 * naming a FIFO or a device cannot stall the process (an open of a FIFO waits for a writer).
 */
async function readScript(script: string): Promise<Buffer> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(script, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = await fh.stat();
    if (!st.isFile()) throw new ScriptError(script, "is not a regular file: give a .js, .mjs or .ts file");
    if (st.size > MAX_SCRIPT_BYTES) throw new ScriptError(script, `is ${st.size} bytes, over ${MAX_SCRIPT_BYTES}: give a smaller script (or a command)`);
    return await fh.readFile();
  } catch (err) {
    if (err instanceof ScriptError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new ScriptError(script, code === "ENOENT" ? "no such file" : `cannot read it (${code})`, err);
  } finally {
    await fh?.close();
  }
}

/**
 * Whether everyone may read `path` (o+r on the file, o+x on every directory above it): the check
 * for scripts named by a star's own token, so a star cannot have root read a file for it.
 */
export async function readableByAll(path: string): Promise<boolean> {
  try {
    const real = await realpath(path);
    if (((await stat(real)).mode & 0o004) === 0) return false;
    for (let dir = dirname(real); ; dir = dirname(dir)) {
      if (((await stat(dir)).mode & 0o001) === 0) return false;
      if (dir === dirname(dir)) return true;
    }
  } catch {
    return false;
  }
}

async function prepare(script: string, source: Buffer, loader: "js" | "ts", hash: string, cacheDir: string): Promise<string> {
  const { transform } = await import("esbuild"); // loaded on first use only
  let code: string;
  try {
    const out = await transform(source.toString("utf8"), {
      loader,
      format: loader === "ts" ? "esm" : undefined,
      target: `node${process.versions.node.split(".")[0]}`,
      sourcefile: script,
      sourcemap: loader === "ts" ? "inline" : false,
    });
    code = out.code;
  } catch (err) {
    const first = (err as { errors?: Array<{ text: string; location?: { line: number; column: number } }> }).errors?.[0];
    const where = first?.location ? ` at line ${first.location.line}, column ${first.location.column + 1}` : "";
    throw new ScriptError(script, `syntax error${where}: ${first?.text ?? (err as Error).message}`, err);
  }
  if (loader === "js") return script; // valid JavaScript runs from where it is
  await mkdir(cacheDir, { recursive: true, mode: 0o755 });
  const target = join(cacheDir, `${hash}.mjs`);
  const tmp = `${target}.${process.pid}.${randomUUID()}.tmp`; // unique: other processes may write it too
  await writeFile(tmp, code);
  await chmod(tmp, 0o644); // stars run as an unprivileged user
  await rename(tmp, target);
  return target;
}
