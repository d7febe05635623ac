/**
 * No cgroups (not Linux, not mounted, or not writable): nothing can be limited or measured.
 * The runtime refuses specs that ask for limits unless it runs in dev mode, where stars are
 * marked "limits not enforced".
 */
import type { Limits } from "../../model/spec.js";
import type { CgroupCapabilities, CgroupDriver, CgroupPlan, CgroupStats, StarCgroup, ThreadGroup } from "./cgroup.js";

export class CgroupNoneDriver implements CgroupDriver {
  readonly version = "none";
  constructor(private readonly reason: string) {}

  capabilities(): CgroupCapabilities {
    return { cpu: false, memory: false, pids: false, missing: [this.reason] };
  }

  async create(_id: string, _limits: Limits): Promise<StarCgroup> {
    return new NoGroup();
  }

  async open(_id: string): Promise<StarCgroup | undefined> {
    return undefined;
  }

  async groups(): Promise<string[]> {
    return [];
  }

  async plan(_id: string, _limits: Limits): Promise<CgroupPlan> {
    return { mkdirs: [], writes: [], procsFiles: [] };
  }

  async threadGroup(): Promise<ThreadGroup | undefined> {
    return undefined;
  }

  handle(_id: string): StarCgroup {
    return new NoGroup();
  }
}

class NoGroup implements StarCgroup {
  readonly procsFiles: string[] = [];
  async setLimits(): Promise<void> {}
  async stats(): Promise<CgroupStats> {
    return { cpuUsageUsec: 0, memoryBytes: 0, pids: 0, oomKills: 0 };
  }
  usage(): { cpuUsageUsec: number; memoryBytes: number } {
    return { cpuUsageUsec: 0, memoryBytes: 0 };
  }
  async pids(): Promise<number[]> {
    return [];
  }
  async killAll(): Promise<void> {}
  async destroy(): Promise<void> {}
}
