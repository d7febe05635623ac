/**
 * Reading a star's logs: stdout.log and stderr.log, each rotated by the star's launcher into
 * <name>.1, <name>.2, ... (oldest last). Without follow: every kept line (or the last N of
 * each stream), oldest first. With follow: then every new line as it is written, across
 * rotations, until the star ends or the caller aborts.
 *
 * Every line the node relays begins with the time it was read (`STAMP`, ISO 8601 in UTC to the
 * ms, then a space): the reader takes it off into `time`, and `since` skips older lines.
 *
 * Memory stays bounded whatever the files hold (a star writes its logs; a reader must not be
 * made to hold them): lines are read and yielded a chunk at a time, `tail` is found by reading
 * backwards from the end, and one line is cut at MAX_LINE bytes.
 */
import { watch } from "node:fs";
import { type FileHandle, open, readdir, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import type { LogLine, LogOptions } from "../model/status.js";

const STREAMS = ["stdout", "stderr"] as const;
const CHUNK = 64 * 1024;
/** A longer line is cut into pieces of this size (a star may write no newline at all). */
const MAX_LINE = 1024 * 1024;

/** The time a line was read, written before it: `2026-11-28T19:40:01.123Z `. */
export function stamp(at = new Date()): string {
  return `${at.toISOString()} `;
}
const STAMPED = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) /;

export async function* readLogs(dir: string, options: LogOptions, isDone: () => boolean): AsyncGenerator<LogLine> {
  const cursor = new Map<string, Cursor>();
  const since = options.since;
  /** A line as read, its time taken off; undefined if it is older than `since`. */
  const lineOf = (stream: LogLine["stream"], c: Cursor, { text: raw, start }: Piece): LogLine | undefined => {
    // Only a line's own start carries the node's stamp: a piece cut from a long line is the star's text.
    const m = start ? STAMPED.exec(raw) : null;
    if (m) c.time = m[1]!;
    const line: LogLine = { stream, line: m ? raw.slice(m[0].length) : raw, ...(c.time === undefined ? {} : { time: c.time }) };
    if (since !== undefined && (c.time === undefined || Date.parse(c.time) < since)) return undefined;
    return line;
  };
  try {
    yield* readKept();
    if (options.follow) yield* follow();
  } finally {
    // Every file a cursor holds is closed however the reader goes (mid-way through the kept
    // lines, or while following).
    await Promise.all([...cursor.values()].map((c) => c.held?.close()));
  }

  async function* readKept(): AsyncGenerator<LogLine> {
    for (const stream of STREAMS) {
      const c: Cursor = { ino: -1, offset: 0, partial: "", decoder: new StringDecoder("utf8") };
      const files = await openAll(join(dir, `${stream}.log`));
      try {
        // Everything kept so far (or its last `tail` lines), a chunk at a time.
        let [k, offset] = options.tail === undefined ? [0, 0] : await tailStart(files, options.tail);
        for (; k < files.length; k++, offset = 0) {
          const f = files[k]!;
          for (let at = offset; at < f.size; at += CHUNK) {
            for (const raw of cut(c, await readText(c, f.handle, at, Math.min(f.size, at + CHUNK)))) {
              const line = lineOf(stream, c, raw);
              if (line) yield line;
            }
          }
        }
        const last = files.at(-1);
        if (last && options.follow) {
          c.held = last.handle;
          c.ino = last.ino;
          c.offset = last.size;
        }
      } finally {
        await Promise.all(files.filter((f) => f.handle !== c.held).map((f) => f.handle.close()));
      }
      cursor.set(stream, c);
    }
  }

  async function* follow(): AsyncGenerator<LogLine> {

    let wake: (() => void) | undefined;
    const watcher = watch(dir, () => wake?.());
    const onAbort = () => wake?.();
    options.signal?.addEventListener("abort", onAbort);
    try {
      for (;;) {
        const done = isDone(); // read once more after the end, then stop
        for (const stream of STREAMS) {
          const c = cursor.get(stream)!;
          // A chunk at a time: what a star wrote since is never held whole.
          for await (const text of readNew(join(dir, `${stream}.log`), c)) {
            for (const raw of cut(c, text)) {
              const line = lineOf(stream, c, raw);
              if (line) yield line;
            }
          }
        }
        if (done || options.signal?.aborted) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 250).unref(); // also poll: inotify may miss appends to an open file
        });
        wake = undefined;
      }
    } finally {
      watcher.close();
      options.signal?.removeEventListener("abort", onAbort);
    }
  }
}

/**
 * What was written to `path` since the cursor, across rotations: a consistent picture of the
 * files (see `openAll`), the cursor's file found by its inode number (the cursor holds that file
 * open, so no other file can be given its number meanwhile, though ext4 reuses a freed one at
 * once), the rest of it, then every newer file. If the cursor's file was rotated away entirely,
 * the rest of it is read through the handle still held; files rotated away between are gone (as
 * with tail -F), and a line left unended there is dropped.
 */
