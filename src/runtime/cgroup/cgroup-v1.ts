/**
 * cgroup v1: one hierarchy per controller (cpu, cpuacct, memory, pids; cpu and cpuacct are
 * often co-mounted). A star's group is <hierarchy>/<parent>/<id> in each.
 *
 *   cpu     cpu.cfs_period_us, cpu.cfs_quota_us        cpuacct  cpuacct.usage (ns)
 *   memory  memory.limit_in_bytes, memory.memsw.limit_in_bytes (= limit: no swap),
 *           memory.usage_in_bytes, memory.max_usage_in_bytes, memory.oom_control (oom_kill N)
 *   pids    pids.max, pids.current
 */
import { access, mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Limits } from "../../model/spec.js";
import {
  CPU_PERIOD_USEC,
  type CgroupCapabilities,
  type CgroupDriver,
  type CgroupPlan,
  type CgroupStats,
  type StarCgroup,
  type ThreadGroup,
  cpuQuotaUsec,
} from "./cgroup.js";
import { ThreadGroupDir, subdirs, readKeyed, readNumber, readNumberSync, readPids, removeCgroupDir, signalGroup, writeValue } from "./files.js";

/** Mount points of the v1 hierarchies we use. cpu and cpuacct may be the same directory. */
export interface V1Mounts {
  cpu?: string;
  cpuacct?: string;
  memory?: string;
  pids?: string;
}

export class CgroupV1Driver implements CgroupDriver {
  readonly version = "v1";

  constructor(
    private readonly mounts: V1Mounts,
    private readonly parent = "constellation",
  ) {}

  capabilities(): CgroupCapabilities {
    const missing: string[] = [];
    if (!this.mounts.cpu) missing.push("the cpu controller is not mounted");
    if (!this.mounts.memory) missing.push("the memory controller is not mounted");
    if (!this.mounts.pids) missing.push("the pids controller is not mounted");
    return { cpu: !!this.mounts.cpu, memory: !!this.mounts.memory, pids: !!this.mounts.pids, missing };
  }

  /** The distinct hierarchy directories of a star (cpu,cpuacct co-mounted counts once). */
  private dirs(id: string): { cpu?: string; cpuacct?: string; memory?: string; pids?: string; all: string[] } {
    const d = (mount?: string) => (mount ? join(mount, this.parent, id) : undefined);
    const dirs = { cpu: d(this.mounts.cpu), cpuacct: d(this.mounts.cpuacct), memory: d(this.mounts.memory), pids: d(this.mounts.pids) };
    return { ...dirs, all: [...new Set(Object.values(dirs).filter((x): x is string => !!x))] };
  }

  async create(id: string, limits: Limits): Promise<StarCgroup> {
    const plan = await this.plan(id, limits);
    for (const dir of plan.mkdirs) await mkdir(dir, { recursive: true });
    for (const [file, value] of plan.writes) await writeValue(file, value);
    return this.handle(id);
  }

  async plan(id: string, limits: Limits): Promise<CgroupPlan> {
    const dirs = this.dirs(id);
    this.memsw ??= this.mounts.memory ? exists(join(this.mounts.memory, "memory.memsw.limit_in_bytes")) : Promise.resolve(false);
    return { mkdirs: dirs.all, writes: limitWrites(dirs, limits, await this.memsw), procsFiles: dirs.all.map((d) => join(d, "cgroup.procs")) };
  }

  handle(id: string): StarCgroup {
    return new V1Group(this.dirs(id), this);
  }

  /** Whether swap accounting (memory.memsw.*) exists; asked once. */
  memsw: Promise<boolean> | undefined;

  async open(id: string): Promise<StarCgroup | undefined> {
    const dirs = this.dirs(id);
    for (const dir of dirs.all) {
      try {
        await access(dir);
      } catch {
        return undefined;
      }
    }
    return new V1Group(dirs, this);
  }

  async groups(): Promise<string[]> {
    const mount = this.mounts.pids ?? this.mounts.memory ?? this.mounts.cpu;
    return mount ? subdirs(join(mount, this.parent)) : [];
  }

