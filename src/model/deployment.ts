/**
 * Deployments (issue 13): a named group of stars from one template — how many, how they are
 * updated, how they scale. What a user writes is the seed's form, the star's fields beside the
 * deployment's own:
 *
 *   deploy("user-service", { instances: { min: 2, max: 20 }, resources: { cpu_cores: 2, ram_gb: 4 },
 *                            script: "services/user.ts", auto_scale: { metric: "rps", target: 1000 } })
 *
 * The deployment's fields are checked here; the rest is the stars' template, checked as a star
 * spec is (spec.ts). A template is known by its hash: the same deploy again changes nothing, a
 * changed one makes a new revision.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { InvalidSpecError, unknownKeys } from "./errors.js";
import { DNS_LABEL, MAX_ISSUES, type StarSpecInput, parseStarSpec, withLimitsAtTop } from "./spec.js";

/** The longest deployment name: its stars are named `<name>-<5 characters>`, a DNS label. */
export const MAX_DEPLOYMENT_NAME = 57;
/** The most stars one deployment may ask for. */
export const MAX_INSTANCES = 10_000;

const count = (what: string, min = 0) =>
  z
    .number({ error: `${what} must be a whole number` })
    .int(`${what} must be a whole number`)
    .min(min, `${what} must be ${min} or more`)
    .max(MAX_INSTANCES, `${what} must be at most ${MAX_INSTANCES}`);

/** How a new template replaces the old one's stars. */
const updateSchema = z.strictObject({
  strategy: z.literal("rolling", { error: 'strategy must be "rolling"' }).default("rolling"),
  /** New stars beyond the count at any moment (Kubernetes' maxSurge). */
  max_surge: count("max_surge").default(1),
  /** Stars under the count at any moment (Kubernetes' maxUnavailable). */
  max_unavailable: count("max_unavailable").default(0),
  /**
   * A new star counts as available once it has been ready this long (default 1 s: a program
   * that dies at once is not taken for one that runs, as Nomad's min_healthy_time does).
   */
  min_ready_ms: z.number().int().min(0).max(3_600_000).default(1000),
  /** A new star not ready this long after it was made fails the rollout. */
  progress_deadline_ms: z.number().int().min(1000).max(86_400_000).default(120_000),
  /** A failed rollout goes back to the last template that completed, by itself. */
  auto_rollback: z.boolean().default(true),
});

/** What the autoscaler (issue 16) will act on: checked and stored now. */
const autoScaleSchema = z.strictObject({
  metric: z.string().min(1, "metric must name a metric (cpu_percent, memory_percent, rps, latency_p95_ms, queue_length, or any gauge)").max(200),
  target: z.number().positive("target must be more than 0"),
});

/** The deployment's own fields (everything else in a deploy spec is the stars' template). */
const deploymentFields = {
  name: z.string().max(MAX_DEPLOYMENT_NAME, `name must be at most ${MAX_DEPLOYMENT_NAME} characters (its stars are named <name>-xxxxx)`).regex(DNS_LABEL, "name must be a DNS label: lowercase letters, digits or '-', not starting or ending with '-'"),
  namespace: z.string().regex(DNS_LABEL, "namespace must be a DNS label (lowercase letters, digits, '-'), e.g. team-a").optional(),
  /** How many stars: a number, or `{ min, max }` (it starts at min; scale and the autoscaler move it within). */
  instances: z.union([count("instances"), z.strictObject({ min: count("instances.min"), max: count("instances.max", 1) })], { error: "instances must be a whole number or { min, max }" }).default(1),
  update: updateSchema.default(updateSchema.parse({})),
  auto_scale: autoScaleSchema.optional(),
  /** Revisions kept for `rollout history` and `undo`. */
  revision_history: z.number().int().min(1).max(100).default(10),
};
const DEPLOYMENT_KEYS = new Set(Object.keys(deploymentFields));

const deploymentSchema = z.strictObject(deploymentFields).superRefine((d, ctx) => {
  if (typeof d.instances === "object" && d.instances.min > d.instances.max) ctx.addIssue({ code: "custom", path: ["instances", "min"], message: `instances.min (${d.instances.min}) must be at most instances.max (${d.instances.max})` });
  if (d.update.max_surge === 0 && d.update.max_unavailable === 0) ctx.addIssue({ code: "custom", path: ["update", "max_surge"], message: "max_surge and max_unavailable may not both be 0: an update could never begin" });
});

export type DeploymentFields = z.output<typeof deploymentSchema>;
export type UpdatePolicy = DeploymentFields["update"];

/** What a user writes: the deployment's fields and the stars' (`script`, `resources`, `env`, ...). */
export type DeploySpecInput = z.input<typeof deploymentSchema> & Omit<StarSpecInput, "name" | "namespace">;

