/**
 * Deployments (issue 13): the API's side (deploy, scale, undo, list, remove: records written
 * with a compare, so two writers never lose each other's change) and the deployment loop, a
 * control loop on the leader: it watches deployments, their stars and what nodes report, asks
 * the rollout's pure core (deploy/rollout.ts) for the next step, and carries it out through the
 * controller's own create and remove (so a deployment's stars are admitted, placed and quota'd
 * as any star is). Every decision is an event.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import {
  type DeploySpec,
  type DeploymentRecord,
  type DeploymentView,
  type Revision,
  countRange,
  initialCount,
  parseDeploySpec,
  revisionOf,
} from "../model/deployment.js";
import { FieldForbiddenError, ForbiddenError, InvalidArgumentError, NoSuchDeploymentError, isConstellationError } from "../model/errors.js";
import { DEFAULT_NAMESPACE, KEYS, PREFIX, type Principal, type StarObserved, type StarRecord, namespaceOf } from "../model/records.js";
import { type StarSpecInput, parseStarSpec } from "../model/spec.js";
import { type Plan, type StarFact, plan } from "../deploy/rollout.js";
import type { Compare, Store } from "../store/types.js";
import type { Controller } from "./controller.js";
import type { EventLog } from "./events.js";

export const deploymentKey = (name: string) => `${KEYS.deployments}${name}`;

const monotonic = () => performance.now();

/** Failed stars of a complete deployment are replaced after 1 s, doubling to a minute. */
const REPLACE_BACKOFF_MS = { first: 1000, max: 60_000 };
/** A create the controller refused (memory, quota) is tried again after this long. */
const CREATE_RETRY_MS = 2000;
/** Stars made in one pass at most (a big deployment is made over a few passes, each seeing the last). */
const CREATES_PER_PASS = 200;

export class Deployments {
  private abort = new AbortController();
  private loop: Promise<void> | undefined;
  private fence: Compare | undefined;
  private passing: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;
  private wake: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  /** Stars of deployments were seen at the last pass (a pass with no deployment still reads them: strays are removed). */
  private strays = true;
  /** Replacements of failed stars so far, by deployment uid (the backoff), and when the next may be. */
  private readonly backoff = new Map<string, { attempts: number; nextAt: number }>();

  constructor(
    private readonly store: Store,
    private readonly controller: Controller,
    private readonly events: EventLog,
  ) {}

  // ---- the API's side ----

  /**
   * Deploys `input` (the seed's form): a new deployment, a new revision of one (its template
   * changed), a new count, or nothing (the same again). Checked whole before anything is
   * written: the template as create checks a star, the count against the namespace's quota.
   */
  async deploy(input: unknown, by?: Principal, options: { dryRun?: boolean } = {}): Promise<{ deployment: DeploymentView; changed: boolean; revision: number }> {
    if (by?.star) throw new ForbiddenError("star", "an admin token (a star's token makes stars, not deployments)");
    const d = parseDeploySpec(input);
    const name = d.deployment.name;
    const namespace = by?.namespace ?? d.deployment.namespace ?? DEFAULT_NAMESPACE;
    if (d.deployment.namespace !== undefined && d.deployment.namespace !== namespace) {
      throw new FieldForbiddenError("namespace", `admin of namespace ${namespace}`, `this token's deployments are made in namespace ${namespace}; leave namespace out`);
    }
    const spec = parseStarSpec({ ...d.template, name: `${name}-xxxxx` });
    await this.controller.vet(spec, { ...d.template, name: `${name}-xxxxx` }, await this.controller.nodes(), by ? { by } : {});
    for (;;) {
      const kv = await this.store.get(deploymentKey(name));
      const old = kv ? (JSON.parse(kv.value) as DeploymentRecord) : undefined;
      if (old && namespaceOf(old) !== namespace) {
        // Not this token's to see: as if it were taken by a name it cannot see.
        throw new InvalidArgumentError("name", `a deployment named ${name} exists in another namespace: deployment names are the cluster's; choose another`);
      }
      const next = this.next(old, d, namespace);
      if (!next) return { deployment: await this.view(old!), changed: false, revision: old!.revision };
      await this.controller.checkDeploymentQuota(namespace, spec, next.count, old?.uid);
      if (options.dryRun) return { deployment: viewOf(next, []), changed: true, revision: next.revision };
      const res = await this.store.txn({
        compare: [{ key: deploymentKey(name), target: "modRevision", op: "=", value: kv?.modRevision ?? 0 }],
        success: [{ type: "put", key: deploymentKey(name), value: JSON.stringify(next) }],
      });
      if (!res.succeeded) continue; // changed meanwhile: decided again on what is there now
      const what = !old ? `created: revision 1, ${next.count} star${next.count === 1 ? "" : "s"}` : next.revision !== old.revision ? `revision ${next.revision}: the template changed; rolling out` : `${old.count} → ${next.count} stars`;
      await this.events.record(old ? "deployment.updated" : "deployment.created", what, { deployment: name });
      this.nudge();
      return { deployment: await this.view(next), changed: true, revision: next.revision };
    }
  }

