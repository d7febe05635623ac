/**
 * The controller: the API's operations on desired state, and the control loop that assigns
 * stars to nodes. It never touches a runtime: it writes records to the store, and each node's
 * agent drives its runtime toward them and reports back (design.md §4).
 *
 *   create ─▶ validate (spec, capacity, script) ─▶ txn: put record if absent ─▶ event
 *   assign loop: watch records ─▶ unassigned? pick a node ─▶ txn: set node if unchanged ─▶ event
 */
import { randomUUID } from "node:crypto";
import { DuplicateStarError, InvalidArgumentError, NoSuchStarError, TimeoutError } from "../errors.js";
import { resolveProgram } from "../runtime/script.js";
import { DNS_LABEL, type StarSpecInput, limitsOf, parseStarSpec } from "../runtime/spec.js";
import type { KeyValue, Store } from "../store/types.js";
import { EventLog } from "./events.js";
import {
  type DesiredState,
  KEYS,
  type NodeRecord,
  PREFIX,
  type StarObserved,
  type StarRecord,
  type StarView,
  starKey,
  statusKey,
  viewOf,
} from "./model.js";

export interface ControllerOptions {
  store: Store;
  /** Where transpiled scripts are cached when a script is checked at create. */
  scriptCacheDir: string;
  /** Resolves relative script paths (default: the controller's working directory). */
  baseDir?: string;
}

export interface ClusterSummary {
  nodes: NodeRecord[];
  stars: { total: number; byState: Record<string, number>; desiredRunning: number };
  capacity: { cpuCores: number; memoryBytes: number };
  revision: number;
}

