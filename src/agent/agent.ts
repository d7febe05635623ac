/**
 * The agent owns its node: it follows the stars its controller assigns to it, drives its
 * runtimes toward them (reconcile.ts decides, one star at a time), and reports every status
 * change back, with an event when the state changes. It talks only to its controller, through
 * an AgentLink (model/agent-link.ts: in the controller's process, or over RNP), never to the
 * store. It needs no controller while it runs: stars keep running when the controller is
 * down, and the runtimes keep them across a restart of the agent (recover), which then takes
 * its stars back from its earlier reports.
 */
import { ScriptError, isConstellationError } from "../model/errors.js";
import { type AgentLink, AssignmentsCompactedError, type NodeLink, type Usage } from "../model/agent-link.js";
import type { EventKind, NodeRecord, StarObserved, StarRecord, StarRef } from "../model/records.js";
import { DEFAULT_NODE_LIMITS, type NodeLimits } from "../model/spec.js";
import { nodeShortage } from "../runtime/shortage.js";
import type { Runtime } from "../runtime/types.js";
import type { LogLine, LogOptions, StarStatus } from "../model/status.js";
import { type Action, type LocalStar, decide, isActive } from "./reconcile.js";
import { choosePorts, portEnv, probePort } from "./ports.js";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { artifactHex } from "../model/artifact.js";

export type RuntimeKind = "process" | "isolate";

export interface AgentOptions {
  /** The agent's controller: all it reads and writes goes through it (never the store). */
  link: AgentLink;
  /** This node (its limits: DEFAULT_NODE_LIMITS unless given). */
  node: Omit<NodeRecord, "limits"> & { limits?: NodeLimits };
  runtimes: Partial<Record<RuntimeKind, Runtime>>;
  /** How often running stars' CPU and memory are sampled (default 2 s). */
  sampleMs?: number;
  /** How often the samples are sent to a controller on another machine (default 5 s). */
  usageShipMs?: number;
  /**
   * The API's URL, given to each star with a token of its own (CONSTELLATION_ENDPOINT and
   * CONSTELLATION_TOKEN), so the SDK works from inside a star. Asked when a star starts.
   */
  endpoint?: () => string | undefined;
  /** For an https:// endpoint: the cluster CA (PEM) its certificate comes from (CONSTELLATION_CA). */
  ca?: string;
  /** Delay before trying again an action that failed (default 5 s). */
  retryMs?: number;
  /** How long one report may take before it counts as failed and the next of its star goes (default 15 s). */
  reportDeadlineMs?: number;
  /** How often the node looks for processes no star accounts for (default 10 s). */
  orphanCheckMs?: number;
  /** Where fetched code (artifacts) is kept, one directory per hash (absent: stars with an artifact fail to start). */
  artifactsDir?: string;
}

interface Local extends LocalStar {
  runtime: Runtime;
  /** The ports this run was given (ports.ts), reported with its status. */
  ports?: Record<string, number>;
  /** Its first start is under way: an end now is the start's outcome, said once it is known. */
  starting?: boolean;
}

export class Agent implements NodeLink {
  private readonly records = new Map<string, StarRecord>();
  private readonly local = new Map<string, Local>();
  private readonly queues = new Map<string, Promise<void>>();
  private readonly usages = new Map<string, Usage & { cpuUsec: number }>();
  /** Starts put off by this node's own shortage, by star: attempts so far (for the backoff). */
  private readonly shortRetries = new Map<string, number>();
  private readonly abort = new AbortController();
  private readonly unsubscribe: Array<() => void> = [];
  private loop: Promise<void> | undefined;
  private sampler: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private degraded: NodeRecord["degraded"];
  private lastShortage = "";
  /** Reports the store did not take (by star), and their retry. */
  private readonly unsent = new Map<string, StarObserved>();
  private unsentRetry: NodeJS.Timeout | undefined;
  private sending = false;
  /** Each star's reports, one after another (inOrder). */
  private readonly reportChains = new Map<string, Promise<void>>();
  /** A star's report queued and not begun yet (report). */
  private readonly reportsWaiting = new Map<string, Promise<void>>();

  constructor(private readonly options: AgentOptions) {}

  get name(): string {
    return this.options.node.name;
  }

  private get link(): AgentLink {
    return this.options.link;
  }

