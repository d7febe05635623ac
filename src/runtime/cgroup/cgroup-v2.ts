/**
 * cgroup v2: one unified tree. The parent group (<root>/<parent>) enables the cpu, memory and
 * pids controllers for its children through cgroup.subtree_control; each star gets
 * <root>/<parent>/<id>.
 *
 *   cpu.max "quota period" | "max period"     cpu.stat usage_usec
 *   memory.max, memory.swap.max = 0           memory.current, memory.peak, memory.events oom_kill
 *   pids.max, pids.current                    cgroup.procs, cgroup.kill
 *
 * Delegation: the root need not be /sys/fs/cgroup. A non-root agent runs in a subtree delegated
 * to its user (systemd: a unit with Delegate=yes, or `systemd-run --user -p Delegate=yes`),
 * and passes that subtree as root: it must own the directory and its cgroup.procs,
 * cgroup.subtree_control and cgroup.threads, and must not itself sit in a group that has
 * controllers enabled for children (the "no internal processes" rule). See docs/runtime.md.
 */
import { readFileSync } from "node:fs";
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
import { ThreadGroupDir, subdirs, readKeyed, readNumber, readNumberSync, readPids, readText, removeCgroupDir, signalGroup, writeValue } from "./files.js";

const WANTED = ["cpu", "memory", "pids"] as const;

export class CgroupV2Driver implements CgroupDriver {
  readonly version = "v2";
  private available: Set<string> | undefined;
  private parentReady: Promise<void> | undefined;

  constructor(
    private readonly root: string,
    private readonly parent = "constellation",
  ) {}

  /** Reads which controllers the root offers (call before capabilities()). */
  async init(): Promise<this> {
    try {
      this.available = new Set((await readText(join(this.root, "cgroup.controllers"))).split(/\s+/).filter(Boolean));
    } catch {
      this.available = new Set();
    }
    return this;
  }

  capabilities(): CgroupCapabilities {
    const has = (c: string) => this.available?.has(c) ?? false;
    const missing = WANTED.filter((c) => !has(c)).map((c) => `the ${c} controller is not available in ${this.root}/cgroup.controllers`);
    return { cpu: has("cpu"), memory: has("memory"), pids: has("pids"), missing };
  }

  private ensureParent(): Promise<void> {
    this.parentReady ??= (async () => {
      const dir = join(this.root, this.parent);
      await mkdir(dir, { recursive: true });
      const enable = WANTED.filter((c) => this.available?.has(c)).map((c) => `+${c}`);
      // The root must delegate the controllers to our parent (each level of it: a node's is
      // constellation/<node>/<runtime>), and our parent to the stars.
      if (enable.length) {
        let level = this.root;
        await writeValue(join(level, "cgroup.subtree_control"), enable.join(" "));
        for (const part of this.parent.split("/").filter(Boolean)) {
          level = join(level, part);
          await writeValue(join(level, "cgroup.subtree_control"), enable.join(" "));
        }
      }
    })();
    return this.parentReady;
  }

  async create(id: string, limits: Limits): Promise<StarCgroup> {
    const plan = await this.plan(id, limits);
    for (const dir of plan.mkdirs) await mkdir(dir, { recursive: true });
    for (const [file, value] of plan.writes) await writeValue(file, value);
    return this.handle(id);
  }

  async plan(id: string, limits: Limits): Promise<CgroupPlan> {
    await this.ensureParent();
    const dir = join(this.root, this.parent, id);
    return { mkdirs: [dir], writes: limitWrites(dir, limits), procsFiles: [join(dir, "cgroup.procs")] };
  }

  handle(id: string): StarCgroup {
    return new V2Group(join(this.root, this.parent, id));
  }

  async open(id: string): Promise<StarCgroup | undefined> {
    const dir = join(this.root, this.parent, id);
    try {
      await access(dir);
      return new V2Group(dir);
    } catch {
      return undefined;
    }
  }

  async groups(): Promise<string[]> {
    return subdirs(join(this.root, this.parent));
  }

  /**
   * A threaded child of the owner's group. The owner becomes a "threaded domain": it keeps its
   * process (and its memory and pids limits, which are domain controllers) while its threads may
   * be spread over threaded children, which only the cpu controller (a threaded one) divides.
   * An owner with processes may enable only threaded controllers for its children, and only
   * while it can be the root of a threaded subtree (no domain controllers enabled below it).
   */
  async threadGroup(ownerId: string, id: string, cpuMillis: number): Promise<ThreadGroup | undefined> {
    if (!this.available?.has("cpu")) return undefined;
    const owner = join(this.root, this.parent, ownerId);
    const dir = join(owner, id);
    await mkdir(dir, { recursive: true });
    await writeValue(join(dir, "cgroup.type"), "threaded");
    await writeValue(join(owner, "cgroup.subtree_control"), "+cpu");
    await writeValue(join(dir, "cpu.max"), `${cpuQuotaUsec(cpuMillis)} ${CPU_PERIOD_USEC}`);
    return new ThreadGroupDir(dir, "cgroup.threads"); // cgroup.procs would move the whole process
  }
}


function limitWrites(dir: string, limits: Limits): Array<[string, string]> {
  const quota = limits.cpuMillis === undefined ? "max" : String(cpuQuotaUsec(limits.cpuMillis));
  return [
    [join(dir, "cpu.max"), `${quota} ${CPU_PERIOD_USEC}`],
    [join(dir, "memory.max"), String(limits.memoryBytes ?? "max")],
    [join(dir, "memory.swap.max"), limits.memoryBytes === undefined ? "max" : "0"],
    [join(dir, "pids.max"), String(limits.pids)],
  ];
}

class V2Group implements StarCgroup {
  readonly procsFiles: string[];

  constructor(private readonly dir: string) {
    this.procsFiles = [join(dir, "cgroup.procs")];
  }

  async setLimits(limits: Limits): Promise<void> {
    for (const [file, value] of limitWrites(this.dir, limits)) await writeValue(file, value);
  }

  async stats(): Promise<CgroupStats> {
    const cpu = await readKeyed(join(this.dir, "cpu.stat"));
    const events = await readKeyed(join(this.dir, "memory.events"));
    const stats: CgroupStats = {
      cpuUsageUsec: cpu.get("usage_usec") ?? 0,
      memoryBytes: await readNumber(join(this.dir, "memory.current")),
      pids: await readNumber(join(this.dir, "pids.current")),
      oomKills: events.get("oom_kill") ?? 0,
    };
    try {
      stats.memoryPeakBytes = await readNumber(join(this.dir, "memory.peak")); // kernel 5.19+
    } catch {
      // not reported by this kernel
    }
    return stats;
  }

  usage(): { cpuUsageUsec: number; memoryBytes: number } {
    let cpuUsageUsec = 0;
    try {
      cpuUsageUsec = Number(/^usage_usec (\d+)/m.exec(readFileSync(join(this.dir, "cpu.stat"), "utf8"))?.[1] ?? 0);
    } catch {
      // gone
    }
    return { cpuUsageUsec, memoryBytes: readNumberSync(join(this.dir, "memory.current")) };
  }

  async pids(): Promise<number[]> {
    return readPids(this.procsFiles[0]!);
  }

  async killAll(signal: NodeJS.Signals): Promise<void> {
    if (signal === "SIGKILL") {
      try {
        await writeValue(join(this.dir, "cgroup.kill"), 1); // kernel 5.14+: atomic, no fork race
        return;
      } catch {
        // older kernel: fall through to signalling each process
      }
    }
    await signalGroup(() => this.pids(), signal);
  }

  async destroy(): Promise<void> {
    await removeCgroupDir(this.dir);
  }
}