async function* readNew(path: string, c: Cursor): AsyncGenerator<string> {
  const files = await openAll(path);
  const before = c.held;
  try {
    const current = files.at(-1);
    if (!current) return;
    let from = before ? files.findIndex((f) => f.ino === c.ino) : -1;
    if (from < 0) {
      if (before) {
        const size = (await before.stat()).size;
        for (let at = c.offset; at < size; at += CHUNK) {
          const to = Math.min(size, at + CHUNK);
          const text = await readText(c, before, at, to);
          c.offset = to;
          yield text;
        }
      }
      c.partial = "";
      c.partialCut = false;
      c.decoder = new StringDecoder("utf8");
      c.offset = 0;
      from = 0;
    } else if (files[from]!.size < c.offset) {
      c.offset = 0; // truncated in place
    }
    for (let k = from; k < files.length; k++) {
      const f = files[k]!;
      if (k > from) c.offset = 0;
      c.held = f.handle; // the offset is into this file from here on
      c.ino = f.ino;
      for (let at = c.offset; at < f.size; at += CHUNK) {
        const to = Math.min(f.size, at + CHUNK);
        const text = await readText(c, f.handle, at, to);
        c.offset = to;
        yield text;
      }
    }
  } finally {
    if (c.held !== before) await before?.close();
    await Promise.all(files.filter((f) => f.handle !== c.held).map((f) => f.handle.close()));
  }
}

/** A piece of a line, and whether it is the line's start. */
interface Piece {
  text: string;
  start: boolean;
}

/** The whole lines of the cursor's partial line plus `text`, each cut into MAX_LINE pieces. */
function cut(c: Cursor, text: string): Piece[] {
  const parts = (c.partial + text).split("\n");
  c.partial = parts.pop() ?? "";
  const lines: Piece[] = [];
  for (const p of parts) {
    for (let i = 0; i === 0 || i < p.length; i += MAX_LINE) lines.push({ text: p.slice(i, i + MAX_LINE), start: i === 0 && !c.partialCut });
    c.partialCut = false;
  }
  while (c.partial.length > MAX_LINE) {
    lines.push({ text: c.partial.slice(0, MAX_LINE), start: !c.partialCut });
    c.partialCut = true;
    c.partial = c.partial.slice(MAX_LINE);
  }
  return lines;
}

/**
 * Where the last `n` lines begin (file index, offset), reading backwards a chunk at a time: just
 * after the (n+1)-th line end from the end (a last line without its end is not a line yet).
 */
async function tailStart(files: OpenFile[], n: number): Promise<[number, number]> {
  if (n <= 0) return [files.length, 0];
  let seen = 0;
  for (let k = files.length - 1; k >= 0; k--) {
    const f = files[k]!;
    for (let to = f.size; to > 0; to -= CHUNK) {
      const from = Math.max(0, to - CHUNK);
      const buf = await readBytes(f.handle, from, to);
      for (let i = buf.length - 1; i >= 0; i--) {
        if (buf[i] === 0x0a && ++seen === n + 1) return [k, from + i + 1];
      }
    }
  }
  return [0, 0];
}

interface Cursor {
  /** The file being read, held open (following only), and its inode number. */
  held?: FileHandle;
  ino: number;
  /** How far into it. */
  offset: number;
  partial: string;
  /** Keeps a character cut between two chunks whole. */
  decoder: StringDecoder;
  /** The time of the last stamped line read (a piece of a long line goes with it). */
  time?: string;
  /** The partial line's start was given out already (cut at MAX_LINE). */
  partialCut?: boolean;
}

interface OpenFile {
  handle: FileHandle;
  /** Identity across renames: inode and birth time. */
  id: string;
  ino: number;
  size: number;
}

/**
 * Opens <base>.N ... <base>.1, <base> (oldest first) as one consistent picture: after opening,
 * each path must still name the file that was opened, or the whole listing is taken again (a
 * rotation happened meanwhile). Reads then go through the handles.
 */
async function openAll(base: string): Promise<OpenFile[]> {
  const dir = dirname(base);
  const name = basename(base);
  for (let attempt = 0; ; attempt++) {
    const names = await readdir(dir).catch(() => [] as string[]);
    const paths = names
      .map((n) => (n.startsWith(`${name}.`) ? Number(n.slice(name.length + 1)) : NaN))
      .filter((n) => Number.isInteger(n) && n > 0)
      .sort((a, b) => b - a)
      .map((n) => join(dir, `${name}.${n}`));
    paths.push(base);
    const opened: Array<OpenFile | undefined> = await Promise.all(
      paths.map(async (p) => {
        const handle = await open(p, "r").catch(() => undefined);
        if (!handle) return undefined;
        const st = await handle.stat();
        return { handle, id: `${st.ino}:${st.birthtimeMs}`, ino: st.ino, size: st.size };
      }),
    );
    const again = await Promise.all(paths.map((p) => stat(p).then((st) => `${st.ino}:${st.birthtimeMs}`).catch(() => undefined)));
    const stable = opened.every((f, k) => f?.id === again[k]);
    const files = opened.filter((f): f is OpenFile => f !== undefined);
    if (stable || attempt >= 20) return files;
    await Promise.all(files.map((f) => f.handle.close()));
  }
}

async function readText(c: Cursor, h: FileHandle, from: number, to: number): Promise<string> {
  return c.decoder.write(await readBytes(h, from, to));
}

async function readBytes(h: FileHandle, from: number, to: number): Promise<Buffer> {
  if (to <= from) return Buffer.alloc(0);
  const buf = Buffer.alloc(to - from);
  const { bytesRead } = await h.read(buf, 0, buf.length, from);
  return buf.subarray(0, bytesRead);
}
