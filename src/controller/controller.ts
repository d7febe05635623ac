/**
 * The controller: the API's operations on desired state, and the control loop that assigns
 * stars to nodes. It never touches a runtime: it writes records to the store, and each node's
 * agent drives its runtime toward them and reports back (design.md §4).
 *
 *   create ─▶ validate (spec, who may ask for what, the parent's limits, capacity, script)
 *          ─▶ memory left on the node? ─▶ txn: put record if absent (and its owner still there) ─▶ event
 *   assign loop: watch records ─▶ unassigned? pick a node ─▶ txn: set node if unchanged ─▶ event
 *                              ─▶ owner gone? remove the orphan
 *
 * Who asks (a Principal) decides what is seen: a star's token sees only its own star and its
 * descendants (anything else is "no such star"); admin and read tokens see everything.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as delay, setImmediate as nextTurn } from "node:timers/promises";
import type { StarState } from "../model/status.js";
import {
  CapacityExceededError,
  DuplicateStarError,
  FieldForbiddenError,
  InvalidArgumentError,
  NodeMemoryFullError,
  NamespaceQuotaError,
  NodeNotFoundError,
  QuotaExceededError,
  NoSuchStarError,
  TimeoutError,
  UnauthorizedError,
} from "../model/errors.js";
import { resolveProgram } from "../runtime/script.js";
import { DEFAULT_NODE_LIMITS, DNS_LABEL, type Footprint, type NodeLimits, type StarSpec, type StarSpecInput, cpuMillisOf, limitsOf, memoryBytesOf, parseStarSpec, withLimitsAtTop } from "../model/spec.js";
import type { Compare, KeyValue, Store } from "../store/types.js";
import { type MemoryBudget, adminOnlyField, fits, mb, memoryBudget, withinParent } from "./admission.js";
import { NODE_TTL_S } from "./agent-service.js";
import { EventLog } from "./events.js";
import { indexStarTokens } from "./tokens.js";
import { type Cached, RecordCache } from "./record-cache.js";
import { orphans, subtree } from "./family.js";
import { LEASE_ONLY_AFTER, isDead } from "./liveness.js";
import { replaceGossipKeyring } from "./gossip-keys.js";
import { schedNodeOf } from "../scheduler/nodes.js";
import { Scheduler } from "../scheduler/scheduler.js";
import type { DeploymentRef } from "../model/deployment.js";
import { Deployments } from "./deployments.js";
import { Artifacts } from "./artifacts.js";
import { artifactHex } from "../model/artifact.js";
import { type Ask, DEFAULT_PRIORITY, type Demand, type PlacedStar, type Quota } from "../scheduler/types.js";
import { type Usage, quotaProblem } from "../scheduler/quota.js";
import {
  type ClusterSummary,
  type CertRecord,
  type CordonRecord,
  type DesiredState,
  KEYS,
  type NodeRecord,
  PREFIX,
  type Principal,
  type StarObserved,
  type StarRecord,
  type StarRef,
  type StarView,
  nodeKey,
  starKey,
  statusKey,
  viewOf,
  namespaceOf,
  DEFAULT_NAMESPACE,
  type QuotaRecord,
  type NamespaceView,
} from "../model/records.js";

/** The pause of a control loop after the store failed it. */
const LOOP_RETRY_MS = 1000;
/**
 * A pass lets the event loop turn after this many writes: the store answers at once (SQLite
 * writes are synchronous), so a pass that places thousands of stars would otherwise hold the
 * process for seconds, and every node's heartbeat with it (their leases expired meanwhile).
 */
const WRITES_PER_TURN = 32;
/** How often the event log is pruned to its newest EVENTS_KEPT. */
const PRUNE_EVERY_MS = 60_000;
/**
 * Time for the controller's own waits (a node dead since, the grace after a start): monotonic,
 * so a clock set forward or back neither shortens nor stretches them.
 */
const monotonic = () => performance.now();
/** Stars read from the store at a time for a list's page. */
const VIEW_CHUNK = 16;

export interface ControllerOptions {
  store: Store;
  /** Resolves relative script paths (default: the controller's working directory). */
  baseDir?: string;
  /**
   * The node's own checks of a spec (the host paths its mounts and root name, what its runtime
   * can enforce), asked at create so that bad input is a 4xx before anything is recorded. One
   * node for now; with many, the chosen node answers.
   */
  validate?: (spec: StarSpecInput, options: { trusted: boolean }) => Promise<void>;
  /** What a tree of stars may hold (TREE_QUOTAS when absent). */
  quotas?: Partial<TreeQuotas>;
  /**
   * What the controller's gossip member says of a node (server/gossip.ts); absent: no gossip
   * here, and a node is dead once its lease expired (liveness.ts).
   */
  gossip?: { state(node: string): { state: "alive" | "suspect" | "dead" | "left"; since: number } | undefined };
  /**
   * Nodes' lease TTL (AgentService): a node is dead once its lease expired. For that long twice
   * after the controller starts, no node is taken for dead (its nodes reconnect meanwhile).
   */
  nodeTtlSeconds?: number;
  /** How often the event log is pruned to its newest EVENTS_KEPT (default every minute). */
  pruneEveryMs?: number;
}

/**
 * A tree of stars: an admin's star and every star below it (made by their tokens). Its stars
 * stay in the store as long as they exist, so a tree may hold at most so many, with at most so
 * many bytes of specs (Kubernetes' object-count quotas; docs/security.md "Quotas").
 */
export interface TreeQuotas {
  stars: number;
  specBytes: number;
}

export const TREE_QUOTAS: TreeQuotas = { stars: 1000, specBytes: 16 * 2 ** 20 };


/**
 * Whether a star's memory counts against its node: it should run and has not ended for good on
 * the latest request, or it still runs whatever was asked (a stop's grace period).
 */
export function holdsMemory(record: StarRecord, observed: ReportFacts | undefined): boolean {
  const current = observed !== undefined && observed.uid === record.uid;
  if (current && isActiveState(observed)) return true;
  // No report on the latest request yet: it is about to run.
  return record.desired === "running" && (!current || observed.generation < record.generation);
}

/**
 * Runs a node reports whose star is gone (removed, or made again under its name) that still
 * run: their memory is taken until they end. In bytes, as their report gives them.
 */
export function leftoverMemory(records: StarRecord[], observed: Map<string, ReportFacts>, node: string, fallbackBytes: number): number[] {
  const uidOf = new Map(records.map((r) => [r.name, r.uid]));
  const out: number[] = [];
  for (const [name, o] of observed) {
    if (o.node === node && uidOf.get(name) !== o.uid && isActiveState(o)) out.push(o.memoryBytes ?? fallbackBytes);
  }
  return out;
}

/** What the controller's loops need of a star's spec. */
type StarFacts = Footprint & Pick<StarSpec, "restart" | "exclusive" | "stop_grace_ms" | "placement" | "ports" | "disk_mb"> & { priority: number };

/** The fixed ports a star holds on its node (those asked as 0 are the node's choice: any free one). */
function fixedPorts(facts: StarFacts): number[] {
  return Object.values(facts.ports ?? {}).filter((p) => p !== 0);
}

function isActiveState(o: Pick<ReportFacts, "state" | "restartAt">): boolean {
  return o.state === "running" || o.state === "starting" || o.state === "pending" || o.restartAt !== undefined;
}

/**
 * What the controller keeps of a node's report on a star, for its memory sums, drains and
 * counts (a fraction of the report; a view of a star reads the whole report from the store).
 */
export interface ReportFacts {
  uid: string;
  node: string;
  generation: number;
  state: StarState;
  restartAt?: number;
  memoryBytes?: number;
}

export function reportFacts(o: StarObserved): ReportFacts {
  const facts: ReportFacts = { uid: o.uid, node: o.node, generation: o.generation, state: o.status.state };
  if (o.status.restartAt !== undefined) facts.restartAt = o.status.restartAt;
  if (o.status.limits?.memoryBytes !== undefined) facts.memoryBytes = o.status.limits.memoryBytes;
  return facts;
}

export class Controller {
  readonly events: EventLog;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;
  /** Creates and starts, one at a time: each sees the memory the ones before it took. */
  private admitting: Promise<unknown> = Promise.resolve();
  /** What the loops need of each star's spec, by uid (a star's spec never changes): kept small, for 10,000s of stars. */
  private facts = new Map<string, StarFacts>();
  /** Every star's record and report, as fresh as the store's, re-read only where they changed. */
  private readonly records: RecordCache<StarRecord>;
  private readonly reports: RecordCache<ReportFacts>;

  /** Deployments: the API's side and their control loop (started and stopped with the controller's). */
  readonly deployments: Deployments;
  /** Stars' bundled code, by its hash (code without images). */
  readonly artifacts: Artifacts;

