/** Small file helpers shared by the cgroup drivers (cgroup files are tiny text files). */
import { readFileSync } from "node:fs";
import { readFile, readdir, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { ThreadGroup } from "./cgroup.js";

export async function readText(path: string): Promise<string> {
  return (await readFile(path, "utf8")).trim();
}

/** A number from a small file, synchronously (a few microseconds for a cgroup file); 0 if gone. */
export function readNumberSync(path: string): number {
  try {
    const n = Number(readFileSync(path, "utf8").trim());
    return Number.isFinite(n) ? n : 0;
  } catch {
    return 0;
  }
}

export async function readNumber(path: string): Promise<number> {
  const n = Number(await readText(path));
  return Number.isFinite(n) ? n : 0;
}

/** "key value" lines (memory.events, cpu.stat, memory.oom_control) → map. */
export async function readKeyed(path: string): Promise<Map<string, number>> {
  const map = new Map<string, number>();
  for (const line of (await readText(path)).split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined) map.set(k, Number(v));
  }
  return map;
}

export async function writeValue(path: string, value: string | number): Promise<void> {
  await writeFile(path, String(value));
}

export async function readPids(procsFile: string): Promise<number[]> {
  try {
    return (await readText(procsFile)).split("\n").filter(Boolean).map(Number);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

function killPids(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * Signals every process of a group; for SIGKILL, again while forks keep adding new ones (up to
 * 50 rounds), so a fork bomb cannot outrun it.
 */
export async function signalGroup(pids: () => Promise<number[]>, signal: NodeJS.Signals): Promise<void> {
  for (let round = 0; round < 50; round++) {
    const list = await pids();
    if (list.length === 0) return;
    killPids(list, signal);
    if (signal !== "SIGKILL") return;
  }
}

/**
 * rmdir a cgroup, retrying on EBUSY: after SIGKILL the kernel needs a few ms to tear down a
 * pid namespace before the group is empty.
 */
export async function removeCgroupDir(dir: string, deadlineMs = 5000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if (code !== "EBUSY" || Date.now() > deadline) throw err;
      await delay(wait);
    }
  }
}

/** A thread's cpu group: joined by writing the thread id into `joinFile` (v1 tasks, v2 cgroup.threads). */
export class ThreadGroupDir implements ThreadGroup {
  constructor(
    readonly dir: string,
    private readonly joinFile: string,
  ) {}
  async addThread(tid: number): Promise<void> {
    await writeValue(join(this.dir, this.joinFile), tid);
  }
  async destroy(): Promise<void> {
    await removeCgroupDir(this.dir);
  }
}

/** The names of the directories (child groups) in `dir`; none if it does not exist. */
export async function subdirs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch {
    return [];
  }
}