  /** An event of this node's (about one of its stars, or the node). */
  private event(kind: EventKind, message: string, about: { star?: string; uid?: string | undefined } = {}): Promise<void> {
    return this.link.event(kind, message, { ...(about.star ? { star: about.star } : {}), ...(about.uid ? { uid: about.uid } : {}) });
  }

  /** Takes back what the runtimes kept, registers the node, and starts following its assignments. */
  async start(): Promise<void> {
    const reported = await this.link.reports();
    for (const runtime of Object.values(this.options.runtimes)) {
      for (const status of runtime.list()) {
        const report = reported.get(status.id);
        // Unknown to the store (reported by nobody): removed on reconcile.
        const ports = report?.status.ports;
        this.local.set(status.id, { uid: report?.uid ?? "", generation: report?.generation ?? 0, status, runtime, ...(ports ? { ports } : {}) });
      }
      this.unsubscribe.push(runtime.onChange((s) => this.onStatus(runtime, s)));
    }
    const { records, revision } = await this.link.assignments();
    for (const r of records) this.take(r);
    // Stars running without a runtime record (it was lost) are taken back, never started a
    // second time; what no star of ours accounts for is ended (issue 9).
    await this.sweepOrphans(reported);
    for (const [name] of this.local) void this.report(name).catch(() => undefined);
    await this.putNode();
    await this.event("node.up", `node ${this.name} up (${Object.keys(this.options.runtimes).join(", ")} runtime)`);
    for (const name of new Set([...this.records.keys(), ...this.local.keys()])) this.reconcile(name);
    this.loop = this.follow(revision + 1, this.abort.signal);
    this.sampler = setInterval(() => this.sample(), this.options.sampleMs ?? 2000);
    this.sampler.unref();
    if (this.link.heartbeat) {
      await this.beat();
      const fence = setInterval(() => this.checkFence(), 250);
      fence.unref();
      this.unsubscribe.push(() => clearInterval(fence));
    }
    const orphanCheck = setInterval(() => {
      this.sweeping ??= this.sweepOrphans().finally(() => (this.sweeping = undefined));
    }, this.options.orphanCheckMs ?? 10_000);
    orphanCheck.unref();
    this.unsubscribe.push(() => clearInterval(orphanCheck));
  }

  /** This node's record, with its degraded state if it is short of something. */
  private async putNode(): Promise<void> {
    const node: NodeRecord = { ...this.options.node, limits: this.options.node.limits ?? DEFAULT_NODE_LIMITS, ...(this.degraded ? { degraded: this.degraded } : {}) };
    await this.link.putNode(node);
  }

  /**
   * The node says it is degraded while starts are put off for its own shortage (`reason`), and
   * that it is not once none is (issue 9: it used to report the stars failed instead).
   */
  private async shortage(name: string, code: string | undefined): Promise<void> {
    if (code) {
      this.shortRetries.set(name, (this.shortRetries.get(name) ?? 0) + 1);
      this.lastShortage = code;
    } else if (!this.shortRetries.delete(name)) return;
    const n = this.shortRetries.size;
    const reason = n > 0 ? `short of resources (${this.lastShortage}): ${n} star start${n === 1 ? "" : "s"} put off` : undefined;
    if (reason === this.degraded?.reason) return;
    this.degraded = reason ? { reason, since: this.degraded?.since ?? Date.now() } : undefined;
    await this.putNode().catch(() => undefined);
  }

  /**
   * A start (or resume) put off for the node's own shortage `code`: counted (the node is
   * degraded), said in an event, and tried again after a backoff (1 s doubling to 30 s).
   */
  private async putOff(rec: StarRecord, code: string): Promise<number> {
    await this.shortage(rec.name, code);
    const delay = Math.min(30_000, (this.options.retryMs ?? 1000) * 2 ** Math.min(this.shortRetries.get(rec.name)! - 1, 5));
    await this.event("star.start-delayed", `this node is short of resources (${code}); trying again in ${delay} ms`, { star: rec.name, uid: rec.uid })
      .catch(() => undefined);
    setTimeout(() => this.reconcile(rec.name), delay).unref();
    return delay;
  }

