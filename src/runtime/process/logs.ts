/**
 * Reading a star's stdout.log and stderr.log: the last N lines of each, then (with follow)
 * every new line as it is written, until the star ends or the caller aborts.
 */
import { watch } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import type { LogLine, LogOptions } from "../types.js";

const STREAMS = ["stdout", "stderr"] as const;
const TAIL_READ_BYTES = 1 << 20;

export async function* readLogs(dir: string, options: LogOptions, isDone: () => boolean): AsyncGenerator<LogLine> {
  const offsets = new Map<string, number>();
  const partial = new Map<string, string>();
  for (const stream of STREAMS) {
    const path = join(dir, `${stream}.log`);
    const size = await stat(path).then((s) => s.size).catch(() => 0);
    const from = options.tail === undefined ? 0 : Math.max(0, size - TAIL_READ_BYTES);
    const text = await readRange(path, from, size);
    let lines = text.split("\n");
    const rest = lines.pop() ?? "";
    if (from > 0) lines = lines.slice(1); // the first line may be cut
    if (options.tail !== undefined) lines = lines.slice(-options.tail);
    for (const line of lines) yield { stream, line };
    offsets.set(stream, size - Buffer.byteLength(rest));
    partial.set(stream, "");
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
        const size = await stat(path).then((s) => s.size).catch(() => 0);
        let from = offsets.get(stream) ?? 0;
        if (size < from) from = 0; // truncated (rotated): start over
        if (size === from) continue;
        const text = partial.get(stream)! + (await readRange(path, from, size));
        offsets.set(stream, size);
        const lines = text.split("\n");
        partial.set(stream, lines.pop() ?? "");
        for (const line of lines) yield { stream, line };
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