export class Controller {
  readonly events: EventLog;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly options: ControllerOptions) {
    this.events = new EventLog(options.store, "controller");
  }

  private get store(): Store {
    return this.options.store;
  }

  /** Checks a spec as the nodes would, then records the star (once: a second create of a name conflicts). */
  async create(input: unknown, options: { start?: boolean; fromStar?: boolean } = {}): Promise<StarView> {
    const spec = parseStarSpec(input);
    const nodes = await this.nodes();
    // Capacity: some node must be able to hold it (no node yet: checked when one joins); if none
    // can, the first node's answer says what is too much.
    const fitsOn = (n: NodeRecord) => {
      try {
        limitsOf(spec, n);
        return true;
      } catch {
        return false;
      }
    };
    if (!nodes.some(fitsOn)) limitsOf(spec, nodes[0]);
    if (spec.script !== undefined) {
      // Checked now (exists, parses) so a bad script is a 400, not a failed start. A star's own
      // token may not have root read a file for it: only scripts every user can read, checked on
      // the very file that is read (the node checks again, as the star's user, at every start).
      await resolveProgram(spec, { ...(options.fromStar ? { reader: "all" as const } : {}), ...(this.options.baseDir ? { baseDir: this.options.baseDir } : {}) });
    }
    const record: StarRecord = {
      name: spec.name,
      uid: randomUUID(),
      spec: input as StarSpecInput,
      desired: options.start === false ? "stopped" : "running",
      createdAt: Date.now(),
      generation: 1,
    };
    const key = starKey(spec.name);
    const res = await this.store.txn({
      compare: [{ key, target: "createRevision", op: "=", value: 0 }],
      success: [{ type: "put", key, value: JSON.stringify(record) }],
    });
    if (!res.succeeded) throw new DuplicateStarError(spec.name);
    await this.events.record("star.created", `created (${record.desired === "running" ? "to run" : "stopped"})`, { star: spec.name });
    return viewOf(record);
  }

  async list(): Promise<StarView[]> {
    const [stars, status] = await Promise.all([this.store.range({ prefix: KEYS.stars }), this.store.range({ prefix: KEYS.status })]);
    const observed = new Map(status.kvs.map((kv) => [kv.key.slice(KEYS.status.length), JSON.parse(kv.value) as StarObserved]));
    return stars.kvs.map((kv) => {
      const record = JSON.parse(kv.value) as StarRecord;
      return viewOf(record, observed.get(record.name));
    });
  }

  async get(name: string): Promise<StarView> {
    checkName(name);
    const [rec, obs] = await Promise.all([this.store.get(starKey(name)), this.store.get(statusKey(name))]);
    if (!rec) throw new NoSuchStarError(name);
    return viewOf(JSON.parse(rec.value) as StarRecord, obs ? (JSON.parse(obs.value) as StarObserved) : undefined);
  }

  /** Sets what the star should be doing; its node's agent makes it so. */
  async setDesired(name: string, desired: DesiredState): Promise<StarView> {
    checkName(name);
    for (;;) {
      const kv = await this.store.get(starKey(name));
      if (!kv) throw new NoSuchStarError(name);
      const record = JSON.parse(kv.value) as StarRecord;
      const settled = await this.isSettled(name, record);
      // Asking a star that has ended to run again is a new start too (`start` after it exited).
      if (record.desired === desired && !(desired === "running" && settled)) return this.get(name);
      const next: StarRecord = { ...record, desired, generation: record.generation + 1 };
      if (await this.casRecord(kv, next)) {
        await this.events.record(desired === "running" ? "star.start-requested" : "star.stop-requested", `${desired === "running" ? "start" : "stop"} requested`, { star: name });
        return this.get(name);
      }
    }
  }

  /** Removes a star (its agent stops it and removes its files). A running star needs `force`. */
  async remove(name: string, options: { force?: boolean } = {}): Promise<void> {
    checkName(name);
    const kv = await this.store.get(starKey(name));
    if (!kv) throw new NoSuchStarError(name);
    const record = JSON.parse(kv.value) as StarRecord;
    if (!options.force && !(await this.isSettled(name, record))) {
      throw new InvalidArgumentError("force", `star ${name} is running: stop it first (constellation stop ${name}), or remove it anyway with -f`);
    }
    const res = await this.store.txn({
      compare: [{ key: kv.key, target: "modRevision", op: "=", value: kv.modRevision }],
      success: [{ type: "delete", range: { key: kv.key } }],
    });
    if (!res.succeeded) return this.remove(name, options); // changed meanwhile: decide again
    await this.events.record("star.removed", "removed", { star: name });
  }

  /** Resolves with the star's view once `until` holds (watching the store), or times out. */
  async waitFor(name: string, until: (v: StarView) => boolean, timeoutMs: number): Promise<StarView> {
    checkName(name);
    const watch = this.store.watch({ prefix: PREFIX });
    const timer = setTimeout(() => watch.close(), timeoutMs);
    try {
      await watch.ready;
      let view = await this.get(name);
      if (until(view)) return view;
      for await (const batch of watch) {
        if (!batch.events.some((e) => e.kv.key === starKey(name) || e.kv.key === statusKey(name))) continue;
        view = await this.get(name);
        if (until(view)) return view;
      }
      throw new TimeoutError(`star ${name} did not get there within ${timeoutMs} ms (now ${view.status?.state ?? "pending"})`);
    } finally {
      clearTimeout(timer);
      watch.close();
    }
  }

  async nodes(): Promise<NodeRecord[]> {
    const { kvs } = await this.store.range({ prefix: KEYS.nodes });
    return kvs.map((kv) => JSON.parse(kv.value) as NodeRecord);
  }

  async summary(): Promise<ClusterSummary> {
    const [nodes, stars] = await Promise.all([this.nodes(), this.list()]);
    const byState: Record<string, number> = {};
    for (const s of stars) {
      const state = s.status?.state ?? (s.desired === "running" ? "pending" : "stopped");
      byState[state] = (byState[state] ?? 0) + 1;
    }
    return {
      nodes,
      stars: { total: stars.length, byState, desiredRunning: stars.filter((s) => s.desired === "running").length },
      capacity: { cpuCores: nodes.reduce((a, n) => a + n.cpuCores, 0), memoryBytes: nodes.reduce((a, n) => a + n.memoryBytes, 0) },
      revision: await this.store.revision(),
    };
  }

  /** Runs the control loops until stop(). */
  start(): void {
    this.loop ??= this.assignLoop(this.abort.signal);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop?.catch(() => undefined);
  }

  /**
   * Assigns every unassigned star to a node. One node for now: the node with the most free
   * memory among those registered (the scheduler of a later issue takes over this choice).
   */
  private async assignLoop(signal: AbortSignal): Promise<void> {
    let prunedAt = 0;
    while (!signal.aborted) {
      const { revision } = await this.store.range({ prefix: KEYS.stars }, { countOnly: true });
      await this.assignAll();
      if (Date.now() - prunedAt > 60_000) {
        prunedAt = Date.now();
        await this.events.prune();
      }
      const watch = this.store.watch({ prefix: PREFIX }, { fromRevision: revision + 1 });
      const onAbort = () => watch.close();
      signal.addEventListener("abort", onAbort);
      try {
        for await (const batch of watch) {
          if (batch.events.some((e) => e.kv.key.startsWith(KEYS.stars) || e.kv.key.startsWith(KEYS.nodes))) await this.assignAll();
        }
      } catch {
        // compacted or closed: read everything again
      } finally {
        signal.removeEventListener("abort", onAbort);
        watch.close();
      }
    }
  }

  private async assignAll(): Promise<void> {
    const nodes = await this.nodes();
    if (nodes.length === 0) return;
    const { kvs } = await this.store.range({ prefix: KEYS.stars });
    for (const kv of kvs) {
      const record = JSON.parse(kv.value) as StarRecord;
      if (record.node !== undefined && nodes.some((n) => n.name === record.node)) continue;
      const node = nodes[0]!;
      if (await this.casRecord(kv, { ...record, node: node.name })) {
        await this.events.record("star.assigned", `assigned to node ${node.name}`, { star: record.name, node: node.name });
      }
    }
  }

  private async casRecord(kv: KeyValue, next: StarRecord): Promise<boolean> {
    const res = await this.store.txn({
      compare: [{ key: kv.key, target: "modRevision", op: "=", value: kv.modRevision }],
      success: [{ type: "put", key: kv.key, value: JSON.stringify(next) }],
    });
    return res.succeeded;
  }

  /** Whether the star is not running: never started, or its run has ended. */
  private async isSettled(name: string, record: StarRecord): Promise<boolean> {
    const obs = await this.store.get(statusKey(name));
    if (!obs) return record.desired === "stopped";
    const o = JSON.parse(obs.value) as StarObserved;
    if (o.uid !== record.uid) return true;
    const s = o.status;
    return s.state !== "running" && s.state !== "starting" && s.state !== "pending" && s.restartAt === undefined;
  }

}

function checkName(name: string): void {
  if (!DNS_LABEL.test(name)) throw new InvalidArgumentError("name", `star names are DNS labels (lowercase letters, digits, '-'), got ${JSON.stringify(name)}`);
}
