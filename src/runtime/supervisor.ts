/**
 * What every runtime shares: the star records, their state machine, restarts with backoff and
 * a cap (rules in restart.ts), graceful stop, waiters and change listeners. A concrete runtime
 * supplies `launch` (one run of a star) and `cleanup` (after the star's last run).
 *
 *   start ─▶ check spec ─▶ prepare ─▶ launch ─▶ running ─▶ run ends ─▶ decideRestart
 *                                        ▲                                │ restart after backoff
 *                                        └────────────────────────────────┘
 */
import { InvalidArgumentError, StarExistsError, StarNotFoundError, isConstellationError } from "../model/errors.js";
import { portEnvName } from "../model/names.js";
import {
  DNS_LABEL,
  type HealthCheck,
  type Limits,
  type NodeCapacity,
  type StarSpec,
  type StarSpecInput,
  limitsOf,
  parseStarSpec,
} from "../model/spec.js";
import { type HealthState, type ProbeResult, initialHealth, nextHealth, probeHttp, probeTcp } from "./health.js";
import { readLogs } from "./logs.js";
import { nodeShortage } from "./shortage.js";
import { type RestartHistory, type RunEnd, TERMINAL_STATES, decideRestart, endState } from "./restart.js";
import type { Runtime, StartOptions } from "./types.js";
import type { LogLine, LogOptions, StarStats, StarStatus } from "../model/status.js";

/** One run of a star, as the concrete runtime reports it. */
export interface RunHandle {
  pid: number;
  /** Resolves when the run is over. */
  ended: Promise<Omit<RunEnd, "stopRequested">>;
  /** Asks the star to stop (SIGTERM or the isolate's equivalent). */
  terminate(): void;
  /** Ends the run now. */
  kill(): void;
}

export interface StarRecord {
  id: string;
  spec: StarSpec;
  /** Made by an admin (StartOptions.trusted). */
  trusted: boolean;
  /** StartOptions.identity. */
  identity?: string[];
  limits: Limits;
  status: StarStatus;
  history: RestartHistory;
  run?: RunHandle;
  stopRequested: boolean;
  restartTimer?: NodeJS.Timeout;
  healthTimer?: NodeJS.Timeout;
  health?: HealthState;
  /** The run was ended by failed health checks (for the reason shown). */
  killedByHealth?: string;
  /** Grace of a stop asked for while the star was still starting. */
  stopGraceMs?: number;
  /** Resolvers of wait() calls. */
  waiters: Array<(s: StarStatus) => void>;
}

/** How long a restart put off by the node's own shortage waits before it is tried again. */
const SHORT_RETRY_MS = 5000;

/** HTTP and TCP probes in flight at once on a node; more wait their turn (issue 9). */
export const PROBES_IN_FLIGHT = 64;

/** At most `max` tasks at once; the rest wait, in order. */
export class Slots {
  private busy = 0;
  private readonly queue: Array<() => void> = [];
  constructor(private readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.busy >= this.max) await new Promise<void>((r) => this.queue.push(r));
    else this.busy++;
    try {
      return await task();
    } finally {
      const next = this.queue.shift();
      if (next) next(); // the slot passes on
      else this.busy--;
    }
  }
}

export abstract class SupervisedRuntime implements Runtime {
  abstract readonly kind: Runtime["kind"];
  protected readonly stars = new Map<string, StarRecord>();
  private readonly listeners = new Set<(s: StarStatus) => void>();
  protected closed = false;
  /** Each star has one probe in flight at most (the next waits for it); the node, PROBES_IN_FLIGHT. */
  private readonly probeSlots = new Slots(PROBES_IN_FLIGHT);

  constructor(protected readonly capacity: NodeCapacity | undefined) {}

  /** Checks what this runtime can enforce; returns whether the limits are enforced. */
  protected abstract admit(spec: StarSpec, limits: Limits): Promise<boolean>;
  /** Checks what must hold before anything is created (the script exists and parses, ...). */
  protected abstract check(spec: StarSpec, trusted: boolean): Promise<void>;
  /** Starts one run; throws a typed error (the star is then failed). */
  protected abstract launch(rec: StarRecord): Promise<RunHandle>;
  /** After the star's last run or on remove: release its resources. */
  protected abstract cleanup(rec: StarRecord, removeFiles: boolean): Promise<void>;
  abstract stats(id: string): Promise<StarStats>;
  abstract usage(id: string): { cpuUsageUsec: number; memoryBytes: number } | undefined;
  abstract logs(id: string, options?: LogOptions): AsyncIterable<LogLine>;

