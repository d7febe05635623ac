/**
 * Where a node's star groups are on this host: constellation/<node id>/process/<star> (the id is in the
 * node's data dir, node.json), under each v1 hierarchy or the v2 root.
 */
import { existsSync, readFileSync, readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";

/** The node id of a data dir (a single node's, or a runtime's own). */
export function nodeIdOf(dataDir: string): string {
  return (JSON.parse(readFileSync(join(dataDir, "node.json"), "utf8")) as { id: string }).id;
}

/** The path of a star's group under the hierarchy of `controller` (v1) or the v2 root, if it exists. */
export function starCgroupDir(dataDir: string, star: string, controller = "pids"): string | undefined {
  const id = nodeIdOf(dataDir);
  for (const root of [`/sys/fs/cgroup/${controller}`, "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup"]) {
    const p = join(root, "constellation", id, "process", star);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** A file of a star's group, trimmed (throws if the group or file is missing). */
export function starCgroupFile(dataDir: string, star: string, controller: string, file: string): string {
  const dir = starCgroupDir(dataDir, star, controller);
  if (dir && existsSync(join(dir, file))) return readFileSync(join(dir, file), "utf8").trim();
  // v2 names some files differently.
  const v2 = { "memory.limit_in_bytes": "memory.max" }[file];
  if (dir && v2 && existsSync(join(dir, v2))) return readFileSync(join(dir, v2), "utf8").trim();
  throw new Error(`no ${file} for ${star}`);
}

/** The node's star groups on this host with the processes in each (cgroup.procs). */
export function nodeGroups(dataDir: string): Map<string, number[]> {
  const id = nodeIdOf(dataDir);
  const out = new Map<string, number[]>();
  for (const root of ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]) {
    const parent = join(root, "constellation", id, "process");
    if (!existsSync(parent)) continue;
    for (const d of readdirSync(parent, { withFileTypes: true })) {
      if (!d.isDirectory()) continue;
      const procs = readFileSync(join(parent, d.name, "cgroup.procs"), "utf8").trim();
      out.set(d.name, procs ? procs.split("\n").map(Number) : []);
    }
    break;
  }
  return out;
}

/** The stars' inits among these processes: pid 1 of a pid namespace of their own. */
export function initsAmong(pids: number[]): number[] {
  return pids.filter((pid) => {
    try {
      const ns = /^NSpid:\s*(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]?.trim().split(/\s+/) ?? [];
      return ns.length >= 2 && ns.at(-1) === "1";
    } catch {
      return false;
    }
  });
}

/** A process's real uid (undefined once it is gone). */
export function uidOf(pid: number): number | undefined {
  try {
    return Number(/^Uid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  } catch {
    return undefined;
  }
}

/** Whether a process exists (a zombie still does). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes the node's cgroups on every hierarchy (deepest first); true once none is left (its processes must be gone). */
export function removeNodeGroups(dataDir: string): boolean {
  let id: string;
  try {
    id = nodeIdOf(dataDir);
  } catch {
    return true; // never claimed
  }
  let left = false;
  const remove = (dir: string): void => {
    for (const d of readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) remove(join(dir, d.name));
    try {
      rmdirSync(dir);
    } catch {
      left = true; // busy yet
    }
  };
  const tops = readdirSync("/sys/fs/cgroup", { withFileTypes: true }).filter((m) => m.isDirectory()).map((m) => join("/sys/fs/cgroup", m.name, "constellation", id));
  for (const top of [...tops, join("/sys/fs/cgroup", "constellation", id)]) if (existsSync(top)) remove(top);
  return !left;
}

/**
 * A test's teardown after it ended a node: what is left of the node's stars on this host (stars
 * outlive their node by design) is killed by its groups, and the groups removed. Quiet if the
 * node never started; gives up after 10 s.
 */
export async function endNodeStars(dataDir: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!killNodeStars(dataDir) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/** One round of endNodeStars: kills what runs in the node's star groups and removes them; true once none is left. */
export function killNodeStars(dataDir: string): boolean {
  let groups: Map<string, number[]>;
  try {
    groups = nodeGroups(dataDir);
  } catch {
    return true; // never claimed an id: it ran nothing
  }
  for (const pids of groups.values()) {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
  return removeNodeGroups(dataDir);
}
