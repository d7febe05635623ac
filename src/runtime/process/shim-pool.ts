/**
 * Warm launchers. On cgroup v1, moving a process into a cgroup waits for an RCU grace period
 * (~10 ms) when moves are rare (see the project's baselines), which alone would double a star's
 * start time. So the runtime keeps a few star-shims already sitting in fresh cgroups, waiting
 * (`-w`) for their star: a start writes the star's limits into the warm group and hands the
 * shim its program on stdin. The group keeps its warm name (renaming takes cgroup_mutex, which
 * a concurrent move holds for its whole grace period); the runtime records which group is whose.
 *
 * Refills come in batches: when the pool falls to half, it is filled up again at once. A move
 * holds the kernel's cgroup_mutex through its grace period, blocking every other cgroup
 * operation (a start's rename and limit writes among them) for those ~10 ms; moves that follow
 * each other closely share one grace period (~0.1 ms each), so a batch costs one wait, not one
 * per star.
 *
 * Warm groups are named "_warm-…" (never a star id: ids are DNS labels, which have no "_").
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { CgroupDriver, StarCgroup } from "../cgroup/cgroup.js";

export const WARM_PREFIX = "_warm-";

export interface WarmShim {
  child: ChildProcess;
  /** The warm group's id (rename it to the star's). */
  groupId: string;
  group: StarCgroup;
}

export class ShimPool {
  private readonly ready: WarmShim[] = [];
  private filling = 0;
  private seq = 0;
  private closed = false;

  constructor(
    private readonly shimPath: string,
    private readonly cgroups: CgroupDriver,
    private readonly size: number,
  ) {}

  /** Removes warm groups a previous agent left unused (not in `inUse`), then fills the pool. */
  async start(inUse: ReadonlySet<string> = new Set()): Promise<void> {
    for (const id of await this.cgroups.list()) {
      if (!id.startsWith(WARM_PREFIX) || inUse.has(id)) continue;
      const group = await this.cgroups.open(id);
      await group?.killAll("SIGKILL");
      await group?.destroy().catch(() => undefined);
    }
    this.refill();
  }

  /** How many warm shims are ready now. */
  get readyCount(): number {
    return this.ready.length;
  }

  /** A warm shim, if one is ready; the pool refills behind it. */
  take(): WarmShim | undefined {
    let warm: WarmShim | undefined;
    while ((warm = this.ready.shift())) {
      if (warm.child.exitCode === null && warm.child.signalCode === null) break;
      void warm.group.destroy().catch(() => undefined);
    }
    this.refill();
    return warm;
  }

  private refill(): void {
    if (this.ready.length + this.filling > this.size / 2) return;
    if (this.filling > 0 || this.closed) return;
    // One at a time: a refill blocked in the kernel then holds one libuv thread, not all four.
    const want = this.size - this.ready.length;
    this.filling = want;
    void (async () => {
      for (let i = 0; i < want && !this.closed; i++) {
        try {
          this.ready.push(await this.spawnOne());
        } catch {
          break; // retried at the next take
        } finally {
          this.filling--;
        }
      }
      this.filling = 0;
      if (this.closed) await Promise.all(this.ready.splice(0).map(discard));
    })();
  }

  private async spawnOne(): Promise<WarmShim> {
    const groupId = `${WARM_PREFIX}${process.pid}-${this.seq++}`;
    const group = await this.cgroups.create(groupId, { pids: 64 });
    const args = ["-w"];
    for (const f of group.procsFiles) args.push("-c", f);
    const child = spawn(this.shimPath, args, {
      stdio: ["pipe", "ignore", "ignore", "pipe"],
      env: { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin" },
      detached: true,
    });
    child.on("error", () => undefined);
    return { child, groupId, group };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.ready.splice(0).map(discard));
  }
}

async function discard(w: WarmShim): Promise<void> {
  w.child.stdin?.end(); // EOF with no arguments: the shim exits
  const exited = new Promise((resolve) => {
    if (w.child.exitCode !== null || w.child.signalCode !== null) resolve(undefined);
    else w.child.once("exit", resolve);
  });
  await exited;
  await w.group.destroy().catch(() => undefined);
}
