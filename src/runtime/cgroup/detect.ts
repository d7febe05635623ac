/**
 * Which cgroup driver this node gets. Reads /proc/self/mountinfo:
 *   - v1 hierarchies for cpu and memory mounted (also "hybrid" hosts that mount an empty
 *     cgroup2 beside them): v1;
 *   - a cgroup2 mount whose cgroup.controllers offers cpu and memory: v2;
 *   - otherwise, or when the parent group cannot be created (not root, read-only): none,
 *     with the reason.
 */
import { readFileSync, readdirSync, rmdirSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { CgroupDriver } from "./cgroup.js";
import { CgroupNoneDriver } from "./cgroup-none.js";
import { CgroupV1Driver, type V1Mounts } from "./cgroup-v1.js";
import { CgroupV2Driver } from "./cgroup-v2.js";

export interface CgroupMounts {
  v1: V1Mounts;
  v2?: string;
}

/** Parses /proc/self/mountinfo text (pure). */
export function parseMountinfo(text: string): CgroupMounts {
  const mounts: CgroupMounts = { v1: {} };
  for (const line of text.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(" ");
    const [fstype, , superOptions = ""] = line.slice(sep + 3).split(" ");
    const mountpoint = left[4]?.replace(/\\040/g, " ");
    if (!mountpoint) continue;
    if (fstype === "cgroup2") {
      mounts.v2 ??= mountpoint;
    } else if (fstype === "cgroup") {
      const opts = new Set(superOptions.split(","));
      for (const c of ["cpu", "cpuacct", "memory", "pids"] as const) {
        if (opts.has(c)) mounts.v1[c] ??= mountpoint;
      }
    }
  }
  return mounts;
}

export interface DetectOptions {
  /** Name of our parent group under each hierarchy (default "constellation"). */
  parent?: string;
  /** For tests: mountinfo text instead of /proc/self/mountinfo. */
  mountinfo?: string;
  /** For tests and delegated subtrees: the v2 root to use instead of the mount point. */
  v2Root?: string;
}

export async function detectCgroups(options: DetectOptions = {}): Promise<CgroupDriver> {
  const parent = options.parent ?? "constellation";
  if (process.platform !== "linux") return new CgroupNoneDriver(`cgroups need Linux (this is ${process.platform})`);
  let text = options.mountinfo;
  if (text === undefined) {
    try {
      text = await readFile("/proc/self/mountinfo", "utf8");
    } catch (err) {
      return new CgroupNoneDriver(`cannot read /proc/self/mountinfo: ${(err as Error).message}`);
    }
  }
  const mounts = parseMountinfo(text);
  if (mounts.v1.cpu && mounts.v1.memory) {
    const reason = await canCreate(Object.values(mounts.v1).map((m) => join(m, parent)));
    return reason ? new CgroupNoneDriver(reason) : new CgroupV1Driver(mounts.v1, parent);
  }
  const v2Root = options.v2Root ?? mounts.v2;
  if (v2Root) {
    const driver = await new CgroupV2Driver(v2Root, parent).init();
    const caps = driver.capabilities();
    if (!caps.cpu && !caps.memory) return new CgroupNoneDriver(caps.missing.join("; "));
    const reason = await canCreate([join(v2Root, parent)]);
    return reason ? new CgroupNoneDriver(reason) : driver;
  }
  return new CgroupNoneDriver("no cgroup v1 cpu/memory hierarchy and no cgroup2 mount found");
}

async function canCreate(dirs: string[]): Promise<string | undefined> {
  for (const dir of dirs) {
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return `cannot create ${dir} (${code}): run as root, or delegate a cgroup subtree to this user`;
    }
  }
  return undefined;
}

/**
 * Whether anything still runs in a node's groups (constellation/<id> in any hierarchy); empty
 * groups of a node found idle are removed on the way (a gone node leaves nothing behind).
 */
export function nodeCgroupsBusy(id: string, mountinfo?: string): boolean {
  let text = mountinfo;
  try {
    text ??= readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return false;
  }
  const mounts = parseMountinfo(text);
  const roots = [...new Set([...Object.values(mounts.v1), ...(mounts.v2 ? [mounts.v2] : [])])];
  const busy = (dir: string): boolean => {
    let children: string[];
    try {
      if (readFileSync(join(dir, "cgroup.procs"), "utf8").trim() !== "") return true;
      children = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch {
      return false; // no such group
    }
    let any = false;
    for (const c of children) any = busy(join(dir, c)) || any;
    if (!any) {
      try {
        rmdirSync(dir);
      } catch {
        // still in use, or gone
      }
    }
    return any;
  };
  let any = false;
  for (const root of roots) any = busy(join(root, "constellation", id)) || any;
  return any;
}