  /**
   * Processes of this node that no star's run accounts for: at start-up (`reported`: this
   * node's earlier reports), a star of ours found running unrecorded is taken back; the rest
   * (a group no star has, or strays beside a star's run) are ended, each with an event.
   */
  private async sweepOrphans(reported?: Map<string, StarObserved>): Promise<void> {
    for (const [kind, runtime] of Object.entries(this.options.runtimes)) {
      if (!runtime.orphans || !runtime.endOrphan) continue;
      for (const o of await runtime.orphans().catch(() => [])) {
        if (this.abort.signal.aborted) return;
        const record = this.records.get(o.group);
        const takeBack = reported && o.init && !o.known && record?.desired === "running" && !this.local.has(o.group) && runtime.reattach;
        if (takeBack && ((record.spec as { runtime?: string }).runtime ?? "process") === kind) {
          try {
            const { spec, identity } = await this.withIdentity(record, { keepTokens: true });
            const status = await runtime.reattach!(o.group, spec, { trusted: trustedStar(record), ...(identity ? { identity } : {}) });
            const report = reported.get(o.group);
            const ports = report?.uid === record.uid ? report.status.ports : undefined;
            this.local.set(o.group, { uid: record.uid, generation: report?.uid === record.uid ? report.generation : record.generation, status, runtime, ...(ports ? { ports } : {}) });
            await this.event("star.reattached", `found running without its runtime record (pid ${status.pid ?? "?"}): taken back, not started again`, { star: o.group, uid: record.uid })
              .catch(() => undefined);
            continue;
          } catch {
            // not a star we can follow: ended below, and started again by its record
          }
        }
        await runtime.endOrphan(o).catch(() => undefined);
        const what = o.known ? `beside the run of star ${o.group}` : `in group ${o.group}, which no star of this node has`;
        await this.event("node.orphans-ended", `ended ${o.pids.length} process(es) ${what} (pid ${o.pids.slice(0, 10).join(", ")})`, o.known ? { star: o.group } : {})
          .catch(() => undefined);
      }
    }
  }

  /** Stops following its assignments; stars keep running (the runtimes are closed by their owner). */
  private beater: NodeJS.Timeout | undefined;
  /** When the last heartbeat the controller answered was sent (monotonic ms), and its lease's TTL. */
  private lastBeat = { sentAt: 0, ttlMs: 0 };
  /** The lease may have expired: exclusive stars are stopped and not started (until a beat is answered). */
  private fenced = false;

  /**
   * Renews this node's lease with its controller, then again a third of its TTL later, for as
   * long as the agent runs; a failed beat (the link down) is tried again a second later. Past
   * half the TTL since the last answered beat was sent, the node may be dead to its controller:
   * it fences itself (its exclusive stars stop); the next answered beat lifts it.
   */
  private async beat(): Promise<void> {
    let next = 1000;
    const sentAt = performance.now();
    try {
      const { ttlMs } = await this.link.heartbeat!();
      this.lastBeat = { sentAt, ttlMs };
      next = Math.max(200, Math.floor(ttlMs / 3));
      if (this.fenced) await this.unfence();
    } catch {
      // not now: again soon
    }
    if (this.abort.signal.aborted) return;
    this.beater = setTimeout(() => void this.beat(), next);
    this.beater.unref();
  }

  /** Fences the node once half its lease's TTL has passed since the last answered beat was sent. */
  private checkFence(): void {
    if (!this.fenced && this.lastBeat.ttlMs > 0 && performance.now() - this.lastBeat.sentAt > this.lastBeat.ttlMs / 2) this.setFenced(true);
  }

  /** Changes older than this revision are known from a full read already (the watch skips them). */
  private freshAt = 0;

  /**
   * Lifts the fence once the node knows its assignments as they are now: a full read (an
   * exclusive star moved elsewhere meanwhile is no longer ours, and the watch's older changes,
   * still on their way, are skipped), then its stars are looked at again.
   */
  private async unfence(): Promise<void> {
    // With no exclusive star here, the fence stopped nothing and the watch goes on: no full read
    // (a controller slow under load must not make each of its nodes read every star again).
    if (![...this.records.values()].some((r) => r.spec.exclusive === true)) {
      this.setFenced(false);
      return;
    }
    const read = await this.link.assignments();
    this.freshAt = Math.max(this.freshAt, read.revision);
    const names = new Set([...this.records.keys(), ...read.records.map((r) => r.name)]);
    this.records.clear();
    for (const r of read.records) this.take(r);
    this.setFenced(false);
    for (const name of names) this.reconcile(name);
  }