  /** The record after deploying `d` over `old` (undefined: nothing changes). */
  private next(old: DeploymentRecord | undefined, d: DeploySpec, namespace: string): DeploymentRecord | undefined {
    const now = Date.now();
    const revision: Revision = { revision: (old?.revision ?? 0) + 1, hash: d.hash, template: d.template, at: now, cause: "deploy" };
    if (!old) {
      return {
        name: d.deployment.name,
        uid: randomUUID(),
        ...(namespace !== DEFAULT_NAMESPACE ? { namespace } : {}),
        createdAt: now,
        fields: d.deployment,
        revision: 1,
        history: [revision],
        count: initialCount(d.deployment.instances),
        rollout: { revision: 1, state: "progressing", message: "starting", since: now },
        generation: 1,
      };
    }
    const current = revisionOf(old, old.revision);
    const templateChanged = current?.hash !== d.hash;
    const fieldsChanged = JSON.stringify(old.fields) !== JSON.stringify(d.deployment);
    if (!templateChanged && !fieldsChanged) return undefined;
    // The count: a number is the count; a range keeps the count within it (the autoscaler's and scale's choice).
    const range = countRange(d.deployment.instances);
    const count = typeof d.deployment.instances === "number" ? d.deployment.instances : Math.min(range.max, Math.max(range.min, old.count));
    const next: DeploymentRecord = { ...old, fields: d.deployment, count, generation: old.generation + 1 };
    if (templateChanged) {
      next.revision = old.revision + 1;
      next.history = [...old.history, { ...revision, revision: next.revision }].slice(-d.deployment.revision_history);
      next.rollout = { revision: next.revision, state: "progressing", message: "starting", since: now };
    }
    return next;
  }

  /** Sets how many stars a deployment has (within its instances' min and max). */
  async scale(name: string, count: number, by?: Principal): Promise<DeploymentView> {
    if (!Number.isInteger(count) || count < 0) throw new InvalidArgumentError("instances", `a count is a whole number of 0 or more, got ${count}`);
    return this.change(name, by, async (d) => {
      const range = countRange(d.fields.instances);
      if (count < range.min || count > range.max) throw new InvalidArgumentError("instances", `deployment ${name} runs ${range.min} to ${range.max} stars (its instances); ${count} is outside: deploy it again with other instances to change them`);
      if (count === d.count) return undefined;
      const current = revisionOf(d, d.revision)!;
      await this.controller.checkDeploymentQuota(namespaceOf(d), parseStarSpec({ ...current.template, name: `${name}-xxxxx` }), count, d.uid);
      return [{ ...d, count, generation: d.generation + 1 }, "deployment.scaled", `scaled ${d.count} → ${count}`];
    });
  }