  async threadGroup(ownerId: string, id: string, cpuMillis: number): Promise<ThreadGroup | undefined> {
    const owner = this.dirs(ownerId).cpu;
    if (!owner) return undefined;
    const dir = join(owner, id);
    await mkdir(dir, { recursive: true });
    await writeValue(join(dir, "cpu.cfs_period_us"), CPU_PERIOD_USEC);
    await writeValue(join(dir, "cpu.cfs_quota_us"), cpuQuotaUsec(cpuMillis));
    return new ThreadGroupDir(dir, "tasks"); // nested in its process's cpu group
  }
}

type V1Dirs = { cpu?: string; cpuacct?: string; memory?: string; pids?: string; all: string[] };

/** The limit files of a v1 group and what to write, in a safe order. */
function limitWrites(dirs: V1Dirs, limits: Limits, hasMemsw: boolean): Array<[string, string]> {
  const w: Array<[string, string]> = [];
  const { cpu, memory, pids } = dirs;
  if (cpu) {
    w.push([join(cpu, "cpu.cfs_period_us"), String(CPU_PERIOD_USEC)]);
    w.push([join(cpu, "cpu.cfs_quota_us"), String(limits.cpuMillis === undefined ? -1 : cpuQuotaUsec(limits.cpuMillis))]);
  }
  if (memory) {
    // memsw must stay >= limit: raise memsw first when unlimiting, lower limit first when limiting.
    const memsw = join(memory, "memory.memsw.limit_in_bytes");
    if (limits.memoryBytes === undefined) {
      if (hasMemsw) w.push([memsw, "-1"]);
      w.push([join(memory, "memory.limit_in_bytes"), "-1"]);
    } else {
      w.push([join(memory, "memory.limit_in_bytes"), String(limits.memoryBytes)]);
      if (hasMemsw) w.push([memsw, String(limits.memoryBytes)]); // memory + swap = memory: no swap
      else w.push([join(memory, "memory.swappiness"), "0"]);
    }
  }
  if (pids) w.push([join(pids, "pids.max"), String(limits.pids)]);
  return w;
}

class V1Group implements StarCgroup {
  readonly procsFiles: string[];

  constructor(
    private readonly dirs: V1Dirs,
    private readonly driver: CgroupV1Driver,
  ) {
    this.procsFiles = dirs.all.map((d) => join(d, "cgroup.procs"));
  }

  async setLimits(limits: Limits): Promise<void> {
    this.driver.memsw ??= this.dirs.memory ? exists(join(this.dirs.memory, "memory.memsw.limit_in_bytes")) : Promise.resolve(false);
    for (const [file, value] of limitWrites(this.dirs, limits, await this.driver.memsw)) await writeValue(file, value);
  }

  async stats(): Promise<CgroupStats> {
    const { cpuacct, memory, pids } = this.dirs;
    const stats: CgroupStats = { cpuUsageUsec: 0, memoryBytes: 0, pids: 0, oomKills: 0 };
    if (cpuacct) stats.cpuUsageUsec = Math.round((await readNumber(join(cpuacct, "cpuacct.usage"))) / 1000);
    if (memory) {
      stats.memoryBytes = await readNumber(join(memory, "memory.usage_in_bytes"));
      stats.memoryPeakBytes = await readNumber(join(memory, "memory.max_usage_in_bytes"));
      stats.oomKills = (await readKeyed(join(memory, "memory.oom_control"))).get("oom_kill") ?? 0;
    }
    if (pids) stats.pids = await readNumber(join(pids, "pids.current"));
    return stats;
  }

  usage(): { cpuUsageUsec: number; memoryBytes: number } {
    const { cpuacct, memory } = this.dirs;
    return {
      cpuUsageUsec: cpuacct ? Math.round(readNumberSync(join(cpuacct, "cpuacct.usage")) / 1000) : 0,
      memoryBytes: memory ? readNumberSync(join(memory, "memory.usage_in_bytes")) : 0,
    };
  }

  async pids(): Promise<number[]> {
    // The pids hierarchy's view: a process put into only some hierarchies is still seen there.
    return readPids(join(this.dirs.pids ?? this.dirs.all[0]!, "cgroup.procs"));
  }

  async killAll(signal: NodeJS.Signals): Promise<void> {
    await signalGroup(() => this.pids(), signal); // no cgroup.kill in v1
  }

  async destroy(): Promise<void> {
    for (const dir of this.dirs.all) await removeCgroupDir(dir);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