  private setFenced(on: boolean): void {
    this.fenced = on;
    const exclusive = [...this.records.values()].filter((r) => r.spec.exclusive === true).map((r) => r.name);
    if (exclusive.length === 0) return;
    console.error(`node ${this.name}: ${on ? "no heartbeat answered for half the lease: stopping" : "heartbeats answered again: resuming"} exclusive stars ${exclusive.join(", ")}`);
    for (const name of exclusive) this.reconcile(name);
  }

  async stop(): Promise<void> {
    clearTimeout(this.beater);
    this.abort.abort();
    if (this.sampler) clearInterval(this.sampler);
    clearInterval(this.unsentRetry);
    for (const u of this.unsubscribe) u();
    await this.loop?.catch(() => undefined);
    await Promise.all([...this.queues.values()].map((q) => q.catch(() => undefined)));
  }

  logs(star: StarRef, options?: LogOptions): AsyncIterable<LogLine> {
    const local = this.local.get(star.name);
    // A star removed and made again under its name is another star: not its files.
    if (!local || local.uid !== star.uid) return (async function* () {})();
    return local.runtime.logs(star.name, options);
  }

  usage(star: StarRef): Usage | undefined {
    if (this.local.get(star.name)?.uid !== star.uid) return undefined;
    const u = this.usages.get(star.name);
    return u ? { cpuPercent: u.cpuPercent, memoryBytes: u.memoryBytes, at: u.at } : undefined;
  }

  private take(record: StarRecord): void {
    if (record.node === this.name) this.records.set(record.name, record);
    else this.records.delete(record.name);
  }