  /** A star's logs from its directory, followed until it has ended for good. */
  protected logsIn(dir: string, id: string, options: LogOptions): AsyncIterable<LogLine> {
    this.get(id);
    return readLogs(dir, options, () => {
      const s = this.stars.get(id)?.status;
      return !s || (s.state !== "running" && s.state !== "starting" && s.restartAt === undefined);
    });
  }

  /**
   * Checks a spec as start() would (fields, limits against the node, what the runtime can
   * enforce, the script, the host paths it names), without starting anything: for the
   * controller's create, so bad input is refused before a star is recorded.
   */
  async validate(input: StarSpecInput, options: StartOptions = {}): Promise<void> {
    const spec = parseStarSpec(input);
    await this.admit(spec, limitsOf(spec, this.capacity));
    await this.check(spec, options.trusted === true);
  }

  async start(id: string, input: StarSpecInput, options: StartOptions = {}): Promise<StarStatus> {
    if (typeof id !== "string" || !DNS_LABEL.test(id)) {
      throw new InvalidArgumentError("id", `star id must be a DNS label (lowercase letters, digits, '-'), got ${JSON.stringify(id)}`);
    }
    if (this.stars.has(id)) throw new StarExistsError(id);
    const spec = parseStarSpec(input);
    const limits = limitsOf(spec, this.capacity);
    const limitsEnforced = await this.admit(spec, limits);
    const trusted = options.trusted === true;
    await this.check(spec, trusted);
    const rec: StarRecord = {
      id,
      spec,
      trusted,
      ...(options.identity ? { identity: options.identity } : {}),
      limits,
      status: { id, name: spec.name, state: "pending", restarts: 0, limits, limitsEnforced, ready: false },
      history: { restarts: [], streak: 0 },
      stopRequested: false,
      waiters: [],
    };
    if (this.stars.has(id)) throw new StarExistsError(id); // raced with another start
    this.stars.set(id, rec);
    return this.runFirst(rec);
  }

  /**
   * Starts a star that has ended (stopped, exited, failed) again, with its spec and its files
   * (logs go on); a star that runs, or has a restart pending, is left as it is.
   */
  async resume(id: string): Promise<StarStatus> {
    const rec = this.get(id);
    if (!this.settled(rec)) return { ...rec.status };
    rec.stopRequested = false;
    rec.stopGraceMs = undefined;
    rec.killedByHealth = undefined;
    rec.history = { restarts: [], streak: 0 };
    return this.runFirst(rec);
  }

  /** A run asked for by start() or resume(): a launch failure leaves the star failed, and throws. */
  private async runFirst(rec: StarRecord): Promise<StarStatus> {
    try {
      await this.runOnce(rec);
    } catch (err) {
      this.finish(rec, { state: "failed", reason: errorText(err) });
      throw err;
    }
    return { ...rec.status };
  }

  private async runOnce(rec: StarRecord): Promise<void> {
    this.update(rec, { state: "starting", reason: undefined, restartAt: undefined });
    const run = await this.launch(rec);
    this.attach(rec, run);
    this.update(rec, {
      state: "running",
      pid: run.pid,
      startedAt: Date.now(),
      exitCode: undefined,
      signal: undefined,
      finishedAt: undefined,
      ready: !rec.spec.health,
      health: rec.spec.health ? { failures: 0 } : undefined,
    });
    if (rec.stopRequested) this.endRun(rec, run, rec.stopGraceMs ?? rec.spec.stop_grace_ms); // stopped while starting
    else this.watchHealth(rec, run);
  }

  /** Probes the star's health check every interval while `run` lasts. */
  private watchHealth(rec: StarRecord, run: RunHandle): void {
    const check = rec.spec.health;
    if (!check) return;
    rec.health = initialHealth;
    const tick = async () => {
      rec.healthTimer = undefined;
      if (rec.run !== run || this.closed) return;
      const result = await this.probe(rec, check).catch((err: unknown) => ({ ok: false as const, error: errorText(err) }));
      if (rec.run !== run) return;
      const { state, kill } = nextHealth(rec.health ?? initialHealth, result, check);
      const before = rec.health;
      rec.health = state;
      if (state.ready !== before?.ready || state.failures !== before?.failures) {
        this.update(rec, { ready: state.ready, health: { failures: state.failures, ...(state.lastError ? { lastError: state.lastError } : {}) } });
      }
      if (kill) {
        rec.killedByHealth = `killed after ${state.failures} failed health checks (${state.lastError ?? "unhealthy"})`;
        run.kill();
        return;
      }
      rec.healthTimer = setTimeout(() => void tick(), check.interval_ms);
    };
    rec.healthTimer = setTimeout(() => void tick(), Math.min(check.interval_ms, 100));
  }

