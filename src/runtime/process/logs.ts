/**
 * Reading a star's logs: stdout.log and stderr.log, each rotated by the star's launcher into
 * <name>.1, <name>.2, ... (oldest last). Without follow: every kept line (or the last N of
 * each stream), oldest first. With follow: then every new line as it is written, across
 * rotations, until the star ends or the caller aborts.
 */
import { watch } from "node:fs";
import { open, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { LogLine, LogOptions } from "../types.js";

const STREAMS = ["stdout", "stderr"] as const;

export async function* readLogs(dir: string, options: LogOptions, isDone: () => boolean): AsyncGenerator<LogLine> {
  const cursor = new Map<string, { ino: number; offset: number; partial: string }>();
  for (const stream of STREAMS) {
    const files = await snapshot(dir, `${stream}.log`);
    let lines: string[] = [];
    let partial = "";
    for (const f of files) {
      const parts = (partial + f.text).split("\n");
      partial = parts.pop() ?? "";
      lines.push(...parts);
      if (options.tail !== undefined && lines.length > options.tail) lines = lines.slice(-options.tail);
    }
    for (const line of lines) yield { stream, line };
    const current = files.at(-1);
    cursor.set(stream, { ino: current?.ino ?? 0, offset: current?.size ?? 0, partial });
  }
  if (!options.follow) return;

  let wake: (() => void) | undefined;
  const watcher = watch(dir, () => wake?.());
  const onAbort = () => wake?.();
  options.signal?.addEventListener("abort", onAbort);
  try {
    for (;;) {
      const done = isDone(); // read once more after the end, then stop
      for (const stream of STREAMS) {
        const path = join(dir, `${stream}.log`);
        const c = cursor.get(stream)!;
        const st = await stat(path).catch(() => undefined);
        let text = "";
        if (st && c.ino !== 0 && (st.ino !== c.ino || st.size < c.offset)) {
          // Rotated (maybe several times): finish the old file wherever it went, read the
          // newer rotated files whole, then the current file from its start. If the old file
          // was already rotated away, its unread lines are gone: drop the partial line.
          let found = 0;
          const rotated: Array<{ path: string; size: number }> = [];
          for (let i = 1; ; i++) {
            const st2 = await stat(`${path}.${i}`).catch(() => undefined);
            if (!st2) break;
            if (st2.ino === c.ino) {
              found = i;
              text += await readRange(`${path}.${i}`, c.offset, st2.size);
              break;
            }
            rotated.push({ path: `${path}.${i}`, size: st2.size });
          }
          if (!found) c.partial = "";
          for (const r of rotated.reverse()) text += await readRange(r.path, 0, r.size);
          c.offset = 0;
        }
        if (st) {
          c.ino = st.ino;
          if (st.size > c.offset) text += await readRange(path, c.offset, st.size);
          c.offset = Math.max(c.offset, st.size);
        }
        if (!text) continue;
        const parts = (c.partial + text).split("\n");
        c.partial = parts.pop() ?? "";
        for (const line of parts) yield { stream, line };
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

/**
 * The contents of <base>.N ... <base>.1, <base> (oldest first) as one consistent picture: the
 * files are opened, then checked to still be where they were, and read through the open handles,
 * so a rotation during the read neither skips nor repeats a file.
 */
async function snapshot(dir: string, base: string): Promise<Array<{ ino: number; size: number; text: string }>> {
  for (let attempt = 0; ; attempt++) {
    const names = await readdir(dir).catch(() => [] as string[]);
    const paths = names
      .map((n) => (n.startsWith(`${base}.`) ? Number(n.slice(base.length + 1)) : NaN))
      .filter((n) => Number.isInteger(n) && n > 0)
      .sort((a, b) => b - a)
      .map((n) => join(dir, `${base}.${n}`));
    paths.push(join(dir, base));
    const handles = await Promise.all(paths.map((p) => open(p, "r").catch(() => undefined)));
    try {
      const stats = await Promise.all(handles.map((h) => h?.stat()));
      const again = await Promise.all(paths.map((p) => stat(p).catch(() => undefined)));
      const stable = stats.every((st, k) => (st?.ino ?? -1) === (again[k]?.ino ?? -1));
      if (!stable && attempt < 20) continue;
      const out: Array<{ ino: number; size: number; text: string }> = [];
      for (let k = 0; k < handles.length; k++) {
        const h = handles[k];
        const st = stats[k];
        if (!h || !st) continue;
        const buf = Buffer.alloc(st.size);
        const { bytesRead } = await h.read(buf, 0, st.size, 0);
        out.push({ ino: st.ino, size: bytesRead, text: buf.subarray(0, bytesRead).toString("utf8") });
      }
      return out;
    } finally {
      await Promise.all(handles.map((h) => h?.close()));
    }
  }
}

async function readRange(path: string, from: number, to: number): Promise<string> {
  if (to <= from) return "";
  const fh = await open(path, "r").catch(() => undefined);
  if (!fh) return "";
  try {
    const buf = Buffer.alloc(to - from);
    const { bytesRead } = await fh.read(buf, 0, buf.length, from);
    return buf.subarray(0, bytesRead).toString("utf8");
  } finally {
    await fh.close();
  }
}