/** A deploy spec checked: the deployment's fields, and its stars' template (stored form: limits at the top). */
export interface DeploySpec {
  deployment: DeploymentFields;
  /** The stars' spec without a name. */
  template: Omit<StarSpecInput, "name">;
  /** The template's hash (hex): the same template, the same hash. */
  hash: string;
}

/** Checks a deploy spec: every problem, each named by its field (InvalidSpecError). */
export function parseDeploySpec(input: unknown): DeploySpec {
  if (typeof input !== "object" || input === null || Array.isArray(input)) throw new InvalidSpecError([{ field: "", message: "a deploy spec is an object: { name, instances, script | command, ... }" }], "deploy spec");
  const own: Record<string, unknown> = {};
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(input)) (DEPLOYMENT_KEYS.has(k) ? own : rest)[k] = v;
  const issues: Array<{ field: string; message: string }> = [];
  const d = deploymentSchema.safeParse(own);
  if (!d.success) for (const i of d.error.issues) issues.push({ field: i.path.map(String).join("."), message: i.code === "unrecognized_keys" ? `unknown field${i.keys.length > 1 ? "s" : ""} ${unknownKeys(i.keys)}` : i.message });
  // Stars restart by default: a deployment keeps its count.
  const template = withLimitsAtTop({ restart: "always", ...rest } as StarSpecInput);
  const name = typeof own.name === "string" && DNS_LABEL.test(own.name) && own.name.length <= MAX_DEPLOYMENT_NAME ? own.name : "deployment";
  try {
    parseStarSpec({ ...template, name: `${name}-xxxxx` });
  } catch (err) {
    if (!(err instanceof InvalidSpecError)) throw err;
    // (The name is the deployment's: its own errors were said above.)
    for (const i of err.issues) if (i.field !== "name") issues.push(i);
  }
  if (issues.length > 0 || !d.success) throw new InvalidSpecError(issues.slice(0, MAX_ISSUES), "deploy spec");
  const { name: _n, ...stored } = template as StarSpecInput;
  return { deployment: d.data, template: stored, hash: templateHash(stored) };
}

/** A template's hash: its JSON with keys in order (so the same spec written differently is the same). */
export function templateHash(template: unknown): string {
  return createHash("sha256").update(canonical(template)).digest("hex").slice(0, 16);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/** The count a deployment starts at: its number, or its min. */
export function initialCount(instances: DeploymentFields["instances"]): number {
  return typeof instances === "number" ? instances : instances.min;
}

/** The range scale may move a deployment in: [min, max], or any count for a fixed number. */
export function countRange(instances: DeploymentFields["instances"]): { min: number; max: number } {
  return typeof instances === "number" ? { min: 0, max: MAX_INSTANCES } : instances;
}

/** One revision of a deployment's template. */
export interface Revision {
  revision: number;
  hash: string;
  template: Omit<StarSpecInput, "name">;
  at: number;
  /** Why it was made: "deploy", "rollback to 3: ...", "undo to 2". */
  cause: string;
}

export type RolloutState = "progressing" | "complete" | "failed";

/** A deployment in the store (`/deployments/<name>`). */
export interface DeploymentRecord {
  name: string;
  uid: string;
  namespace?: string;
  createdAt: number;
  /** The deployment's own fields as last deployed. */
  fields: DeploymentFields;
  /** The current revision (its template is the one stars are made from). */
  revision: number;
  /** Revisions, oldest first, the current one last (at most fields.revision_history). */
  history: Revision[];
  /** How many stars it should have now (deploy, scale; later the autoscaler). */
  count: number;
  /** The rollout of the current revision, as the deployment loop last judged it. */
  rollout: { revision: number; state: RolloutState; message: string; since: number };
  /** The last revision whose rollout completed (what an automatic rollback returns to). */
  lastGood?: number;
  /** Raised on every change a user makes (deploy, scale, undo). */
  generation: number;
}

/** The revision `n` of a deployment, if it still keeps it. */
export function revisionOf(d: Pick<DeploymentRecord, "history">, n: number): Revision | undefined {
  return d.history.find((r) => r.revision === n);
}

/** What a star of a deployment carries on its record. */
export interface DeploymentRef {
  name: string;
  uid: string;
  /** Its template's hash (the revision it was made from is the one with that hash). */
  hash: string;
  revision: number;
}

/** A deployment as the API shows it: its record and what its stars are doing. */
export interface DeploymentView extends DeploymentRecord {
  status: {
    /** Stars it has (of any revision). */
    stars: number;
    /** Of those, made from the current template. */
    updated: number;
    /** Running and passing their health checks. */
    ready: number;
    /** Ready, of the current template, for min_ready_ms. */
    available: number;
  };
}