  /** One probe of a health check. http and tcp go to the port on this host; exec is runtime-specific. */
  protected probe(rec: StarRecord, check: HealthCheck): Promise<ProbeResult> {
    if (check.type !== "exec" && typeof check.port === "string") {
      // A named port: the one its node gave it (in its environment, agent/ports.ts).
      const port = Number(rec.spec.env[portEnvName(check.port)]);
      if (!Number.isInteger(port) || port < 1 || port > 65535) return Promise.resolve({ ok: false, error: `its port ${check.port} was not given to it (no ${portEnvName(check.port)})` });
      return this.probe(rec, { ...check, port });
    }
    switch (check.type) {
      case "http":
        return this.probeSlots.run(() => probeHttp("127.0.0.1", check.port as number, check.path, check.timeout_ms));
      case "tcp":
        return this.probeSlots.run(() => probeTcp("127.0.0.1", check.port as number, check.timeout_ms));
      case "exec":
        return this.execProbe(rec, check.command, check.timeout_ms);
    }
  }

  /** Runs a command inside the star; exit 0 is healthy. */
  protected async execProbe(_rec: StarRecord, _command: string[], _timeoutMs: number): Promise<ProbeResult> {
    return { ok: false, error: `exec health checks are not supported by the ${this.kind} runtime` };
  }

  private attach(rec: StarRecord, run: RunHandle): void {
    rec.run = run;
    void run.ended.then((end) => {
      if (rec.run !== run || this.closed) return; // after close(), a new runtime follows the star
      rec.run = undefined;
      clearTimeout(rec.healthTimer);
      rec.healthTimer = undefined;
      this.onRunEnded(rec, end);
    });
  }

  /**
   * Takes over a star found on the node after the host process restarted (recovery): its run
   * still going (`run`), or ended while nobody watched (`ended`: the restart policy applies now),
   * or never begun (`start`: it starts now), or settled (none).
   */
  protected adopt(rec: StarRecord, how: { run?: RunHandle; ended?: Omit<RunEnd, "stopRequested">; start?: boolean }): void {
    this.stars.set(rec.id, rec);
    if (how.start) {
      // Its start was cut short before anything ran: it is started now (not a restart).
      this.runOnce(rec).catch((err: unknown) => this.finish(rec, { state: "failed", reason: errorText(err) }));
    } else if (how.run) {
      this.attach(rec, how.run);
      this.update(rec, { state: "running", pid: how.run.pid, ready: !rec.spec.health });
      // A stop that was under way when the previous host process died is carried through.
      if (rec.stopRequested) this.endRun(rec, how.run, rec.spec.stop_grace_ms);
      else this.watchHealth(rec, how.run);
    } else if (how.ended) {
      this.onRunEnded(rec, how.ended);
    } else if (rec.status.restartAt !== undefined) {
      this.scheduleRestart(rec, Math.max(0, rec.status.restartAt - Date.now()));
    }
  }

  private onRunEnded(rec: StarRecord, end: Omit<RunEnd, "stopRequested">): void {
    const now = Date.now();
    const state = endState({ ...end, stopRequested: rec.stopRequested });
    const ranFor = now - (rec.status.startedAt ?? now);
    const decision = decideRestart(rec.spec, state, rec.history, now, ranFor);
    rec.history = decision.history;
    const common = { exitCode: end.exitCode, signal: end.signal, pid: undefined, finishedAt: now, ready: false };
    let reason: string | undefined = rec.killedByHealth;
    rec.killedByHealth = undefined;
    if (reason) {
      // killed by its health check
    } else if (state === "oom_killed") reason = `killed by the kernel: over its memory limit (${rec.limits.memoryBytes} bytes)`;
    else if (state === "failed") reason = end.signal ? `killed by ${end.signal}` : `exited with code ${end.exitCode}`;
    if (!decision.restart) {
      const gaveUp = decision.reason.startsWith("restarted ") ? decision.reason : undefined;
      this.finish(rec, { ...common, state, reason: [reason, gaveUp].filter(Boolean).join("; ") || undefined });
      return;
    }
    if (this.closed) return this.finish(rec, { ...common, state, reason });
    this.update(rec, { ...common, state, reason, restartAt: now + decision.delayMs });
    this.scheduleRestart(rec, decision.delayMs);
  }