  /**
   * Goes back to an earlier revision (`to`; default the one before the current): a new
   * revision with its template, rolled out as any change is (Kubernetes' rollout undo).
   */
  async undo(name: string, to: number | undefined, by?: Principal): Promise<DeploymentView> {
    return this.change(name, by, async (d) => {
      const target = to ?? [...d.history].reverse().find((r) => r.revision < d.revision && r.hash !== revisionOf(d, d.revision)?.hash)?.revision;
      if (target === undefined) throw new InvalidArgumentError("revision", `deployment ${name} has no earlier revision to go back to (constellation rollout history ${name})`);
      const rev = revisionOf(d, target);
      if (!rev) throw new InvalidArgumentError("revision", `deployment ${name} keeps revisions ${d.history.map((r) => r.revision).join(", ")}; ${target} is not one of them`);
      if (target === d.revision) throw new InvalidArgumentError("revision", `revision ${target} is the current one`);
      return [this.withRevision(d, rev, `undo to ${target}`), "deployment.rollback", `undo: revision ${d.revision + 1} has the template of revision ${target}`];
    });
  }

  /** `d` with a new revision made from `rev`'s template, being rolled out. */
  private withRevision(d: DeploymentRecord, rev: Revision, cause: string): DeploymentRecord {
    const now = Date.now();
    const n = d.revision + 1;
    return {
      ...d,
      revision: n,
      history: [...d.history, { revision: n, hash: rev.hash, template: rev.template, at: now, cause }].slice(-d.fields.revision_history),
      rollout: { revision: n, state: "progressing", message: "starting", since: now },
      generation: d.generation + 1,
    };
  }

  /** Applies `f` to deployment `name` with a compare (again if it changed meanwhile); f's undefined: nothing to do. */
  private async change(name: string, by: Principal | undefined, f: (d: DeploymentRecord) => Promise<[DeploymentRecord, "deployment.scaled" | "deployment.rollback", string] | undefined>): Promise<DeploymentView> {
    if (by?.star) throw new ForbiddenError("star", "an admin token (a star's token makes stars, not deployments)");
    for (;;) {
      const kv = await this.store.get(deploymentKey(name));
      const d = kv ? (JSON.parse(kv.value) as DeploymentRecord) : undefined;
      if (!d || !sees(by, d)) throw new NoSuchDeploymentError(name);
      const out = await f(d);
      if (!out) return this.view(d);
      const res = await this.store.txn({ compare: [{ key: kv!.key, target: "modRevision", op: "=", value: kv!.modRevision }], success: [{ type: "put", key: kv!.key, value: JSON.stringify(out[0]) }] });
      if (!res.succeeded) continue;
      await this.events.record(out[1], out[2], { deployment: name });
      this.nudge();
      return this.view(out[0]);
    }
  }

  /** Removes a deployment and its stars. */
  async remove(name: string, by?: Principal): Promise<void> {
    const kv = await this.store.get(deploymentKey(name));
    const d = kv ? (JSON.parse(kv.value) as DeploymentRecord) : undefined;
    if (!d || !sees(by, d) || by?.star) throw new NoSuchDeploymentError(name);
    await this.store.delete({ key: deploymentKey(name) });
    await this.events.record("deployment.removed", "removed, with its stars", { deployment: name });
    for (const s of await this.starsOf(d.uid)) await this.controller.remove(s.name, { force: true }).catch(() => undefined);
  }

  /** The deployments `by` may see, with what their stars are doing. */
  async list(by?: Principal): Promise<DeploymentView[]> {
    const { kvs } = await this.store.range({ prefix: KEYS.deployments });
    const all = kvs.map((kv) => JSON.parse(kv.value) as DeploymentRecord).filter((d) => sees(by, d));
    const stars = await this.readStars();
    return all.map((d) => viewOf(d, stars.filter((s) => s.record.deployment?.uid === d.uid)));
  }

  async get(name: string, by?: Principal): Promise<DeploymentView> {
    const kv = await this.store.get(deploymentKey(name));
    const d = kv ? (JSON.parse(kv.value) as DeploymentRecord) : undefined;
    if (!d || !sees(by, d)) throw new NoSuchDeploymentError(name);
    return this.view(d);
  }

  private async view(d: DeploymentRecord): Promise<DeploymentView> {
    return viewOf(d, (await this.readStars()).filter((s) => s.record.deployment?.uid === d.uid));
  }

  private async starsOf(uid: string): Promise<StarRecord[]> {
    return (await this.readStars()).filter((s) => s.record.deployment?.uid === uid).map((s) => s.record);
  }