  constructor(private readonly options: ControllerOptions) {
    this.events = new EventLog(options.store, "controller");
    this.deployments = new Deployments(options.store, this, this.events);
    this.artifacts = new Artifacts(options.store);
    this.records = new RecordCache(options.store, KEYS.stars);
    this.reports = new RecordCache(options.store, KEYS.status, (value) => reportFacts(JSON.parse(value) as StarObserved));
  }

  private get store(): Store {
    return this.options.store;
  }

  /**
   * Checks a spec as the nodes would, then records the star (once: a second create of a name
   * conflicts). `by` a star's token: the new star is that star's child (its owner), gets at most
   * its limits, and may not set the fields only an admin may.
   */
  async create(input: unknown, options: { start?: boolean; fromStar?: boolean; by?: Principal; deployment?: DeploymentRef } = {}): Promise<StarView> {
    let spec = parseStarSpec(input);
    const by = options.by;
    const nodes = await this.nodes();
    // Stored in one spelling (limits at the top, not in resources): what reads it needs one.
    let stored = withLimitsAtTop(input as StarSpecInput);
    let owner: { record: StarRecord; createRevision: number } | undefined;
    if (by?.star) {
      const kv = await this.store.get(starKey(by.star.name));
      const parent = kv ? (JSON.parse(kv.value) as StarRecord) : undefined;
      if (!kv || !parent || parent.uid !== by.star.uid) throw starGone(by.star.name);
      const node = nodes.find((n) => n.name === parent.node) ?? nodes[0];
      stored = withinParent(stored, parent.spec, parent.name, limitsOfNode(node));
      spec = parseStarSpec(stored);
      owner = { record: parent, createRevision: kv.createRevision };
    }
    // Its namespace: its parent's (a star's child), its token's (a namespace's token), or as asked.
    const namespace = owner ? namespaceOf(owner.record) : (by?.namespace ?? spec.namespace ?? DEFAULT_NAMESPACE);
    if (spec.namespace !== undefined && spec.namespace !== namespace) {
      throw new FieldForbiddenError("namespace", scopeText(by!), `this token's stars are made in namespace ${namespace}; leave namespace out`);
    }
    if (stored.namespace !== undefined) {
      const { namespace: _, ...rest } = stored;
      stored = rest; // (kept on the record: one place)
    }
    await this.vet(spec, stored, nodes, { ...(by ? { by } : {}), fromStar: options.fromStar === true, trusted: owner === undefined });
    const record: StarRecord = {
      name: spec.name,
      uid: randomUUID(),
      spec: stored,
      desired: options.start === false ? "stopped" : "running",
      createdAt: Date.now(),
      generation: 1,
    };
    if (owner) record.owner = { name: owner.record.name, uid: owner.record.uid };
    if (namespace !== DEFAULT_NAMESPACE) record.namespace = namespace;
    if (options.deployment) record.deployment = options.deployment;
    return this.admitted(async () => {
      if (owner) await this.checkQuota(owner.record, record);
      await this.checkNamespaceQuota(record, nodes, true);
      if (record.desired === "running") await this.checkMemory(spec, nodes, undefined, by);
      const key = starKey(spec.name);
      const compare: Compare[] = [{ key, target: "createRevision", op: "=", value: 0 }];
      // Its owner must still be there (that very creation): no orphan is made by a create that
      // races the owner's removal.
      if (owner) compare.push({ key: starKey(owner.record.name), target: "createRevision", op: "=", value: owner.createRevision });
      const res = await this.store.txn({ compare, success: [{ type: "put", key, value: JSON.stringify(record) }] });
      if (!res.succeeded) {
        if (owner && !(await this.store.get(key))) throw starGone(owner.record.name);
        throw new DuplicateStarError(spec.name);
      }
      const made = owner ? ` by star ${owner.record.name}` : "";
      await this.events.record("star.created", `created${made} (${record.desired === "running" ? "to run" : "stopped"})`, { star: spec.name, uid: record.uid });
      return viewOf(record);
    });
  }

  /** The star's record (undefined if there is none); no check of who asks. */
  async find(name: string): Promise<StarRecord | undefined> {
    const kv = await this.store.get(starKey(name));
    return kv ? (JSON.parse(kv.value) as StarRecord) : undefined;
  }

  /**
   * Checks a spec as create does before anything is written: fields only a cluster admin may
   * set, some node able to hold it, its script (exists, bundles) and host paths as its node will.
   * A deployment's template is checked so at deploy, not when its stars are made.
   */
  async vet(spec: StarSpec, stored: StarSpecInput, nodes: NodeRecord[], o: { by?: Principal; fromStar?: boolean; trusted?: boolean } = {}): Promise<void> {
    const by = o.by;
    // A namespace's admin is no cluster admin: what widens a star's reach of the host is not its to ask.
    const forbidden = by && (by.scope !== "admin" || by.namespace !== undefined) ? adminOnlyField(spec) : undefined;
    if (forbidden) throw new FieldForbiddenError(forbidden.field, scopeText(by!), forbidden.why);
    // Capacity: some node must be able to hold it (no node yet: checked when one joins); if none
    // can, the largest node's answer says what is too much.
    const fitsOn = (n: NodeRecord) => {
      try {
        limitsOf(spec, n);
        return true;
      } catch {
        return false;
      }
    };
    if (nodes.length > 0 && !nodes.some(fitsOn)) throw tooLargeForAll(spec, nodes);
    if ((spec.priority ?? DEFAULT_PRIORITY) > DEFAULT_PRIORITY && by?.namespace !== undefined && !by.star) {
      // Above the default, a star pushes aside others' stars: a cluster admin's to decide.
      throw new FieldForbiddenError("priority", scopeText(by), `a namespace's stars have a priority of at most ${DEFAULT_PRIORITY} (the default): only a cluster admin may ask for more`);
    }
    if (spec.script !== undefined && spec.artifact === undefined && by?.namespace !== undefined && !by.star) {
      // A path is read on the cluster's machines with the node's rights: a cluster admin's to ask.
      throw new FieldForbiddenError(
        "script",
        scopeText(by),
        "a script path is read on the cluster's machines; a namespace's token runs its own code, packaged where it runs (constellation create --package, the SDK's create(spec, { package: true }); deploy always packages)",
      );
    }
    if (spec.artifact !== undefined) {
      // Uploaded code: it must be in the cluster (its node fetches it by its hash); no file is read here.
      if (by?.star) throw new FieldForbiddenError("artifact", "star", "a star's child runs a script every user can read, not uploaded code; leave artifact out");
      // (A namespace names only code it uploaded itself: code is known by its hash, not shared by it.)
      if (!(await this.artifacts.get(artifactHex(spec.artifact)!, by?.namespace))) {
        throw new InvalidArgumentError("artifact", `artifact ${spec.artifact} is not in this cluster: upload it first (the SDK and CLI do when they package a script)`);
      }
      // The host paths it names are checked as the node would (the code itself is fetched at start).
      if (spec.mounts.length > 0 || spec.root !== undefined || spec.cwd !== undefined) {
        const { script: _, artifact: __, runtime: ___, ...rest } = stored;
        await this.options.validate?.({ ...rest, command: ["true"] } as StarSpecInput, { trusted: o.trusted !== false });
      }
      return;
    }
    if (spec.script !== undefined && !this.options.validate) {
      // Checked now (exists, parses) so a bad script is a 400, not a failed start. A star's own
      // token may not have root read a file for it: only scripts every user can read, checked on
      // the very file that is read (the node checks again, as the star's user, at every start).
      await resolveProgram(spec, { ...(o.fromStar ? { reader: "all" as const } : {}), ...(this.options.baseDir ? { baseDir: this.options.baseDir } : {}) });
    }
    // The node checks the script as it will at start (for a star's child: as every user may
    // read it, and not in a place hidden from stars), and the host paths the spec names.
    await this.options.validate?.(stored, { trusted: o.trusted !== false });
  }

  /**
   * The stars `by` may see, by name (undefined: every star). A star's token sees its own star and
   * its descendants.
   */
  async visible(by?: Principal): Promise<Map<string, StarRecord> | undefined> {
    if (!limited(by)) return undefined;
    const records = (await this.records.all()).map((e) => e.value);
    return new Map(seenBy(records, by).map((r) => [r.name, r]));
  }

  /**
   * The stars `by` may see whose names come after `after`, in name order, with what their nodes
   * report: read from the store a few at a time, so a page of a list holds only what it shows
   * (a star's token: its subtree, which is found from every record first).
   */
  async *views(by?: Principal, after?: string): AsyncGenerator<StarView> {
    const seen = await this.visible(by);
    let from = after === undefined ? KEYS.stars : `${starKey(after)}\0`;
    const end = `${KEYS.stars.slice(0, -1)}${String.fromCharCode(KEYS.stars.charCodeAt(KEYS.stars.length - 1) + 1)}`;
    for (;;) {
      const chunk = await this.store.range({ start: from, end }, { limit: VIEW_CHUNK });
      if (chunk.kvs.length === 0) return;
      const first = chunk.kvs[0]!.key.slice(KEYS.stars.length);
      const last = chunk.kvs.at(-1)!.key.slice(KEYS.stars.length);
      const status = await this.store.range({ start: statusKey(first), end: `${statusKey(last)}\0` });
      const observed = new Map(status.kvs.map((kv) => [kv.key.slice(KEYS.status.length), JSON.parse(kv.value) as StarObserved]));
      for (const kv of chunk.kvs) {
        const record = JSON.parse(kv.value) as StarRecord;
        if (!seen || seen.has(record.name)) yield viewOf(record, observed.get(record.name));
      }
      if (!chunk.more) return;
      from = `${chunk.kvs.at(-1)!.key}\0`;
    }
  }