  private scheduleRestart(rec: StarRecord, delayMs: number): void {
    rec.restartTimer = setTimeout(() => {
      rec.restartTimer = undefined;
      if (rec.stopRequested || this.closed) return;
      rec.status.restarts++;
      this.runOnce(rec).catch((err: unknown) => {
        const short = nodeShortage(err);
        if (!short || rec.stopRequested || this.closed) return this.finish(rec, { state: "failed", reason: errorText(err) });
        // The node's own shortage is not the star's failure: the restart is put off (issue 9).
        rec.status.restarts--;
        this.update(rec, { state: "failed", reason: `restart put off: this node is short of resources (${short}); trying again in ${SHORT_RETRY_MS} ms`, restartAt: Date.now() + SHORT_RETRY_MS });
        this.scheduleRestart(rec, SHORT_RETRY_MS);
      });
    }, delayMs);
  }

  /** Final state: no run, no restart pending. */
  private finish(rec: StarRecord, patch: Partial<StarStatus>): void {
    this.update(rec, { ...patch, restartAt: undefined, pid: undefined });
    void this.cleanup(rec, false).catch(() => undefined);
    for (const w of rec.waiters.splice(0)) w({ ...rec.status });
  }

  protected update(rec: StarRecord, patch: Partial<StarStatus>): void {
    for (const [k, v] of Object.entries(patch)) {
      if (v === undefined) delete (rec.status as unknown as Record<string, unknown>)[k];
      else (rec.status as unknown as Record<string, unknown>)[k] = v;
    }
    const snapshot = { ...rec.status };
    this.changed(rec);
    for (const fn of this.listeners) fn(snapshot);
  }

  /** Called after every change of a star's status (a runtime may persist it). */
  protected changed(_rec: StarRecord): void {}

  private settled(rec: StarRecord): boolean {
    return TERMINAL_STATES.has(rec.status.state) && !rec.run && !rec.restartTimer;
  }

  wait(id: string): Promise<StarStatus> {
    const rec = this.get(id);
    if (this.settled(rec)) return Promise.resolve({ ...rec.status });
    return new Promise((resolve) => rec.waiters.push(resolve));
  }

  async stop(id: string, options: { graceMs?: number } = {}): Promise<StarStatus> {
    const rec = this.get(id);
    rec.stopRequested = true;
    if (rec.restartTimer) {
      clearTimeout(rec.restartTimer);
      rec.restartTimer = undefined;
      this.finish(rec, { state: "stopped" });
    }
    const run = rec.run;
    const grace = options.graceMs ?? rec.spec.stop_grace_ms;
    if (!run) {
      if (rec.status.state !== "starting") return { ...rec.status };
      rec.stopGraceMs = grace; // runOnce ends the run with this grace once it has started
      return this.wait(id);
    }
    const done = this.wait(id);
    this.endRun(rec, run, grace);
    return done;
  }

  /** SIGTERM (or the runtime's equivalent), then kill after the grace period unless it ended. */
  private endRun(rec: StarRecord, run: RunHandle, graceMs: number): void {
    run.terminate();
    const timer = setTimeout(() => run.kill(), graceMs);
    void run.ended.finally(() => clearTimeout(timer));
  }

  status(id: string): StarStatus | undefined {
    const rec = this.stars.get(id);
    return rec ? { ...rec.status } : undefined;
  }

  saved(id: string): { spec: StarSpec; trusted: boolean; identity?: string[] } | undefined {
    const rec = this.stars.get(id);
    return rec ? { spec: rec.spec, trusted: rec.trusted, ...(rec.identity ? { identity: rec.identity } : {}) } : undefined;
  }

  list(): StarStatus[] {
    return [...this.stars.values()].map((r) => ({ ...r.status }));
  }

  async remove(id: string): Promise<void> {
    const rec = this.get(id);
    if (!this.settled(rec)) await this.stop(id, { graceMs: 0 });
    this.stars.delete(id);
    await this.cleanup(rec, true);
  }

  onChange(fn: (status: StarStatus) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const rec of this.stars.values()) {
      clearTimeout(rec.restartTimer);
      clearTimeout(rec.healthTimer);
    }
    this.listeners.clear();
  }

  protected get(id: string): StarRecord {
    const rec = this.stars.get(id);
    if (!rec) throw new StarNotFoundError(id);
    return rec;
  }
}

function errorText(err: unknown): string {
  return isConstellationError(err) || err instanceof Error ? err.message : String(err);
}