  /** Every star of a deployment, with what its node reports (a report of an earlier star of its name is not its). */
  private async readStars(): Promise<Array<{ record: StarRecord; observed?: StarObserved }>> {
    const [{ kvs: stars }, { kvs: status }] = await Promise.all([this.store.range({ prefix: KEYS.stars }), this.store.range({ prefix: KEYS.status })]);
    const observed = new Map(status.map((kv) => [kv.key.slice(KEYS.status.length), JSON.parse(kv.value) as StarObserved]));
    const out: Array<{ record: StarRecord; observed?: StarObserved }> = [];
    for (const kv of stars) {
      const record = JSON.parse(kv.value) as StarRecord;
      if (!record.deployment) continue;
      const o = observed.get(record.name);
      out.push(o && o.uid === record.uid ? { record, observed: o } : { record });
    }
    return out;
  }

  // ---- the loop ----

  /** Runs the loop until stop(); with `fence`, every write holds only while this controller leads. */
  start(fence?: Compare): void {
    if (this.loop !== undefined) return;
    this.fence = fence;
    this.loop = this.run(this.abort.signal);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    clearTimeout(this.wake);
    this.wake = undefined;
    this.wakeAt = Infinity;
    await this.loop?.catch(() => undefined);
    await this.passing;
    this.loop = undefined;
    this.abort = new AbortController();
  }

