/**
 * The `fake` runtime: stars that exist only in memory, with the real spec checks, lifecycle,
 * restart rules and listeners (the shared supervisor), but no processes. Scheduler and
 * controller tests drive it, and a 1,000-node simulation runs one per simulated node in one
 * process. Runs last until stopped, or until a test ends them with `exit()`.
 *
 * @example
 * const rt = new FakeRuntime({ cpuCores: 4, memoryBytes: 8 * 2 ** 30 });
 * await rt.start("web-1", { name: "web-1", command: ["server"], ram_mb: 512 });
 * rt.exit("web-1", { exitCode: 1 });           // as if it crashed
 */
import { StartFailedError } from "../../model/errors.js";
import type { Limits, NodeCapacity, StarSpec } from "../../model/spec.js";
import { type RunHandle, type StarRecord, SupervisedRuntime } from "../supervisor.js";
import type { LogLine, LogOptions, StarStats } from "../../model/status.js";

interface FakeRun {
  end: (e: { exitCode: number | null; signal: string | null; oomKilled: boolean }) => void;
}

export class FakeRuntime extends SupervisedRuntime {
  readonly kind = "fake";
  private nextPid = 1000;
  private readonly runs = new Map<string, FakeRun>();
  private readonly output = new Map<string, LogLine[]>();
  private readonly usages = new Map<string, StarStats>();
  /** Every start, in order (for assertions). */
  readonly launches: string[] = [];

  constructor(
    capacity: NodeCapacity = { cpuCores: 4, memoryBytes: 8 * 2 ** 30 },
    /** Make the next launch of these stars fail with this message (then forget it). */
    readonly failNextLaunch = new Map<string, string>(),
    /** Stars whose program ignores SIGTERM (a stop waits its whole grace, then kills). */
    readonly ignoreTerm = new Set<string>(),
    /** Make the next launch of these stars fail as the node would when short of something (an errno code). */
    readonly shortNextLaunch = new Map<string, string>(),
  ) {
    super(capacity);
  }

  protected async admit(_spec: StarSpec, _limits: Limits): Promise<boolean> {
    return true;
  }

  protected async check(_spec: StarSpec): Promise<void> {}

  protected async launch(rec: StarRecord): Promise<RunHandle> {
    const short = this.shortNextLaunch.get(rec.id);
    if (short !== undefined) {
      this.shortNextLaunch.delete(rec.id);
      throw Object.assign(new Error(`spawn: ${short}`), { code: short });
    }
    const failure = this.failNextLaunch.get(rec.id);
    if (failure !== undefined) {
      this.failNextLaunch.delete(rec.id);
      throw new StartFailedError(rec.id, failure);
    }
    this.launches.push(rec.id);
    let end!: FakeRun["end"];
    const ended = new Promise<{ exitCode: number | null; signal: string | null; oomKilled: boolean }>((resolve) => (end = resolve));
    this.runs.set(rec.id, { end });
    return {
      pid: this.nextPid++,
      ended: ended.finally(() => this.runs.delete(rec.id)),
      terminate: () => {
        if (!this.ignoreTerm.has(rec.id)) end({ exitCode: null, signal: "SIGTERM", oomKilled: false });
      },
      kill: () => end({ exitCode: null, signal: "SIGKILL", oomKilled: false }),
    };
  }

  protected async cleanup(rec: StarRecord, removeFiles: boolean): Promise<void> {
    this.usages.delete(rec.id);
    if (removeFiles) this.output.delete(rec.id);
  }

  /** Ends the star's current run as if its program had exited (or been OOM-killed). */
  exit(id: string, how: { exitCode?: number; signal?: string; oomKilled?: boolean } = {}): void {
    this.get(id);
    this.runs.get(id)?.end({ exitCode: how.exitCode ?? (how.signal ? null : 0), signal: how.signal ?? null, oomKilled: how.oomKilled ?? false });
  }

  /** Appends a line to the star's output. */
  log(id: string, line: string, stream: LogLine["stream"] = "stdout"): void {
    this.get(id);
    const lines = this.output.get(id) ?? [];
    lines.push({ stream, line });
    this.output.set(id, lines);
  }

  /** Sets what stats() reports for the star. */
  setUsage(id: string, stats: StarStats): void {
    this.get(id);
    this.usages.set(id, stats);
  }

  async stats(id: string): Promise<StarStats> {
    this.get(id);
    return this.usages.get(id) ?? { cpuUsageUsec: 0, memoryBytes: 0, pids: this.runs.has(id) ? 1 : 0 };
  }

  usage(id: string): { cpuUsageUsec: number; memoryBytes: number } | undefined {
    if (!this.stars.has(id)) return undefined;
    const u = this.usages.get(id);
    return { cpuUsageUsec: u?.cpuUsageUsec ?? 0, memoryBytes: u?.memoryBytes ?? 0 };
  }

  async *logs(id: string, options: LogOptions = {}): AsyncGenerator<LogLine> {
    this.get(id);
    const lines = this.output.get(id) ?? [];
    yield* options.tail === undefined ? lines : lines.slice(-options.tail);
    // Following: nothing more is ever written here; the stream stays open until the caller goes.
    const signal = options.signal;
    if (options.follow && signal && !signal.aborted) await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
  }
}