  private async follow(fromRevision: number, signal: AbortSignal): Promise<void> {
    let from = fromRevision;
    while (!signal.aborted) {
      try {
        // The stars this node has: of other stars it hears nothing (their names are not its to know).
        const held = new Set([...this.records.keys(), ...this.local.keys()]);
        for await (const batch of this.link.watchAssignments(from, signal, held)) {
          from = batch.revision + 1;
          if (batch.revision <= this.freshAt) continue; // known from a later full read
          for (const c of batch.changes) {
            if (c.record) this.take(c.record);
            else {
              this.records.delete(c.name);
              // A removal does not wait behind a stop's grace period (queued before it): the
              // star ends now, and its memory is free when the controller says so.
              const local = c.deleted ? this.local.get(c.name) : undefined;
              if (local) void local.runtime.stop(c.name, { graceMs: 0 }).catch(() => undefined);
            }
            this.reconcile(c.name);
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        if (!(err instanceof AssignmentsCompactedError)) {
          // The controller is unreachable: keep what we know (and the stars running); ask again.
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        // history compacted: read everything again
        const read = await this.link.assignments().catch(() => undefined);
        if (!read) {
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        this.records.clear();
        for (const r of read.records) this.take(r);
        for (const name of new Set([...this.records.keys(), ...this.local.keys()])) this.reconcile(name);
        from = read.revision + 1;
      }
    }
  }

  /** Queues a decision for one star (one at a time per star, in order). */
  private reconcile(name: string): void {
    const prev = this.queues.get(name) ?? Promise.resolve();
    const next = prev.then(() => this.act(name)).catch(() => undefined);
    this.queues.set(name, next);
    void next.then(() => {
      if (this.queues.get(name) === next) this.queues.delete(name);
    });
  }

  private async act(name: string): Promise<void> {
    if (this.abort.signal.aborted) return;
    const assigned = this.records.get(name);
    // Fenced (its lease may be gone), an exclusive star runs nowhere here: at most once.
    const record = assigned && this.fenced && assigned.spec.exclusive === true && assigned.desired === "running" ? { ...assigned, desired: "stopped" as const } : assigned;
    const local = this.local.get(name);
    if (local) local.status = local.runtime.status(name) ?? local.status;
    const action = decide(record, local);
    if (!action) {
      if (record && local && record.uid === local.uid && record.generation > local.generation) {
        local.generation = record.generation;
        await this.report(name);
      } else if (record && !local) {
        if (record.desired !== "running") await this.shortage(name, undefined); // stopped while its start was put off
        await this.reportIdle(record);
      } else if (!record && !local) {
        await this.shortage(name, undefined); // removed while its start was put off
        await this.dropReport(name, ""); // e.g. a star refused at start, now removed
      }
      return;
    }
    await this.apply(action, name, record, local);
  }

  private async apply(action: Action, name: string, record: StarRecord | undefined, local: Local | undefined): Promise<void> {
    if (action === "remove" || action === "replace") {
      try {
        await local!.runtime.remove(name);
      } catch (err) {
        // It may still run: keep it as ours, say so, and try again (never leave it unwatched).
        const retryMs = this.options.retryMs ?? 5000;
        await this.event("star.remove-failed", `could not remove: ${(err as Error).message}; trying again in ${retryMs} ms`, { star: name, uid: local!.uid }).catch(() => undefined);
        setTimeout(() => this.reconcile(name), retryMs).unref();
        return;
      }
      this.local.delete(name);
      this.usages.delete(name);
      await this.link.dropStarTokens(name);
      if (action === "remove") {
        await this.dropReport(name, local!.uid);
        return;
      }
      // The new star of the name runs only if asked to (created with start: false: not).
      if (record!.desired !== "running") {
        await this.reportIdle(record!);
        return;
      }
    }
    if (action === "stop") {
      local!.generation = record!.generation;
      const stopped = local!.runtime.stop(name).catch(() => undefined);
      // Acted on (reported with the new generation) now, stopped after the grace period.
      await this.report(name);
      await stopped;
      await this.report(name);
      return;
    }
    const rec = record!;
    if (action === "resume") {
      const before = local!.generation;
      local!.generation = rec.generation;
      const err = await local!.runtime.resume(name).then(() => undefined, (e: unknown) => e);
      const short = err === undefined ? undefined : nodeShortage(err);
      if (short) {
        // The node's own shortage: put off like a first start, and tried again (issue 9).
        local!.generation = before;
        await this.putOff(rec, short);
      } else {
        await this.shortage(name, undefined);
        if (err !== undefined) await this.startFailed(name, err);
      }
      await this.report(name);
      return;
    }
    // start / replace: a new star on this node
    const kind: RuntimeKind = (rec.spec as { runtime?: RuntimeKind }).runtime ?? "process";
    const runtime = this.options.runtimes[kind];
    if (!runtime) {
      await this.failWithoutRun(rec, `this node has no ${kind} runtime`);
      return;
    }
    const fresh: Local = { uid: rec.uid, generation: rec.generation, runtime, starting: true };
    this.local.set(name, fresh);
    try {
      // An admin's star is trusted with its script's directory; a star's child is not (docs/security.md).
      const { spec: given, identity } = await this.withIdentity(rec);
      const spec = await this.withCode(rec, given);
      const ports = await this.portsFor(rec);
      const env = ports ? { ...(spec as { env?: Record<string, string> }).env, ...portEnv(ports) } : undefined;
      await runtime.start(name, env ? { ...spec, env } : spec, { trusted: trustedStar(rec), ...(identity ? { identity } : {}) });
      fresh.starting = false;
      await this.shortage(name, undefined);
    } catch (err) {
      fresh.starting = false;
      const short = nodeShortage(err);
      if (short) {
        // The node's own shortage (files, memory, processes) is not the star's failure: undo
        // the attempt, say so, and try again later (issue 9).
        await runtime.remove(name).catch(() => undefined);
        this.local.delete(name);
        const delay = await this.putOff(rec, short);
        // Shown as waiting for its start, with why (not as the start the runtime had begun).
        const waiting: StarStatus = { id: name, name, state: "pending", reason: `start put off: this node is short of resources (${short}); trying again in ${delay} ms`, restarts: 0, limits: { pids: 0 }, ready: false, limitsEnforced: true };
        await this.inOrder(name, () => this.link.report(name, { uid: rec.uid, node: this.name, status: waiting, generation: rec.generation, updatedAt: Date.now() })).catch(() => undefined);
        return;
      }
      await this.shortage(name, undefined); // the star's own failure: no longer put off
      if (!runtime.status(name)) {
        // Refused before anything was created (spec, script, limits): nothing runs.
        this.local.delete(name);
        await this.failWithoutRun(rec, (err as Error).message);
        return;
      }
      await this.startFailed(name, err);
    }
    await this.report(name);
  }

  /** Fetches of code under way, by hash (two stars of one deployment fetch it once). */
  private readonly fetching = new Map<string, Promise<string>>();

  /**
   * The spec the runtime runs: for uploaded code (its `artifact`), the script is this node's
   * copy of it — fetched from the controller by its hash once, checked against it, kept in a
   * directory of its own (a star's script directory holds its own code only).
   */
  private async withCode(rec: StarRecord, spec: StarRecord["spec"]): Promise<StarRecord["spec"]> {
    const id = (spec as { artifact?: string }).artifact;
    if (id === undefined) return spec;
    const hex = artifactHex(id);
    if (!hex || !this.options.artifactsDir || !this.link.artifactChunk) throw new ScriptError(id, "this node cannot fetch uploaded code (no artifacts directory or link)");
    const dir = join(this.options.artifactsDir, hex);
    const file = join(dir, "main.mjs");
    if (!existsSync(file)) {
      let pending = this.fetching.get(hex);
      if (!pending) {
        pending = this.fetchCode(rec, hex, dir, file).finally(() => this.fetching.delete(hex));
        this.fetching.set(hex, pending);
      }
      await pending;
    }
    const { artifact: _, ...rest } = spec as StarRecord["spec"] & { artifact?: string };
    return { ...rest, script: file };
  }

  private async fetchCode(rec: StarRecord, hex: string, dir: string, file: string): Promise<string> {
    const parts: Uint8Array[] = [];
    const first = await this.link.artifactChunk!({ name: rec.name, uid: rec.uid }, 0);
    parts.push(first.data);
    for (let i = 1; i < first.chunks; i++) parts.push((await this.link.artifactChunk!({ name: rec.name, uid: rec.uid }, i)).data);
    const bytes = Buffer.concat(parts);
    const digest = createHash("sha256").update(bytes).digest("hex");
    if (digest !== hex || bytes.length !== first.size) throw new ScriptError(`sha256:${hex}`, `the code fetched (${bytes.length} bytes, sha256 ${digest}) is not the artifact asked for: not run`);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, bytes, { mode: 0o644 });
    await rename(tmp, file); // whole or not at all
    return file;
  }

  /** Port choices, one at a time (two starts never pick the same free port). */
  private choosingPorts: Promise<unknown> = Promise.resolve();

  /**
   * The ports a star starting here gets (its spec's `ports`; undefined if it names none): fixed
   * ones if free, the rest from the dynamic range, never one another star of this node holds.
   */
  private async portsFor(rec: StarRecord): Promise<Record<string, number> | undefined> {
    const asked = (rec.spec as { ports?: Record<string, number> }).ports;
    if (!asked || Object.keys(asked).length === 0) return undefined;
    // (A star that has ended holds none; one starting or between restarts does.)
    const holders = () => {
      const held = new Map<number, string>();
      for (const [n, l] of this.local) if (n !== rec.name && (l.starting === true || isActive(l.runtime.status(n) ?? l.status))) for (const p of Object.values(l.ports ?? {})) held.set(p, n);
      return held;
    };
    // A fixed port one of this node's stars still holds as it ends (removed or moved away, the
    // controller has already given the port to this one): its end is waited for first.
    const before = holders();
    for (const p of Object.values(asked)) {
      const holder = p === 0 ? undefined : before.get(p);
      if (holder !== undefined) await this.queues.get(holder);
    }
    const run = this.choosingPorts.then(() => {
      const held = new Set(holders().keys());
      return choosePorts(asked, { held, isFree: probePort, node: this.name }).then((ports) => {
        // Held from now on (the next choice sees them), by the run that is starting.
        const l = this.local.get(rec.name);
        if (l?.uid === rec.uid) l.ports = ports;
        return ports;
      });
    });
    this.choosingPorts = run.catch(() => undefined);
    return run;
  }

  /** The spec with the API's endpoint and a token of the star's own in its environment. */
  private async withIdentity(rec: StarRecord, options: { keepTokens?: boolean } = {}): Promise<{ spec: StarRecord["spec"]; identity?: string[] }> {
    const endpoint = this.options.endpoint?.();
    const env = (rec.spec as { env?: unknown }).env;
    if (!endpoint || (env !== undefined && (typeof env !== "object" || env === null))) return { spec: rec.spec };
    // A star taken back keeps the token it runs with (its next run gets the new one).
    const token = await this.link.starToken({ name: rec.name, uid: rec.uid }, { keepOld: options.keepTokens === true });
    const own = (env ?? {}) as Record<string, string>;
    // What the node adds (the user's own values of these names win, and are the user's).
    const added: Record<string, string> = { CONSTELLATION_ENDPOINT: endpoint, CONSTELLATION_TOKEN: token, ...(endpoint.startsWith("https:") && this.options.ca ? { CONSTELLATION_CA: this.options.ca } : {}) };
    const identity = Object.keys(added).filter((k) => !(k in own));
    return { spec: { ...rec.spec, env: { ...added, ...own } }, identity };
  }

  private async startFailed(name: string, err: unknown): Promise<void> {
    const code = isConstellationError(err) ? ` [${err.code}]` : "";
    await this.event("star.start-failed", `failed to start${code}: ${(err as Error).message}`, { star: name, uid: this.local.get(name)?.uid });
  }

  /** A star that could not even be created here: reported failed, with the reason. */
  private async failWithoutRun(record: StarRecord, reason: string): Promise<void> {
    const status: StarStatus = {
      id: record.name,
      name: record.name,
      state: "failed",
      reason,
      restarts: 0,
      limits: { pids: 0 },
      ready: false,
      limitsEnforced: true,
    };
    await this.inOrder(record.name, () => this.link.report(record.name, { uid: record.uid, node: this.name, status, generation: record.generation, updatedAt: Date.now() }));
    await this.event("star.start-failed", `failed to start: ${reason}`, { star: record.name, uid: record.uid });
  }

  private onStatus(runtime: Runtime, status: StarStatus): void {
    const local = this.local.get(status.id);
    if (!local || local.runtime !== runtime) return;
    const before = local.status?.state;
    local.status = status;
    // A start that failed before anything ran is reported by the start (as the node's shortage,
    // or as the star's failure).
    if (local.starting && status.state === "failed" && status.pid === undefined) return;
    void this.report(status.id).catch(() => undefined);
    if (before !== status.state) {
      void this.event("star.state", describe(status), { star: status.id, uid: local.uid }).catch(() => undefined);
    }
  }

  /**
   * Runs a star's report (or its drop) after the ones before it: one at a time, in order, so
   * a report read earlier never lands after a later one (the last to land is what the store
   * keeps; two sent together over RNP may land in any order: a running star was left shown
   * as starting).
   */
  private inOrder<T>(name: string, send: () => Promise<T>): Promise<T> {
    // Each within a deadline: a link that never answers fails it (kept for a retry, as any
    // failed report) rather than holding every later one, and the agent's stop, for ever.
    const ms = this.options.reportDeadlineMs ?? REPORT_DEADLINE_MS;
    const next = (this.reportChains.get(name) ?? Promise.resolve()).then(() => withDeadline(send(), ms, `the report of ${name} was not taken within ${ms / 1000} s`));
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    this.reportChains.set(name, tail);
    void tail.then(() => {
      if (this.reportChains.get(name) === tail) this.reportChains.delete(name);
    });
    return next;
  }

  private report(name: string): Promise<void> {
    // The status is read when its turn comes, so the latest is sent last, and one waiting for
    // its turn already says whatever a second would (a flapping star over a slow link).
    const waiting = this.reportsWaiting.get(name);
    if (waiting) return waiting;
    const sent = this.inOrder(name, () => {
      this.reportsWaiting.delete(name);
      return this.reportNow(name);
    });
    this.reportsWaiting.set(name, sent);
    return sent;
  }

  private async reportNow(name: string): Promise<void> {
    const local = this.local.get(name);
    if (!local) return;
    const status = local.runtime.status(name) ?? local.status;
    if (!status) return;
    const observed: StarObserved = { uid: local.uid, node: this.name, status: local.ports ? { ...status, ports: local.ports } : status, generation: local.generation, updatedAt: Date.now() };
    try {
      await this.link.report(name, observed);
    } catch (err) {
      // The store cannot take it (its disk is full, say): kept here, shown by the API from here,
      // and written when the store takes writes again (issue 9).
      this.unsent.set(name, observed);
      this.unsentRetry ??= setInterval(() => void this.sendAgain(), this.options.retryMs ?? 1000);
      this.unsentRetry.unref();
      throw err;
    }
    const kept = this.unsent.get(name);
    if (kept && kept.updatedAt <= observed.updatedAt) this.unsent.delete(name);
  }

  /** Reports the store could not take, tried again (each star's latest) until none is left. */
  private async sendAgain(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      for (const name of [...this.unsent.keys()]) {
        if (!this.local.has(name)) {
          this.unsent.delete(name);
          continue;
        }
        const ok = await this.report(name).then(() => true, () => false);
        if (!ok) break; // still refused: the rest waits for the next round
      }
    } finally {
      this.sending = false;
      if (this.unsent.size === 0 || this.abort.signal.aborted) {
        clearInterval(this.unsentRetry);
        this.unsentRetry = undefined;
      }
    }
  }

  /** This node's latest word on a star that the store has not taken yet (the API shows it over the store's). */
  unsentStatus(star: StarRef): StarObserved | undefined {
    const o = this.unsent.get(star.name);
    return o && o.uid === star.uid ? o : undefined;
  }

  /**
   * A star of ours that does not run here (never started, or refused at start): its report says
   * the latest request was seen, so a `stop` or `wait` on it returns.
   */
  private async reportIdle(record: StarRecord): Promise<void> {
    const o = await this.link.lastReport(record.name);
    if (o && o.uid === record.uid) {
      // Nothing of it runs here: a report that says it does (a start put off, then a stop) is stale.
      const stale = record.desired === "stopped" && isActive(o.status);
      if (o.generation >= record.generation && !stale) return;
      const status: StarStatus = stale ? { ...o.status, state: "stopped", ready: false } : o.status;
      if (stale) for (const k of ["pid", "restartAt", "reason"] as const) delete status[k];
      await this.inOrder(record.name, () => this.link.report(record.name, { ...o, status, generation: Math.max(o.generation, record.generation), updatedAt: Date.now() }));
      return;
    }
    if (record.desired !== "stopped") return;
    const status: StarStatus = { id: record.name, name: record.name, state: "stopped", restarts: 0, limits: { pids: 0 }, ready: false, limitsEnforced: true };
    await this.inOrder(record.name, () => this.link.report(record.name, { uid: record.uid, node: this.name, status, generation: record.generation, updatedAt: Date.now() }));
  }

  /** Deletes this node's report of a star, unless it is another star's ("" : any of ours). */
  private async dropReport(name: string, uid: string): Promise<void> {
    await this.inOrder(name, () => this.link.dropReport(name, uid));
  }

  /** When usage was last sent to the controller, and whether it held any star. */
  private shippedAt = 0;
  private shippedSome = false;

  /** CPU % and memory of every running star, from two small cgroup files each (synchronous). */
  private sample(): void {
    const now = Date.now();
    for (const [name, local] of this.local) {
      const u = isActive(local.status) ? local.runtime.usage(name) : undefined;
      if (!u) {
        this.usages.delete(name);
        continue;
      }
      const prev = this.usages.get(name);
      const cpuPercent = prev && now > prev.at ? Math.max(0, ((u.cpuUsageUsec - prev.cpuUsec) / ((now - prev.at) * 1000)) * 100) : 0;
      this.usages.set(name, { cpuPercent, memoryBytes: u.memoryBytes, at: now, cpuUsec: u.cpuUsageUsec });
    }
    // A controller on another machine keeps the figures it is sent (the API shows them): every
    // usageShipMs (5 s; the monitoring pillar's default interval), and not while nothing runs.
    const ship = this.options.usageShipMs ?? 5000;
    if (this.link.usage && now - this.shippedAt >= ship - 100 && (this.usages.size > 0 || this.shippedSome)) {
      this.shippedAt = now;
      this.shippedSome = this.usages.size > 0;
      const stars = [...this.usages].map(([name, u]) => ({ name, uid: this.local.get(name)?.uid ?? "", cpuPercent: u.cpuPercent, memoryBytes: u.memoryBytes, at: u.at }));
      void this.link.usage(stars).catch(() => undefined);
    }
  }
}

/** An admin's star: its script is read with root's rights (docs/security.md). */
function trustedStar(record: StarRecord): boolean {
  return record.owner === undefined && record.untrusted !== true;
}


function describe(s: StarStatus): string {
  switch (s.state) {
    case "running":
      return `running (pid ${s.pid ?? "?"})`;
    case "exited":
      return `exited with code ${s.exitCode ?? "?"}`;
    case "failed":
      return `failed: ${s.reason ?? (s.signal ? `killed by ${s.signal}` : `exit code ${s.exitCode ?? "?"}`)}`;
    case "oom_killed":
      return `killed: out of memory (limit ${s.limits.memoryBytes ?? "?"} bytes)`;
    default:
      return s.state;
  }
}

/** How long one report (or its drop) may take before the next of its star goes ahead. */
const REPORT_DEADLINE_MS = 15_000;

/** `p`, or a rejection with `message` after `ms`. */
function withDeadline<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