  /** Every star `by` may see, with what its node reports. */
  async list(by?: Principal): Promise<StarView[]> {
    const [records, { kvs }] = await Promise.all([this.records.all(), this.store.range({ prefix: KEYS.status })]);
    const observed = new Map(kvs.map((kv) => [kv.key.slice(KEYS.status.length), JSON.parse(kv.value) as StarObserved]));
    return viewsFor(
      records.map((kv) => kv.value),
      observed,
      by,
    );
  }

  /** The star, if `by` may see it (else: no such star, as if it did not exist). */
  async get(name: string, by?: Principal): Promise<StarView> {
    checkName(name);
    const [rec, obs] = await Promise.all([this.store.get(starKey(name)), this.store.get(statusKey(name))]);
    if (!rec) throw new NoSuchStarError(name);
    if (limited(by) && !(await this.visible(by))!.has(name)) throw new NoSuchStarError(name);
    return viewOf(JSON.parse(rec.value) as StarRecord, obs ? (JSON.parse(obs.value) as StarObserved) : undefined);
  }

  /**
   * Sets what the star should be doing; its node's agent makes it so. Starting it needs room for
   * its memory on its node.
   */
  async setDesired(name: string, desired: DesiredState, by?: Principal): Promise<StarView> {
    await this.get(name, by); // it exists, and `by` may see it
    const set = async (): Promise<StarView> => {
      for (;;) {
        const kv = await this.store.get(starKey(name));
        if (!kv) throw new NoSuchStarError(name);
        const record = JSON.parse(kv.value) as StarRecord;
        const settled = await this.isSettled(name, record);
        // Asking a star that has ended to run again is a new start too (`start` after it exited).
        if (record.desired === desired && !(desired === "running" && settled)) return this.get(name);
        if (desired === "running") {
          const nodes = await this.nodes();
          await this.checkNamespaceQuota({ ...record, desired: "running" }, nodes, false);
          await this.checkMemory(this.factsOf(record), nodes, record, by);
        }
        const next: StarRecord = { ...record, desired, generation: record.generation + 1 };
        if (await this.casRecord(kv, next)) {
          await this.events.record(desired === "running" ? "star.start-requested" : "star.stop-requested", `${desired === "running" ? "start" : "stop"} requested`, { star: name, uid: record.uid });
          return this.get(name);
        }
      }
    };
    return desired === "running" ? this.admitted(set) : set();
  }

  /**
   * Removes a star and its descendants (their agents stop them and remove their files). A
   * running star, or one with a running descendant, needs `force`.
   */
  async remove(name: string, options: { force?: boolean; by?: Principal } = {}): Promise<void> {
    checkName(name);
    const kvs = await this.records.all();
    const kvOf = new Map(kvs.map((kv) => [kv.key, kv]));
    const records = kvs.map((kv) => kv.value);
    const record = records.find((r) => r.name === name);
    if (!record || !seenBy(records, options.by).includes(record)) throw new NoSuchStarError(name);
    const family = subtree(records, record);
    if (!options.force) {
      for (const r of family) {
        if (await this.isSettled(r.name, r)) continue;
        if (r === record) throw new InvalidArgumentError("force", `star ${name} is running: stop it first (constellation stop ${name}), or remove it anyway with -f`);
        throw new InvalidArgumentError(
          "force",
          `star ${name} has a running descendant, ${r.name} (made by ${r.owner?.name}): stop it first (constellation stop ${r.name}), or remove ${name} with everything below it with -f`,
        );
      }
    }
    // Children before their parents, the star itself last: if a part fails (something changed
    // meanwhile), the star is still there and the whole removal is decided again.
    const order = [...family].reverse();
    for (let i = 0; i < order.length; i += 60) {
      const part = order.slice(i, i + 60).map((r) => kvOf.get(starKey(r.name))!);
      const res = await this.store.txn({
        compare: part.map((kv) => ({ key: kv.key, target: "modRevision" as const, op: "=" as const, value: kv.modRevision })),
        success: part.map((kv) => ({ type: "delete" as const, range: { key: kv.key } })),
      });
      // (After a first part went, what is left was checked already.)
      if (!res.succeeded) return this.remove(name, i === 0 ? options : { ...options, force: true });
      for (const kv of part) {
        const r = records.find((x) => starKey(x.name) === kv.key)!;
        await this.events.record("star.removed", r === record ? "removed" : `removed with ${name}`, { star: r.name, uid: r.uid });
      }
    }
  }

