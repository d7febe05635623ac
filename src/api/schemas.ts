/**
 * Request shapes of the HTTP API (zod), and the one function that turns a zod failure into a
 * typed error naming the field. The star spec itself is model/spec.ts's schema.
 */
import { z } from "zod";
import { BadRequestError, callerText, unknownKeys } from "../model/errors.js";
import { DNS_LABEL } from "../model/spec.js";

export const createBody = z.strictObject({
  spec: z.record(z.string(), z.unknown(), { error: "spec must be an object: the star's spec (name, script or command, limits)" }),
  /** Start it now (default) or only record it. */
  start: z.boolean().optional(),
});

const flag = z.enum(["1", "0", "true", "false"]).transform((v) => v === "1" || v === "true");
const count = (max: number) => z.coerce.number().int().min(0).max(max);

export const logsQuery = z.strictObject({ tail: count(1_000_000).optional(), follow: flag.optional(), since: count(Number.MAX_SAFE_INTEGER).optional() });
export const noQuery = z.strictObject({});
/** What a star in a list may show; `fields` picks some (`name` always comes). */
export const STAR_FIELDS = ["name", "uid", "spec", "desired", "node", "createdAt", "owner", "generation", "status", "observedGeneration", "usage", "pending", "namespace"] as const;
/** Stars per page at most (and by default). */
export const MAX_PAGE = 500;
export const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(MAX_PAGE),
  /** The name the previous page ended with (its `next`). */
  after: z.string().max(63).optional(),
  fields: z
    .string()
    .max(200)
    .transform((v) => v.split(",").filter(Boolean))
    .pipe(z.array(z.enum(STAR_FIELDS, { error: `fields are a comma-separated list of ${STAR_FIELDS.join(", ")}` })))
    .optional(),
});
export const removeQuery = z.strictObject({ force: flag.optional() });
export const waitQuery = z.strictObject({
  for: z.enum(["running", "ended"]).default("running"),
  timeout_ms: count(600_000).default(30_000),
});
export const eventsQuery = z.strictObject({
  since: count(Number.MAX_SAFE_INTEGER).optional(),
  limit: count(10_000).optional(),
  star: z.string().max(63).optional(),
  /** With star: the events of every star that had the name, not only the current one's. */
  all: flag.optional(),
  follow: flag.optional(),
});
/** Longest a token may live: 10 years. */
export const MAX_TOKEN_TTL_S = 10 * 365 * 86_400;
const TTL_RULE = `ttl_s must be a whole number of seconds from 1 to ${MAX_TOKEN_TTL_S} (10 years)`;
export const tokenBody = z.strictObject({
  scope: z.enum(["admin", "read"], { error: 'scope must be "admin" or "read"' }),
  name: z.string().min(1).max(100).regex(/^[\x20-\x7e]+$/, "name must be printable ASCII").default("token"),
  /** Seconds until it expires (absent: never). */
  ttl_s: z.number({ error: TTL_RULE }).int(TTL_RULE).min(1, TTL_RULE).max(MAX_TOKEN_TTL_S, TTL_RULE).optional(),
  /** The one namespace it sees and touches (absent: the whole cluster). */
  namespace: z.string().regex(DNS_LABEL, "namespace must be a DNS label (lowercase letters, digits, '-'), e.g. team-a").optional(),
});
/** A namespace's quota: each cap optional (absent: none); at least one. */
export const quotaBody = z
  .strictObject({
    cpu_cores: z.number().positive("cpu_cores must be more than 0").max(1_000_000).optional(),
    ram_mb: z.number().int("ram_mb must be a whole number").positive("ram_mb must be more than 0").max(2 ** 40).optional(),
    disk_mb: z.number().int("disk_mb must be a whole number").positive("disk_mb must be more than 0").max(2 ** 40).optional(),
    stars: z.number().int("stars must be a whole number").min(0, "stars must be 0 or more").max(10_000_000).optional(),
  })
  .refine((q) => Object.keys(q).length > 0, "give at least one of cpu_cores, ram_mb, disk_mb, stars");
export const joinTokenBody = z.strictObject({
  /** Seconds until it expires (default a day). */
  ttl_s: z.number({ error: TTL_RULE }).int(TTL_RULE).min(1, TTL_RULE).max(MAX_TOKEN_TTL_S, TTL_RULE).optional(),
});
/** A gossip key to install (none: a new random one, shown once). */
export const gossipKeyBody = z.strictObject({ key: z.string().max(64).optional() });
/** `gossip key use --force`: even while some node does not hold the latest keyring. */
export const gossipUseBody = z.strictObject({ force: z.boolean().optional() });
export const nameParams = z.strictObject({ name: z.string() });
export const tokenParams = z.strictObject({ id: z.string() });

/** Parses `value` or throws a BadRequestError that names the first wrong field. */
export function parse<T extends z.ZodType>(schema: T, value: unknown, where: string): z.output<T> {
  const res = schema.safeParse(value ?? {});
  if (res.success) return res.data;
  const issue = res.error.issues[0]!;
  const field = callerText(issue.path.join("."));
  const what = issue.code === "unrecognized_keys" ? `unknown ${where} field ${unknownKeys(issue.keys)}` : issue.message;
  throw new BadRequestError(`${where}${field ? ` ${field}` : ""}: ${what}`, field || undefined);
}

/** POST /v1/deployments: the deploy spec (checked by model/deployment.ts), and whether only to check it. */
export const deployBody = z.strictObject({ spec: z.unknown(), dry_run: z.boolean().optional() });
export const scaleBody = z.strictObject({ instances: z.number({ error: "instances must be a whole number of 0 or more" }).int("instances must be a whole number").min(0, "instances must be 0 or more") });
export const undoBody = z.strictObject({ revision: z.number().int("revision must be a whole number").min(1, "revision must be 1 or more").optional() });

/** An artifact's id in a path: the 64 hex digits of its SHA-256. */
export const artifactParams = z.strictObject({ id: z.string().regex(/^[0-9a-f]{64}$/, "an artifact's id is the SHA-256 of its bytes: 64 lowercase hex digits") });
export const artifactChunkParams = artifactParams.extend({ index: z.string().regex(/^\d{1,6}$/, "a chunk's index is a whole number of 0 or more, in digits").transform(Number) });
/** A chunk's bytes, base64 (at most 256 KiB of bytes: 349,528 characters). */
export const artifactChunkBody = z.strictObject({ data: z.string().max(349_528, "a chunk is at most 256 KiB (base64: 349,528 characters)").regex(/^[A-Za-z0-9+/]*={0,2}$/, "data must be base64") });
export const artifactCommitBody = z.strictObject({ size: z.number().int().min(1), chunks: z.number().int().min(1) });