  /** Looks again soon (a deploy, scale or undo was written). */
  private nudge(): void {
    if (this.loop === undefined || this.abort.signal.aborted) return;
    void this.passAll().catch(() => undefined);
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const revision = await this.store.revision();
        await this.passAll();
        const watch = this.store.watch({ prefix: PREFIX }, { fromRevision: revision + 1 });
        const onAbort = () => watch.close();
        signal.addEventListener("abort", onAbort);
        if (signal.aborted) watch.close();
        try {
          const looks = (k: string) => k.startsWith(KEYS.deployments) || k.startsWith(KEYS.stars) || k.startsWith(KEYS.status);
          for await (const batch of watch) if (batch.events.some((e) => looks(e.kv.key))) void this.passAll().catch(() => this.wakeIn(CREATE_RETRY_MS));
        } finally {
          signal.removeEventListener("abort", onAbort);
          watch.close();
        }
      } catch {
        await delay(1000, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /** One pass at a time; a pass asked for while one waits to begin is that pass. */
  private passAll(): Promise<void> {
    if (this.queued) return this.queued;
    const next = this.passing.then(() => {
      this.queued = undefined;
      return this.passOnce();
    });
    this.queued = next;
    this.passing = next.catch(() => undefined);
    return next;
  }

  private wakeIn(ms: number): void {
    const at = monotonic() + ms;
    if (this.abort.signal.aborted || at >= this.wakeAt) return;
    clearTimeout(this.wake);
    this.wakeAt = at;
    this.wake = setTimeout(() => {
      this.wakeAt = Infinity;
      void this.passAll().catch(() => undefined);
    }, ms + 20);
    this.wake.unref();
  }

  private async passOnce(): Promise<void> {
    if (this.abort.signal.aborted) return;
    const { kvs } = await this.store.range({ prefix: KEYS.deployments });
    // No deployment: nothing to read (stars change all the time; a pass that read them all at
    // every change made placing 10,000 stars 10 times slower).
    if (kvs.length === 0 && this.backoff.size === 0 && !this.strays) return;
    const stars = await this.readStars();
    this.strays = stars.length > 0;
    const uids = new Set<string>();
    for (const kv of kvs) {
      const d = JSON.parse(kv.value) as DeploymentRecord;
      uids.add(d.uid);
      await this.step(d, kv.modRevision, stars.filter((s) => s.record.deployment?.uid === d.uid));
    }
    // Stars of a deployment that is gone (removed while its stars were being made): removed too.
    for (const s of stars) if (!uids.has(s.record.deployment!.uid)) await this.controller.remove(s.record.name, { force: true }).catch(() => undefined);
    for (const uid of this.backoff.keys()) if (!uids.has(uid)) this.backoff.delete(uid);
    for (const uid of this.refused.keys()) if (!uids.has(uid)) this.refused.delete(uid);
  }

  /** One deployment's next step. */
  private async step(d: DeploymentRecord, modRevision: number, stars: Array<{ record: StarRecord; observed?: StarObserved }>): Promise<void> {
    const now = Date.now();
    const current = revisionOf(d, d.revision);
    if (!current) return;
    const lastGood = d.lastGood !== undefined && d.lastGood !== d.revision && revisionOf(d, d.lastGood) ? d.lastGood : undefined;
    const bo = this.backoff.get(d.uid);
    const p = plan({
      count: d.count,
      hash: current.hash,
      revision: d.revision,
      update: d.fields.update,
      rollout: d.rollout,
      ...(lastGood !== undefined ? { lastGood } : {}),
      stars: stars.map((s) => factOf(s.record, s.observed)),
      now,
      ...(bo ? { replaceFrom: bo.nextAt } : {}),
    });
    if (p.rollback) {
      const target = revisionOf(d, p.rollback.to)!;
      const next = this.withRevision(d, target, `rollback to ${p.rollback.to}: ${p.rollback.reason}`);
      next.rollout = { ...next.rollout, message: `rolling back to revision ${p.rollback.to}` };
      if (await this.write(d.name, modRevision, next)) {
        await this.events.record("deployment.rollback", `revision ${d.revision} failed (${p.rollback.reason}): rolling back to revision ${p.rollback.to} (as revision ${next.revision})`, { deployment: d.name });
      }
      return;
    }
    const blocked = await this.carryOut(d, current, p);
    // The rollout as it stands (written when its state or words change: a create refused again
    // and again is one write and one event, not one per pass).
    const message = blocked !== undefined ? `cannot make a star: ${blocked}` : p.rollout.message;
    const rollout = message === "" ? d.rollout : { revision: d.revision, state: p.rollout.state, message, since: p.rollout.state === d.rollout.state && d.rollout.revision === d.revision ? d.rollout.since : now };
    const lastGoodNow = rollout.state === "complete" ? d.revision : d.lastGood;
    if (rollout.state !== d.rollout.state || rollout.message !== d.rollout.message || rollout.revision !== d.rollout.revision || lastGoodNow !== d.lastGood) {
      const next: DeploymentRecord = { ...d, rollout, ...(lastGoodNow !== undefined ? { lastGood: lastGoodNow } : {}) };
      const said = rollout.state !== d.rollout.state || rollout.revision !== d.rollout.revision || (blocked !== undefined && rollout.message !== d.rollout.message);
      if ((await this.write(d.name, modRevision, next)) && said) {
        await this.events.record("deployment.rollout", `revision ${d.revision} ${rollout.state}: ${rollout.message}`, { deployment: d.name });
      }
    }
    if (p.wakeAt !== undefined) this.wakeIn(Math.max(0, p.wakeAt - now));
    // Deadlines and min_ready_ms pass without a write: looked at again in a while.
    if (rollout.state === "progressing") this.wakeIn(1000);
  }

  /** Creates the controller refused, by deployment uid: why, and when to try again. */
  private readonly refused = new Map<string, { why: string; until: number }>();

  /**
   * Removes and makes stars as `p` says. A make the controller refuses (memory, quota) is tried
   * again after CREATE_RETRY_MS, not at every change the loop hears of; returns why while it is.
   */
  private async carryOut(d: DeploymentRecord, current: Revision, p: Plan): Promise<string | undefined> {
    const replacing = p.remove.filter((r) => r.why.startsWith("replaced:"));
    if (replacing.length > 0) {
      const bo = this.backoff.get(d.uid) ?? { attempts: 0, nextAt: 0 };
      bo.attempts++;
      bo.nextAt = Date.now() + Math.min(REPLACE_BACKOFF_MS.max, REPLACE_BACKOFF_MS.first * 2 ** (bo.attempts - 1));
      this.backoff.set(d.uid, bo);
    } else if (p.rollout.state === "complete" && p.remove.length === 0 && p.create === 0) this.backoff.delete(d.uid);
    for (const r of p.remove) {
      await this.controller.remove(r.name, { force: true }).catch(() => undefined);
      await this.events.record("deployment.scaled", `star ${r.name}: ${r.why}`, { deployment: d.name, star: r.name });
    }
    if (p.create === 0) {
      this.refused.delete(d.uid);
      return undefined;
    }
    const refused = this.refused.get(d.uid);
    if (refused && Date.now() < refused.until) {
      this.wakeIn(refused.until - Date.now());
      return refused.why;
    }
    for (let i = 0; i < Math.min(p.create, CREATES_PER_PASS); i++) {
      const name = `${d.name}-${suffix()}`;
      try {
        await this.controller.create({ ...current.template, name, ...(d.namespace ? { namespace: d.namespace } : {}) } as StarSpecInput, {
          deployment: { name: d.name, uid: d.uid, hash: current.hash, revision: d.revision },
        });
      } catch (err) {
        if (isConstellationError(err) && err.code === "STAR_EXISTS") continue; // a name taken: another next pass
        const why = (err as Error).message;
        this.refused.set(d.uid, { why, until: Date.now() + CREATE_RETRY_MS });
        this.wakeIn(CREATE_RETRY_MS);
        return why;
      }
    }
    this.refused.delete(d.uid);
    if (p.create > CREATES_PER_PASS) this.wakeIn(0);
    return undefined;
  }

  /** Writes a deployment's record if it is as read (`modRevision`) and this controller leads. */
  private async write(name: string, modRevision: number, next: DeploymentRecord): Promise<boolean> {
    const res = await this.store.txn({
      compare: [{ key: deploymentKey(name), target: "modRevision", op: "=", value: modRevision }, ...(this.fence ? [this.fence] : [])],
      success: [{ type: "put", key: deploymentKey(name), value: JSON.stringify(next) }],
    });
    return res.succeeded;
  }

}

/** Whether `by` may see deployment `d` (a namespace's token: its namespace's; a star's token: none). */
function sees(by: Principal | undefined, d: DeploymentRecord): boolean {
  if (by?.star) return false;
  return by?.namespace === undefined || by.namespace === namespaceOf(d);
}

/** Five lowercase letters and digits: a star's name within its deployment. */
function suffix(): string {
  const abc = "abcdefghijklmnopqrstuvwxyz0123456789";
  return [...randomBytes(5)].map((b) => abc[b % abc.length]).join("");
}

/** A star as the rollout's core sees it. */
export function factOf(record: StarRecord, o: StarObserved | undefined): StarFact {
  const fact: StarFact = { name: record.name, hash: record.deployment?.hash ?? "", createdAt: record.createdAt, state: "pending", ready: false, restarts: 0 };
  if (!o) {
    if (record.pending) fact.why = record.pending.reason;
    return fact;
  }
  const s = o.status;
  fact.restarts = s.restarts;
  if (s.reason) fact.why = s.reason;
  else if (s.exitCode !== undefined && s.exitCode !== null) fact.why = `exit code ${s.exitCode}`;
  if (s.state === "running") {
    fact.state = "running";
    fact.ready = s.ready;
    if (s.startedAt !== undefined) fact.runningSince = s.startedAt;
  } else if (s.restartAt !== undefined || s.state === "starting" || s.state === "pending") fact.state = "pending";
  else if (s.state === "failed" || s.state === "oom_killed") fact.state = "failed";
  else fact.state = "ended";
  return fact;
}

function viewOf(d: DeploymentRecord, stars: Array<{ record: StarRecord; observed?: StarObserved }>): DeploymentView {
  const hash = revisionOf(d, d.revision)?.hash;
  const now = Date.now();
  const facts = stars.map((s) => factOf(s.record, s.observed));
  const ready = facts.filter((f) => f.state === "running" && f.ready);
  return {
    ...d,
    status: {
      stars: facts.length,
      updated: facts.filter((f) => f.hash === hash).length,
      ready: ready.length,
      available: ready.filter((f) => f.hash === hash && now - (f.runningSince ?? now) >= d.fields.update.min_ready_ms).length,
    },
  };
}