  /**
   * Resolves with the star's view once `until` holds (watching the store), or times out. The star
   * removed (or removed and made again) meanwhile: no such star.
   */
  async waitFor(name: string, until: (v: StarView) => boolean, timeoutMs: number, by?: Principal): Promise<StarView> {
    checkName(name);
    const watch = this.store.watch({ prefix: PREFIX });
    const timer = setTimeout(() => watch.close(), timeoutMs);
    try {
      await watch.ready;
      let view = await this.get(name, by);
      const uid = view.uid;
      if (until(view)) return view;
      for await (const batch of watch) {
        if (!batch.events.some((e) => e.kv.key === starKey(name) || e.kv.key === statusKey(name))) continue;
        view = await this.get(name);
        if (view.uid !== uid) throw new NoSuchStarError(name);
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

  /** Nodes, capacity, and the stars `by` may see by state. */
  async summary(by?: Principal): Promise<ClusterSummary> {
    const [all, [records, observed], alive, cordons] = await Promise.all([this.nodes(), this.readAll(), this.aliveNodes(), this.cordons()]);
    const stars = seenBy(records, by);
    // A node's state: up while its lease holds (or within the grace after the controller's start).
    const graceOver = monotonic() - this.startedAt > 2 * (this.options.nodeTtlSeconds ?? NODE_TTL_S) * 1000;
    const dead = this.judge(all, alive);
    // What each node's stars that should run take (the admin's view: every star, not `by`'s).
    const used = new Map<string, { stars: number; cpuCores: number; memoryBytes: number }>();
    const limitsByNode = new Map(all.map((n) => [n.name, limitsOfNode(n)]));
    for (const r of records) {
      if (r.desired !== "running" || r.node === undefined || !limitsByNode.has(r.node)) continue;
      const f = this.factsOf(r);
      const u = used.get(r.node) ?? { stars: 0, cpuCores: 0, memoryBytes: 0 };
      used.set(r.node, { stars: u.stars + 1, cpuCores: u.cpuCores + (cpuMillisOf(f) ?? 0) / 1000, memoryBytes: u.memoryBytes + memoryBytesOf(f, limitsByNode.get(r.node)!) });
    }
    const nodes = all.map((n) => {
      const gossip = this.options.gossip?.state(n.name);
      return {
        ...n,
        used: used.get(n.name) ?? { stars: 0, cpuCores: 0, memoryBytes: 0 },
        state: (!dead.has(n.name) || !graceOver) && cordons.get(n.name)?.revoked !== true ? ("up" as const) : ("down" as const),
        // Up, but its lease is gone (gossip says it lives): moved only if gossip agrees, or in 3 TTLs.
        ...(graceOver && !alive.has(n.name) && !dead.has(n.name) ? { leaseExpired: true } : {}),
        ...(gossip ? { gossip } : {}),
        ...(cordons.has(n.name) ? { cordoned: true, draining: cordons.get(n.name)!.drain, ...(cordons.get(n.name)!.revoked ? { revoked: true } : {}) } : {}),
      };
    });
    const byState: Record<string, number> = {};
    for (const s of stars) {
      // (A report about an earlier star of the name is not this one's.)
      const o = observed.get(s.name);
      const state = o !== undefined && o.uid === s.uid ? o.state : s.desired === "running" ? "pending" : "stopped";
      byState[state] = (byState[state] ?? 0) + 1;
    }
    return {
      nodes,
      stars: { total: stars.length, byState, desiredRunning: stars.filter((s) => s.desired === "running").length },
      capacity: { cpuCores: nodes.filter((n) => n.state === "up").reduce((a, n) => a + n.cpuCores, 0), memoryBytes: nodes.filter((n) => n.state === "up").reduce((a, n) => a + n.memoryBytes, 0) },
      revision: await this.store.revision(),
    };
  }

  private startedAt = 0;
  /** Stars left on a dead node, by uid, with that node (said once each; only those still left are kept). */
  private leftOnDead = new Map<string, string>();
  /** Since when (this controller saw) each dead node has been dead. */
  private readonly deadSince = new Map<string, number>();
  /** A pass asked for later (an exclusive star's wait on a dead node ends then). */
  private later: NodeJS.Timeout | undefined;

  /** A compare that holds only while this controller leads (its election's fence), if it campaigns. */
  private fence: Compare | undefined;

  /**
   * Runs the control loops until stop() (and again after it). With `fence` (an HA controller's
   * leadership), every decision the loops write holds only while that leadership does: a
   * controller that lost office without knowing it yet (paused) writes nothing.
   */
  start(fence?: Compare): void {
    if (this.loop !== undefined) return;
    this.fence = fence;
    this.startedAt = monotonic();
    this.loop ??= this.assignLoop(this.abort.signal);
    this.deployments.start(fence);
    // When the grace after the start ends, a node that died within it is seen (no write says so).
    const graceEnd = setTimeout(() => void this.assignAll().catch(() => undefined), 2 * (this.options.nodeTtlSeconds ?? NODE_TTL_S) * 1000 + 100);
    graceEnd.unref();
    // The event log keeps its newest EVENTS_KEPT events: pruned every minute while it runs (not
    // only when the loop starts again: a storm of creates left 120,000 events, and every list of
    // them held the process for seconds).
    const pruner = setInterval(() => void this.events.prune().catch(() => undefined), this.options.pruneEveryMs ?? PRUNE_EVERY_MS);
    pruner.unref();
    this.abort.signal.addEventListener("abort", () => {
      clearTimeout(graceEnd);
      clearInterval(pruner);
    });
  }

  /** The cordoned nodes (by name: draining or not). */
  private async cordons(): Promise<Map<string, CordonRecord>> {
    return (await this.cordonsRead()).cordons;
  }

  /** The cordons, and the revision each was read at (a pass's writes hold only while they stand). */
  private async cordonsRead(): Promise<{ cordons: Map<string, CordonRecord>; revisions: Map<string, number> }> {
    const { kvs } = await this.store.range({ prefix: KEYS.cordons });
    const name = (key: string) => key.slice(KEYS.cordons.length);
    return { cordons: new Map(kvs.map((kv) => [name(kv.key), JSON.parse(kv.value) as CordonRecord])), revisions: new Map(kvs.map((kv) => [name(kv.key), kv.modRevision])) };
  }

  /**
   * Cordons a node: nothing new is placed there. With `drain`, its stars that should run move to
   * other nodes too (an exclusive one is stopped there first, then started elsewhere).
   */
  async cordon(node: string, options: { drain?: boolean } = {}): Promise<void> {
    if (!(await this.store.get(nodeKey(node)))) throw new NodeNotFoundError(node);
    await this.store.put(`${KEYS.cordons}${node}`, JSON.stringify({ at: Date.now(), drain: options.drain === true } satisfies CordonRecord));
    await this.events.record("node.cordoned", options.drain ? `node ${node} drained: its stars move to other nodes` : `node ${node} cordoned: nothing new is placed there`, { node });
  }

  /**
   * Revokes a node: every certificate issued to it is refused from now on (its connection is
   * ended by `onRevoke`), and it is dead at once — its stars move as for any dead node (an
   * exclusive one only once its lease's TTL and stop have surely passed). The controller's own
   * node cannot be revoked.
   */
  async revokeNode(node: string, own: string | undefined, onRevoke?: (node: string) => void): Promise<{ certificates: number; gossipKeyReplaced: boolean }> {
    if (!(await this.store.get(nodeKey(node)))) throw new NodeNotFoundError(node);
    if (node === own) throw new InvalidArgumentError("node", `node ${node} is this controller's own: it cannot be revoked`);
    // The node first: from here on no renewal of its certificates succeeds (cluster.renew compares it).
    await this.store.put(`${KEYS.cordons}${node}`, JSON.stringify({ at: Date.now(), drain: false, revoked: true } satisfies CordonRecord));
    const { kvs } = await this.store.range({ prefix: KEYS.certs });
    let certificates = 0;
    for (const kv of kvs) {
      const c = JSON.parse(kv.value) as CertRecord;
      if (c.node !== node || c.revokedAt !== undefined) continue;
      await this.store.put(kv.key, JSON.stringify({ ...c, revokedAt: Date.now() }));
      certificates++;
    }
    onRevoke?.(node);
    await this.store.delete({ key: `${KEYS.alive}${node}` });
    // Its copy of the gossip keyring must open nothing more: a new one for everyone else.
    const rotated = (await this.store.get(KEYS.gossipKeyring)) !== undefined;
    if (rotated) await replaceGossipKeyring(this.store);
    await this.events.record("node.revoked", `node ${node} revoked (${certificates} certificate${certificates === 1 ? "" : "s"}): it may not connect again; its stars move as for a dead node${rotated ? "; the gossip key was replaced" : ""}`, { node });
    return { certificates, gossipKeyReplaced: rotated };
  }

  async uncordon(node: string): Promise<void> {
    if (!(await this.store.get(nodeKey(node)))) throw new NodeNotFoundError(node);
    if ((await this.cordons()).get(node)?.revoked) throw new InvalidArgumentError("node", `node ${node} was revoked: it cannot come back (join the machine again under another name)`);
    const { deleted } = await this.store.delete({ key: `${KEYS.cordons}${node}` });
    if (deleted > 0) await this.events.record("node.uncordoned", `node ${node} uncordoned: stars may be placed there again`, { node });
  }

  /** Since when (monotonic) each node's lease has been gone, as this controller saw. */
  private readonly leaseGoneSince = new Map<string, number>();

  /**
   * The nodes dead to the controller (liveness.ts): lease gone and gossip agreeing. A node whose
   * lease is gone while gossip says it lives is judged again when the lease alone would do.
   */
  private judge(nodes: NodeRecord[], alive: Set<string>): Set<string> {
    const ttlMs = (this.options.nodeTtlSeconds ?? NODE_TTL_S) * 1000;
    const now = monotonic();
    const dead = new Set<string>();
    for (const n of nodes) {
      if (alive.has(n.name)) {
        this.leaseGoneSince.delete(n.name);
        continue;
      }
      const since = this.leaseGoneSince.get(n.name) ?? now;
      this.leaseGoneSince.set(n.name, since);
      const gossip = this.options.gossip?.state(n.name)?.state;
      if (isDead({ leaseHeld: false, leaseGoneForMs: now - since, ...(gossip ? { gossip } : {}) }, ttlMs)) dead.add(n.name);
      else this.passAt(since + LEASE_ONLY_AFTER * ttlMs);
    }
    for (const name of this.leaseGoneSince.keys()) if (!nodes.some((n) => n.name === name)) this.leaseGoneSince.delete(name);
    return dead;
  }

  /** Looks again at once (gossip's word on a node changed). */
  nudge(): void {
    if (this.loop === undefined || this.abort.signal.aborted) return;
    void this.assignAll().catch(() => undefined);
  }

  /** The nodes whose lease holds now (names). */
  private async aliveNodes(): Promise<Set<string>> {
    const { kvs } = await this.store.range({ prefix: KEYS.alive }, { keysOnly: true });
    return new Set(kvs.map((kv) => kv.key.slice(KEYS.alive.length)));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.deployments.stop();
    clearTimeout(this.later);
    this.later = undefined;
    await this.loop?.catch(() => undefined);
    await this.assigning; // a pass the loop asked for and did not wait for
    // Ready to start again (an HA controller that leads again).
    this.loop = undefined;
    this.abort = new AbortController();
  }

  /** Whether the control loops run here. */
  get running(): boolean {
    return this.loop !== undefined && !this.abort.signal.aborted;
  }

  /**
   * Assigns every unassigned star to a node. One node for now: the node with the most free
   * memory among those registered (the scheduler of a later issue takes over this choice).
   */
  private async assignLoop(signal: AbortSignal): Promise<void> {
    let pruned = false;
    while (!signal.aborted) {
      try {
        const { revision } = await this.store.range({ prefix: KEYS.stars }, { countOnly: true });
        await this.assignAll();
        if (!pruned) {
          pruned = true;
          await this.events.prune();
          await indexStarTokens(this.store); // tokens saved before their index existed
        }
        const watch = this.store.watch({ prefix: PREFIX }, { fromRevision: revision + 1 });
        const onAbort = () => watch.close();
        signal.addEventListener("abort", onAbort);
        if (signal.aborted) watch.close(); // stopped while this pass ran: the listener came too late
        try {
          // Each batch that changes stars, nodes or liveness (a lease's expiry deletes its key) looks again.
          for await (const batch of watch) {
            const looks = (k: string) =>
              k.startsWith(KEYS.stars) || k.startsWith(KEYS.nodes) || k.startsWith(KEYS.alive) || k.startsWith(KEYS.cordons) || (this.moving > 0 && k.startsWith(KEYS.status));
            // Not awaited: batches that come while a pass runs are answered by one next pass
            // (a creation storm of 10,000 stars makes hundreds of passes, not 10,000). A pass
            // that fails (a store write refused) is tried again after a pause.
            if (batch.events.some((e) => looks(e.kv.key))) this.assignAll().catch(() => this.passAt(monotonic() + LOOP_RETRY_MS));
          }
        } finally {
          signal.removeEventListener("abort", onAbort);
          watch.close();
        }
      } catch {
        // Compacted or closed: read everything again. The store refused a write (its disk is
        // full, say): the same, after a pause. A control loop never dies of it (issue 9).
        await delay(LOOP_RETRY_MS, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /**
   * One star off a draining node: moved at once (its node ends the old copy as it sees the
   * new assignment), or for an exclusive star stopped there first and moved once that copy
   * has ended. True when there is nothing more to do for it in this pass.
   */
  private async drainOne(
    kv: Cached<StarRecord>,
    from: string,
    scheduler: Scheduler,
    askLimits: NodeLimits,
    o: ReportFacts | undefined,
    cordonAsRead: (node: string) => Compare,
  ): Promise<boolean> {
    const record = kv.value;
    if (record.desired !== "running" && record.movingFrom === undefined) return true; // stopped: stays (it holds nothing)
    const exclusive = this.factsOf(record).exclusive;
    if (exclusive && record.movingFrom === undefined) {
      if (await this.casRecord(kv, { ...record, desired: "stopped", movingFrom: from, generation: record.generation + 1 }, [cordonAsRead(from)])) {
        await this.events.record("star.stop-requested", `stopping it on draining node ${from} to start it elsewhere (exclusive: one copy at a time)`, { star: record.name, uid: record.uid });
      }
      return true;
    }
    if (exclusive && o !== undefined && o.uid === record.uid && o.node === from && isActiveState(o)) return true; // its copy there still runs
    scheduler.remove(record.name);
    // (A star leaving a draining node pushes nothing aside: it runs where it is until room appears.)
    const placed = scheduler.place({ ...this.askOf(record, askLimits), mayPreempt: false });
    if (placed.node === undefined) {
      // Nowhere to go: it stays where it is for now (a later pass tries again), said once.
      await this.unplaced(kv, `stays on draining node ${from}: nowhere else takes it (${placed.reason})`);
      return true;
    }
    const node = { name: placed.node };
    const { movingFrom: _, pending: __, ...rest } = record;
    if (await this.casRecord(kv, { ...rest, node: node.name, desired: "running", generation: record.generation + (exclusive ? 1 : 0) }, [cordonAsRead(from), cordonAsRead(node.name)])) {
      await this.events.record("star.moved", `node ${from} is draining: moved to node ${node.name}`, { star: record.name, uid: record.uid, node: node.name });
    }
    return true;
  }

  /** Asks for a pass at `at` (the earliest asked for wins). */
  private passAt(at: number): void {
    if (this.abort.signal.aborted || (this.later !== undefined && this.laterAt <= at)) return;
    clearTimeout(this.later);
    this.laterAt = at;
    this.later = setTimeout(() => {
      this.later = undefined;
      void this.assignAll().catch(() => undefined);
    }, Math.max(0, at - monotonic()) + 50);
    this.later.unref();
  }

  private laterAt = 0;
  /** Stars being moved off a draining node (stopped first), as of the last pass. */
  private moving = 0;

  /** One pass at a time (the loop and the grace's end may both ask). */
  private assigning: Promise<void> = Promise.resolve();

  /** A pass asked for that has not begun yet: asking again is asking for it (it reads everything anew). */
  private queued: Promise<void> | undefined;

  private assignAll(): Promise<void> {
    if (this.queued) return this.queued;
    const next = this.assigning.then(() => {
      this.queued = undefined;
      return this.assignOnce();
    });
    this.queued = next;
    this.assigning = next.catch(() => undefined);
    return next;
  }

  private async assignOnce(): Promise<void> {
    const kvs = await this.records.all();
    await this.removeOrphans(kvs);
    const nodes = await this.nodes();
    if (nodes.length === 0) return;
    const alive = await this.aliveNodes();
    // Within the grace after a start, every node counts as alive (they reconnect meanwhile).
    const ttlMs = (this.options.nodeTtlSeconds ?? NODE_TTL_S) * 1000;
    const judging = monotonic() - this.startedAt > 2 * ttlMs;
    /** How long a node has had no heartbeat (its lease's TTL, and since it lapsed), in seconds. */
    const silentFor = (node: string) => Math.round((ttlMs + monotonic() - (this.leaseGoneSince.get(node) ?? monotonic())) / 1000);
    // Cordoned nodes take nothing new; draining ones give their stars away; revoked ones are dead.
    const { cordons, revisions } = await this.cordonsRead();
    // A pass lets the event loop turn as it goes, so what it read at its start may change under
    // it: each write holds only if what it was decided on still stands — the node's cordon as
    // read (a node cordoned meanwhile takes nothing), and a dead node still dead (one whose
    // heartbeat was answered meanwhile may run its exclusive star again: it is not moved).
    const cordonAsRead = (node: string): Compare => {
      const rev = revisions.get(node);
      const key = `${KEYS.cordons}${node}`;
      return rev === undefined ? { key, target: "version", op: "=", value: 0 } : { key, target: "modRevision", op: "=", value: rev };
    };
    const stillDead = (node: string): Compare => ({ key: `${KEYS.alive}${node}`, target: "version", op: "=", value: 0 });
    const dead = this.judge(nodes, alive);
    const aliveNow = (judging ? nodes.filter((n) => !dead.has(n.name)) : nodes).filter((n) => cordons.get(n.name)?.revoked !== true);
    // With no node alive, new stars still get one (they run when it is back); none is moved.
    const live = aliveNow.length > 0 ? aliveNow : nodes;
    const moving = aliveNow.length > 0;
    for (const n of nodes) {
      if (live.includes(n) || !moving) this.deadSince.delete(n.name);
      else if (!this.deadSince.has(n.name)) this.deadSince.set(n.name, monotonic());
    }
    // Nothing new goes to a node whose lease has lapsed and that gossip says is gone, even while
    // it is not judged yet (the grace after this controller's start): it would wait there for
    // nothing. (Gossip's word alone keeps nothing away: a node back from a restart is alive to
    // its lease before gossip has heard it refute its leave.)
    const gone = (n: NodeRecord) => !alive.has(n.name) && ["dead", "left"].includes(this.options.gossip?.state(n.name)?.state ?? "");
    // Within the grace, only a node whose lease holds takes a new star, if any does: the grace
    // is for not moving stars while nodes reconnect, not for placing on nodes long dead (a new
    // HA leader starts its grace while the nodes' leases were kept all along).
    const unblocked = live.filter((n) => !cordons.has(n.name) && !gone(n));
    const leased = unblocked.filter((n) => alive.has(n.name));
    const open = judging || leased.length === 0 ? unblocked : leased;
    // The scheduler (src/scheduler) over this pass's snapshot: the open nodes take new stars;
    // each star that should run holds what it takes on its node.
    const closedOf = (n: NodeRecord) => {
      const cordon = cordons.get(n.name);
      if (open.includes(n)) return undefined;
      if (cordon?.revoked === true || !cordon) return "down"; // (revoked: it is dead to the cluster)
      return cordon.drain ? "draining" : "cordoned";
    };
    const byName = new Map(nodes.map((n) => [n.name, n]));
    // What nodes report: which stars hold memory (as admission counts it: running, or about to),
    // and for a drain, whether an exclusive star's copy there has ended.
    const observed = new Map((await this.reports.all()).map((kv) => [kv.key.slice(KEYS.status.length), kv.value]));
    const scheduler = new Scheduler({
      nodes: nodes.map((n) => schedNodeOf(n, closedOf(n))),
      // Every star that should run counts on its node (spread counts them: an instance that ended
      // is still one of its node's); its memory only while it holds it, as admission counts it.
      placed: kvs
        .filter((kv) => kv.value.node !== undefined && (kv.value.desired === "running" || kv.value.movingFrom !== undefined))
        .map((kv) => this.placedOf(kv.value, byName.get(kv.value.node!), holdsMemory(kv.value, observed.get(kv.value.name)) || kv.value.movingFrom !== undefined)),
    });
    // A star that names no memory is asked for with the largest default of the nodes (each
    // node's own default is what it gives; asking for the largest never overcommits one).
    const askLimits = largestDefaults(nodes);
    // What nodes report matters only to a drain (an exclusive star's copy there has ended).

    // Stars stopped to be moved: their nodes' reports (their copy ended) are looked at too.
    this.moving = kvs.filter((kv) => kv.value.movingFrom !== undefined).length;
    let writes = 0;
    // Higher priorities are placed first (a star of lower priority takes what is left); stars
    // evicted this pass to make room are placed again by the next.
    const byPriority = kvs.map((kv, i) => ({ kv, i, p: this.factsOf(kv.value).priority })).sort((a, b) => b.p - a.p || a.i - b.i);
    const kvOf = new Map(kvs.map((kv) => [kv.value.name, kv]));
    const evicted = new Set<string>();
    for (const { kv } of byPriority) {
      if (writes >= WRITES_PER_TURN) {
        writes = 0;
        await nextTurn();
      }
      const record = kv.value;
      if (evicted.has(record.name)) continue;
      const on = record.node === undefined ? undefined : nodes.find((n) => n.name === record.node);
      if (on && (live.includes(on) || !moving) && cordons.get(on.name)?.drain === true && open.length > 0) {
        writes++;
        if (await this.drainOne(kv, on.name, scheduler, askLimits, observed.get(record.name), cordonAsRead)) continue;
      }
      if (record.movingFrom !== undefined && cordons.get(record.node ?? "")?.drain !== true) {
        // Its node is no longer drained (uncordoned meanwhile): it runs where it was.
        const { movingFrom: _, ...rest } = record;
        writes++;
        await this.casRecord(kv, { ...rest, desired: "running", generation: record.generation + 1 }, [cordonAsRead(record.node ?? "")]);
        continue;
      }
      if (on && (live.includes(on) || !moving)) {
        // Where it is, it stays (its node is back, its drain lifted): no longer pending.
        if (record.pending !== undefined && cordons.get(on.name)?.drain !== true) {
          const { pending: _, ...settled } = record;
          writes++;
          await this.casRecord(kv, settled);
        }
        continue;
      }
      if (on) {
        // Its node is dead (its lease expired). A star that should run and may be restarted is
        // made again elsewhere; its old copy, should that node come back, is superseded (its
        // node no longer holds the assignment: the node's agent ends it).
        if (record.desired !== "running" || this.factsOf(record).restart === "never") {
          if (this.leftOnDead.get(record.uid) !== on.name) {
            this.leftOnDead.set(record.uid, on.name);
            writes++;
            const why = record.desired !== "running" ? "it is stopped" : "its restart policy is never";
            await this.events.record("star.node-dead", `node ${on.name} is dead (no heartbeat for ${silentFor(on.name)} s); not moved: ${why} (start it to run it elsewhere)`, { star: record.name, uid: record.uid, node: on.name });
          }
          continue;
        }
        if (this.factsOf(record).exclusive) {
          // At most once: its node stopped it by half its lease's TTL without a heartbeat; it is
          // run here only once that lease has surely expired and its stop has surely ended.
          const safeAt = this.deadSince.get(on.name)! + ttlMs + this.factsOf(record).stop_grace_ms;
          if (monotonic() < safeAt) {
            this.passAt(safeAt);
            continue;
          }
        }
      }
      if (on) scheduler.remove(record.name);
      const placed = scheduler.place(this.askOf(record, askLimits));
      if (placed.node === undefined) {
        writes += await this.unplaced(kv, placed.reason);
        continue;
      }
      if (placed.preempts !== undefined) {
        writes += placed.preempts.length;
        const all = await this.preempt(placed.preempts, record, placed.node, kvOf, evicted);
        if (!all) {
          // One changed under this pass: placed by the next, on what it reads then.
          scheduler.remove(record.name);
          this.passAt(monotonic());
          continue;
        }
      }
      // A stopped star gets its node (it runs there when started) but holds nothing there now.
      if (record.desired !== "running") scheduler.remove(record.name);
      const node = nodes.find((n) => n.name === placed.node)!;
      writes++;
      const { pending: _, ...unpended } = record;
      if (await this.casRecord(kv, { ...unpended, node: node.name }, [cordonAsRead(node.name), ...(on ? [stillDead(on.name)] : [])])) {
        const message = on ? `node ${on.name} is dead (no heartbeat for ${silentFor(on.name)} s): moved to node ${node.name}` : `assigned to node ${node.name}`;
        await this.events.record(on ? "star.moved" : "star.assigned", message, { star: record.name, uid: record.uid, node: node.name });
      }
    }
    // Forget stars that are gone, no longer on that node, or whose node is alive again (should it
    // die again, that is said again). A pass with no node alive judges no node: it forgets none.
    const onNode = new Map(kvs.map((kv) => [kv.value.uid, kv.value.node]));
    for (const [uid, n] of this.leftOnDead) {
      if (onNode.get(uid) !== n || (moving && live.some((l) => l.name === n))) this.leftOnDead.delete(uid);
    }
  }

  /**
   * Removes stars whose owner is gone (a create that raced its owner's removal): a star's
   * descendants never outlive it.
   */
  private async removeOrphans(kvs: Array<Cached<StarRecord>>): Promise<void> {
    const records = kvs.map((kv) => kv.value);
    for (const r of orphans(records)) {
      const kv = kvs.find((k) => k.key === starKey(r.name))!;
      const res = await this.store.txn({
        compare: [{ key: kv.key, target: "modRevision", op: "=", value: kv.modRevision }, ...(this.fence ? [this.fence] : [])],
        success: [{ type: "delete", range: { key: kv.key } }],
      });
      if (res.succeeded) await this.events.record("star.removed", `removed: the star that made it (${r.owner?.name}) is gone`, { star: r.name, uid: r.uid });
    }
  }

  /** Runs `fn` after every create and start before it (memory is promised one request at a time). */
  private admitted<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.admitting.then(fn, fn);
    this.admitting = run.catch(() => undefined);
    return run;
  }

  /**
   * Refuses a star (`spec`; `record` when it exists) whose memory would take its node past
   * memoryOvercommit × the node's memory, counting every other star there that should run.
   */
  private async checkMemory(spec: Footprint & { priority?: number | undefined }, nodes: NodeRecord[], record?: StarRecord, by?: Principal): Promise<void> {
    const [records, observed] = await this.readAll();
    // A star of a node is checked on that node; a new one on every node (the scheduler places it
    // on one with room): refused only if none has room, said of the one with the most.
    const assigned = nodes.find((n) => n.name === record?.node);
    const candidates = assigned ? [assigned] : nodes;
    if (candidates.length === 0) return; // no node yet: checked when one joins
    const byNode = new Map<string, StarRecord[]>();
    for (const r of records) {
      if (r.node === undefined || r.name === record?.name) continue;
      const list = byNode.get(r.node);
      if (list) list.push(r);
      else byNode.set(r.node, [r]);
    }
    let best: { node: NodeRecord; budget: MemoryBudget; bytes: number } | undefined;
    // Stars the loop has not placed yet (no node, no reason why not) will take room somewhere:
    // counted on every node, as the node they may go to.
    const known = new Set(nodes.map((n) => n.name));
    const unplaced = records.filter((r) => (r.node === undefined || !known.has(r.node)) && r.pending === undefined && r.name !== record?.name);
    // A new star may push aside stars of lower priority (the loop preempts them to place it):
    // what they hold is room for it.
    const priority = spec.priority ?? DEFAULT_PRIORITY;
    const pushable = (r: StarRecord) => !assigned && this.factsOf(r).priority < priority && !this.factsOf(r).exclusive;
    for (const node of candidates) {
      const limits = limitsOfNode(node);
      const used = [...(byNode.get(node.name) ?? []), ...unplaced]
        .filter((r) => holdsMemory(r, observed.get(r.name)) && !pushable(r))
        .map((r) => memoryBytesOf(this.factsOf(r), limits))
        .concat(leftoverMemory(records, observed, node.name, limits.defaultRamMb * 2 ** 20));
      const budget = memoryBudget(node.memoryBytes, limits.memoryOvercommit, used);
      const bytes = memoryBytesOf(spec, limits);
      if (fits(budget, bytes)) {
        best = undefined;
        break;
      }
      if (!best || budget.leftBytes > best.budget.leftBytes) best = { node, budget, bytes };
    }
    if (best) {
      // The node's totals are the operator's to know, not a star's.
      const detail = by === undefined || by.scope === "admin";
      throw new NodeMemoryFullError(spec.ram_gb !== undefined ? "ram_gb" : "ram_mb", best.node.name, mb(best.bytes), mb(best.budget.usedBytes), mb(best.budget.allowedBytes), detail);
    }
    // Forget the specs of stars that are gone.
    const uids = new Set(records.map((r) => r.uid));
    for (const uid of this.facts.keys()) if (!uids.has(uid)) this.facts.delete(uid);
  }


  /**
   * Refuses `record` if its namespace's quota cannot hold it: one more star (`newStar`), and —
   * if it should run — its cpu, memory and disk beside those of the namespace's other stars that
   * should run (a stopped star holds none, as for a node's memory). With a cpu or disk quota, a
   * star must say how much it takes (a star with no cpu limit could take every core).
   */
  private async checkNamespaceQuota(record: StarRecord, nodes: NodeRecord[], newStar: boolean): Promise<void> {
    const ns = namespaceOf(record);
    const quota = await this.quotaOf(ns);
    if (!quota) return;
    const all = (await this.records.all()).map((kv) => kv.value).filter((r) => namespaceOf(r) === ns && r.name !== record.name);
    const used = this.usageOf(all, nodes);
    const facts = this.factsOf(record);
    const running = record.desired === "running";
    if (running && quota.cpu_cores !== undefined && cpuMillisOf(facts) === undefined) {
      throw new NamespaceQuotaError(ns, `namespace ${ns} has a cpu quota: give the star cpu_cores or cpu_percent`, "cpu_cores");
    }
    const ask = running ? this.demandForQuota(record, nodes) : { cpuMillis: 0, memoryBytes: 0, diskBytes: 0 };
    if (running && quota.disk_mb !== undefined && ask.diskBytes === undefined) {
      throw new NamespaceQuotaError(ns, `namespace ${ns} has a disk quota: give the star disk_mb`, "disk_mb");
    }
    const problem = quotaProblem(ns, quotaOfRecord(quota), used, { ...ask, diskBytes: ask.diskBytes ?? 0 }, newStar ? 1 : 0);
    if (problem) throw new NamespaceQuotaError(ns, problem);
  }

  /**
   * Refuses a deployment of `count` stars of `spec` in namespace `ns` (its stars now, `uid`,
   * count no more: they are what it replaces) if the namespace's quota cannot hold them all.
   */
  async checkDeploymentQuota(ns: string, spec: StarSpec, count: number, uid?: string): Promise<void> {
    const quota = await this.quotaOf(ns);
    if (!quota) return;
    const nodes = await this.nodes();
    const others = (await this.records.all()).map((kv) => kv.value).filter((r) => namespaceOf(r) === ns && (uid === undefined || r.deployment?.uid !== uid));
    if (quota.cpu_cores !== undefined && cpuMillisOf(spec) === undefined) throw new NamespaceQuotaError(ns, `namespace ${ns} has a cpu quota: give the deployment cpu_cores or cpu_percent`, "cpu_cores");
    const limits = largestDefaults(nodes);
    const diskMb = spec.disk_mb ?? limits.defaultDiskMb;
    if (quota.disk_mb !== undefined && diskMb === undefined) throw new NamespaceQuotaError(ns, `namespace ${ns} has a disk quota: give the deployment disk_mb`, "disk_mb");
    const ask = { cpuMillis: (cpuMillisOf(spec) ?? 0) * count, memoryBytes: memoryBytesOf(spec, limits) * count, diskBytes: (diskMb ?? 0) * 2 ** 20 * count };
    const problem = quotaProblem(ns, quotaOfRecord(quota), this.usageOf(others, nodes), ask, count, `this deployment (${count} star${count === 1 ? "" : "s"})`);
    if (problem) throw new NamespaceQuotaError(ns, problem);
  }

  /** What a star that should run counts against its namespace's quota (memory: with the nodes' largest default). */
  private demandForQuota(r: StarRecord, nodes: NodeRecord[]): { cpuMillis: number; memoryBytes: number; diskBytes: number | undefined } {
    const limits = largestDefaults(nodes);
    const f = this.factsOf(r);
    const diskMb = f.disk_mb ?? limits.defaultDiskMb;
    return { cpuMillis: cpuMillisOf(f) ?? 0, memoryBytes: memoryBytesOf(f, limits), diskBytes: diskMb === undefined ? undefined : diskMb * 2 ** 20 };
  }

  /** What `records` hold against a quota: all of them as stars, those that should run for the rest. */
  private usageOf(records: StarRecord[], nodes: NodeRecord[]): Usage {
    const used: Usage = { stars: records.length, cpuMillis: 0, memoryBytes: 0, diskBytes: 0 };
    for (const r of records) {
      if (r.desired !== "running") continue;
      const d = this.demandForQuota(r, nodes);
      used.cpuMillis += d.cpuMillis;
      used.memoryBytes += d.memoryBytes;
      used.diskBytes += d.diskBytes ?? 0;
    }
    return used;
  }

  private async quotaOf(ns: string): Promise<QuotaRecord | undefined> {
    const kv = await this.store.get(`${KEYS.quotas}${ns}`);
    return kv ? (JSON.parse(kv.value) as QuotaRecord) : undefined;
  }

  /** Sets namespace `ns`'s quota (what it holds now may be over it: nothing is stopped, nothing new admitted). */
  async setQuota(ns: string, quota: QuotaRecord): Promise<void> {
    if (!DNS_LABEL.test(ns)) throw new InvalidArgumentError("namespace", `a namespace is a DNS label (lowercase letters, digits, '-'), got ${JSON.stringify(ns.slice(0, 70))}`);
    await this.store.put(`${KEYS.quotas}${ns}`, JSON.stringify(quota));
  }

  /** Lifts namespace `ns`'s quota; false if it had none. */
  async removeQuota(ns: string): Promise<boolean> {
    const { deleted } = await this.store.delete({ key: `${KEYS.quotas}${ns}` });
    return deleted > 0;
  }

  /** The namespaces `by` may see (those with stars or a quota), with what they hold and their quotas. */
  async namespaces(by?: Principal): Promise<NamespaceView[]> {
    const [records, nodes, { kvs }] = await Promise.all([this.records.all(), this.nodes(), this.store.range({ prefix: KEYS.quotas })]);
    const byNs = new Map<string, StarRecord[]>();
    for (const kv of records) byNs.set(namespaceOf(kv.value), [...(byNs.get(namespaceOf(kv.value)) ?? []), kv.value]);
    const quotas = new Map(kvs.map((kv) => [kv.key.slice(KEYS.quotas.length), JSON.parse(kv.value) as QuotaRecord]));
    const names = [...new Set([DEFAULT_NAMESPACE, ...byNs.keys(), ...quotas.keys()])].filter((n) => by?.namespace === undefined || n === by.namespace).sort();
    return names.map((name) => {
      const u = this.usageOf(byNs.get(name) ?? [], nodes);
      const q = quotas.get(name);
      return { name, used: { stars: u.stars, cpu_cores: u.cpuMillis / 1000, ram_mb: Math.round(u.memoryBytes / 2 ** 20), disk_mb: Math.round(u.diskBytes / 2 ** 20) }, ...(q ? { quota: q } : {}) };
    });
  }

  /** The top of `star`'s tree (an admin's star, with no owner): `star` itself if it has none. */
  async treeRoot(star: StarRef): Promise<StarRef> {
    let at = star;
    for (let depth = 0; depth < 10_000; depth++) {
      const kv = await this.store.get(starKey(at.name));
      const r = kv ? (JSON.parse(kv.value) as StarRecord) : undefined;
      if (!r || r.uid !== at.uid || !r.owner) return at;
      at = r.owner;
    }
    return at;
  }

  /** Refuses `record`, a new star below `parent`, if its tree would hold too many stars or spec bytes. */
  private async checkQuota(parent: StarRecord, record: StarRecord): Promise<void> {
    const quotas = { ...TREE_QUOTAS, ...this.options.quotas };
    const records = (await this.records.all()).map((e) => e.value);
    const byUid = new Map(records.map((r) => [r.uid, r]));
    let root = byUid.get(parent.uid) ?? parent;
    for (let up = root.owner && byUid.get(root.owner.uid); up; up = up.owner && byUid.get(up.owner.uid)) root = up;
    const tree = subtree(records, root);
    if (tree.length + 1 > quotas.stars) throw new QuotaExceededError("stars", root.name, tree.length, quotas.stars);
    const size = (spec: unknown) => Buffer.byteLength(JSON.stringify(spec));
    const bytes = tree.reduce((n, r) => n + size(r.spec), size(record.spec));
    if (bytes > quotas.specBytes) throw new QuotaExceededError("spec bytes", root.name, bytes, quotas.specBytes);
  }

  /** A star on its node as the scheduler sees it. */
  private placedOf(record: StarRecord, node: NodeRecord | undefined, holds: boolean): PlacedStar {
    const demand = holds ? this.demandOf(record, limitsOfNode(node)) : { cpuMillis: 0, memoryBytes: 0, diskBytes: 0, pids: 0 };
    const facts = this.factsOf(record);
    // A star run at most once is not pushed aside: its copy must end before it may run elsewhere.
    return { name: record.name, node: record.node!, namespace: namespaceOf(record), demand, priority: facts.priority, ports: fixedPorts(facts), ...(facts.exclusive ? { preemptible: false } : {}), ...(record.deployment ? { group: record.deployment.name } : {}) };
  }

  /** A star to place, as the scheduler takes it (spread by default: fewest stars per node, as Kubernetes' default). */
  private askOf(record: StarRecord, limits: NodeLimits): Ask {
    const p = this.factsOf(record).placement;
    return {
      name: record.name,
      namespace: namespaceOf(record),
      demand: this.demandOf(record, limits),
      priority: this.factsOf(record).priority,
      // A deployment's stars spread among themselves (4/4/4 over three nodes), not only over all stars.
      ...(record.deployment ? { group: record.deployment.name } : {}),
      strategy: p?.strategy ?? "spread",
      ...(p?.spread_by !== undefined ? { spreadBy: p.spread_by } : {}),
      constraints: p?.constraints ?? [],
      affinities: p?.affinities ?? [],
      distinctHosts: false,
      ports: fixedPorts(this.factsOf(record)),
    };
  }

  /**
   * What a star holds of a node for placement: its memory (as memory is promised at create,
   * docs/runtime.md). CPU limits are not reserved (as Kubernetes' limits are not): a node's
   * stars may together be limited to more cores than it has, and share them.
   */
  private demandOf(record: StarRecord, limits: NodeLimits): Demand {
    return { cpuMillis: 0, memoryBytes: memoryBytesOf(this.factsOf(record), limits), diskBytes: 0, pids: 0 };
  }

  /**
   * Makes room on `node` for `by`: each star of `victims` (of lower priority) loses its node —
   * its node's agent stops it, with its grace — and waits, pending, to be placed again where
   * there is room (Kubernetes' preemption; it may in turn push aside stars of lower priority
   * still). Returns whether every one was evicted (one changed under the pass: not).
   */
  private async preempt(victims: string[], by: StarRecord, node: string, kvOf: Map<string, Cached<StarRecord>>, evicted: Set<string>): Promise<boolean> {
    for (const name of victims) {
      const kv = kvOf.get(name)!;
      const { node: _, pending: __, ...rest } = kv.value;
      // (A star of another namespace is not named: its name is not the victim's owner's to see.)
      const who = namespaceOf(by) === namespaceOf(kv.value) ? `star ${by.name}` : "a star of another namespace";
      const preempted = `preempted on node ${node} by ${who} (priority ${this.factsOf(by).priority} over ${this.factsOf(kv.value).priority})`;
      const reason = `${preempted}; placed again when a node has room`;
      if (!(await this.casRecord(kv, { ...rest, pending: { reason, since: Date.now(), preempted } }, [{ key: starKey(by.name), target: "modRevision", op: "=", value: kvOf.get(by.name)!.modRevision }]))) return false;
      evicted.add(name);
      await this.events.record("star.preempted", reason, { star: name, uid: kv.value.uid, node });
    }
    return true;
  }

  /**
   * A star placed nowhere: it stays pending, and says why on its record (inspect, list) and in
   * an event — once per reason. It is placed by a later pass as soon as a node can take it (a
   * node joins, a star is removed, a cordon lifted). Returns the writes made (0 or 1).
   */
  private async unplaced(kv: Cached<StarRecord>, why: string): Promise<number> {
    const record = kv.value;
    // Pushed aside, it says so until it is placed again (and then why it is not yet).
    const preempted = record.pending?.preempted;
    const reason = preempted === undefined ? why : `${preempted}; not placed since: ${why}`;
    if (record.pending?.reason === reason) return 0;
    if (await this.casRecord(kv, { ...record, pending: { reason, since: record.pending?.since ?? Date.now(), ...(preempted !== undefined ? { preempted } : {}) } })) {
      await this.events.record("star.unplaced", `not placed: ${reason}`, { star: record.name, uid: record.uid });
    }
    return 1;
  }

  private factsOf(record: StarRecord): StarFacts {
    let facts = this.facts.get(record.uid);
    if (!facts) {
      const spec = parseStarSpec(record.spec);
      facts = { restart: spec.restart, exclusive: spec.exclusive, stop_grace_ms: spec.stop_grace_ms, priority: spec.priority ?? DEFAULT_PRIORITY, ...(spec.placement ? { placement: spec.placement } : {}), ...(spec.ports ? { ports: spec.ports } : {}) };
      for (const f of ["cpu_cores", "cpu_percent", "ram_mb", "ram_gb", "disk_mb"] as const) if (spec[f] !== undefined) facts[f] = spec[f];
      this.facts.set(record.uid, facts);
    }
    return facts;
  }

  /** Every star record, and what the nodes report by star name. */
  private async readAll(): Promise<[StarRecord[], Map<string, ReportFacts>]> {
    const [stars, status] = await Promise.all([this.records.all(), this.reports.all()]);
    const observed = new Map(status.map((kv) => [kv.key.slice(KEYS.status.length), kv.value]));
    return [stars.map((kv) => kv.value), observed];
  }

  private async casRecord(kv: Pick<KeyValue, "key" | "modRevision">, next: StarRecord, also: Compare[] = []): Promise<boolean> {
    const res = await this.store.txn({
      compare: [{ key: kv.key, target: "modRevision", op: "=", value: kv.modRevision }, ...also, ...(this.fence ? [this.fence] : [])],
      success: [{ type: "put", key: kv.key, value: JSON.stringify(next) }],
    });
    return res.succeeded;
  }

  /** Whether the star is not running: never started, or its run has ended. */
  private async isSettled(name: string, record: StarRecord): Promise<boolean> {
    const obs = await this.store.get(statusKey(name));
    if (!obs) return record.desired === "stopped";
    const o = reportFacts(JSON.parse(obs.value) as StarObserved);
    return o.uid !== record.uid || !isActiveState(o);
  }

}

/** The stars `by` may see (a star's token: its own subtree), as the API shows them. */
function viewsFor(records: StarRecord[], observed: Map<string, StarObserved>, by?: Principal): StarView[] {
  return seenBy(records, by).map((r) => viewOf(r, observed.get(r.name)));
}

/** The limits of the node with the largest default memory (what a star that names none is asked with). */
function largestDefaults(nodes: NodeRecord[]): NodeLimits {
  return nodes.reduce<NodeLimits>((a, n) => (limitsOfNode(n).defaultRamMb > a.defaultRamMb ? limitsOfNode(n) : a), limitsOfNode(nodes[0]));
}

/** A quota as the scheduler's rule takes it. */
function quotaOfRecord(q: QuotaRecord): Quota {
  return {
    ...(q.cpu_cores !== undefined ? { cpuMillis: Math.round(q.cpu_cores * 1000) } : {}),
    ...(q.ram_mb !== undefined ? { memoryBytes: q.ram_mb * 2 ** 20 } : {}),
    ...(q.disk_mb !== undefined ? { diskBytes: q.disk_mb * 2 ** 20 } : {}),
    ...(q.stars !== undefined ? { stars: q.stars } : {}),
  };
}

/** A token's scope as said in errors: "star", "read", "admin of namespace team-a". */
export function scopeText(by: Principal): string {
  return by.namespace !== undefined && by.scope !== "star" ? `${by.scope} of namespace ${by.namespace}` : by.scope;
}

/** Whether `by` sees only some stars (a star's token: its subtree; a namespace's: the namespace). */
function limited(by: Principal | undefined): by is Principal {
  return by?.star !== undefined || by?.namespace !== undefined;
}

/** The stars `by` may see. */
function seenBy(records: StarRecord[], by: Principal | undefined): StarRecord[] {
  if (by?.star) return subtree(records, by.star);
  if (by?.namespace !== undefined) return records.filter((r) => namespaceOf(r) === by.namespace);
  return records;
}

/** A node's defaults and ceilings (a record written before nodes had them: the defaults). */
function limitsOfNode(node: NodeRecord | undefined) {
  return node?.limits ?? DEFAULT_NODE_LIMITS;
}

function starGone(name: string): UnauthorizedError {
  return new UnauthorizedError(`this token belongs to star ${name}, which has been removed: a removed star's token is no longer valid`);
}

function checkName(name: string): void {
  if (!DNS_LABEL.test(name)) throw new InvalidArgumentError("name", `star names are DNS labels (lowercase letters, digits, '-'), got ${JSON.stringify(name)}`);
}

/**
 * Why a spec fits on no node, said of the largest: of the limits some node refuses, the one most
 * nodes refuse, against the node with the most of it ("ram_gb asks for 64 GB, but the largest
 * node (n3) has 32768 MB").
 */
function tooLargeForAll(spec: StarSpec, nodes: NodeRecord[]): Error {
  const refusals: Array<{ node: string; err: CapacityExceededError }> = [];
  for (const n of nodes) {
    try {
      limitsOf(spec, n);
    } catch (err) {
      if (!(err instanceof CapacityExceededError)) return err as Error;
      refusals.push({ node: n.name, err });
    }
  }
  const byField = new Map<string, Array<{ node: string; err: CapacityExceededError }>>();
  for (const r of refusals) byField.set(r.err.field, [...(byField.get(r.err.field) ?? []), r]);
  const most = [...byField.values()].sort((a, b) => b.length - a.length)[0]!;
  const largest = most.reduce((a, b) => (b.err.capacity > a.err.capacity ? b : a));
  const e = largest.err;
  return nodes.length > 1 ? new CapacityExceededError(e.field, e.requested, e.capacity, e.unit, largest.node) : e;
}
