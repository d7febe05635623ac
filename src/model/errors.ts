/**
 * Every error Constellation raises on purpose. Each class has a stable `code` that callers
 * (the CLI, the HTTP API, other modules) switch on; nothing matches on message text.
 * Raw errors from outside (SQLite, etcd/gRPC) are turned into these in one place per adapter.
 */

export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "STORE_EMPTY_KEY"
  | "STORE_KEY_TOO_LARGE"
  | "STORE_VALUE_TOO_LARGE"
  | "STORE_REQUEST_TOO_LARGE"
  | "STORE_INVALID_RANGE"
  | "STORE_TOO_MANY_OPS"
  | "STORE_DUPLICATE_KEY"
  | "STORE_LEASE_NOT_FOUND"
  | "STORE_INVALID_TTL"
  | "STORE_COMPACTED"
  | "STORE_FUTURE_REVISION"
  | "STORE_CLOSED"
  | "STORE_UNAVAILABLE"
  | "STORE_CORRUPT"
  | "ELECTION_NOT_LEADER"
  | "RUNTIME_INVALID_SPEC"
  | "RUNTIME_CAPACITY_EXCEEDED"
  | "RUNTIME_LIMIT_UNENFORCEABLE"
  | "RUNTIME_SCRIPT_ERROR"
  | "RUNTIME_STAR_NOT_FOUND"
  | "RUNTIME_STAR_EXISTS"
  | "RUNTIME_START_FAILED"
  | "RUNTIME_UNAVAILABLE"
  | "API_UNAUTHORIZED"
  | "API_FORBIDDEN"
  | "API_BAD_REQUEST"
  | "API_TOO_LARGE"
  | "API_TOO_MANY"
  | "API_UNAVAILABLE"
  | "STAR_NOT_FOUND"
  | "NODE_NOT_FOUND"
  | "DEPLOYMENT_NOT_FOUND"
  | "ARTIFACT_NOT_FOUND"
  | "STAR_EXISTS"
  | "STAR_OVER_PARENT_LIMIT"
  | "NODE_MEMORY_FULL"
  | "NODE_DISK_FULL"
  | "STAR_QUOTA_EXCEEDED"
  | "STORE_LOST"
  | "TOKEN_NOT_FOUND"
  | "PORT_IN_USE"
  | "NAMESPACE_QUOTA_EXCEEDED"
  | "TIMEOUT";

/** A caller's text quoted in an error: at most 64 characters of it (a key may be 900 KB). */
export function callerText(text: string): string {
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}

/** Keys a caller sent that are not known: a few of them, each short. */
export function unknownKeys(keys: string[]): string {
  return keys.slice(0, 5).map(callerText).join(", ") + (keys.length > 5 ? ` and ${keys.length - 5} more` : "");
}

export class ConstellationError extends Error {
  readonly code: ErrorCode;
  /** Set on every instance: recognises our errors across copies of this module (the CLI bundle). */
  readonly isConstellationError = true;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends ConstellationError {
  readonly field: string;
  constructor(field: string, message: string) {
    super("INVALID_ARGUMENT", message);
    this.field = field;
  }
}

export class EmptyKeyError extends ConstellationError {
  constructor() {
    super("STORE_EMPTY_KEY", "key must not be empty: give a non-empty key (keys are UTF-8 strings)");
  }
}

export class KeyTooLargeError extends ConstellationError {
  readonly size: number;
  readonly limit: number;
  constructor(size: number, limit: number) {
    super("STORE_KEY_TOO_LARGE", `key is ${size} bytes, over the limit of ${limit} bytes: use a shorter key`);
    this.size = size;
    this.limit = limit;
  }
}

export class ValueTooLargeError extends ConstellationError {
  readonly key: string;
  readonly size: number;
  readonly limit: number;
  constructor(key: string, size: number, limit: number) {
    super(
      "STORE_VALUE_TOO_LARGE",
      `value for key "${truncate(key)}" is ${size} bytes, over the limit of ${limit} bytes (1.5 MiB, etcd's request limit): ` +
        "store large content in the file system and keep a reference in the store",
    );
    this.key = key;
    this.size = size;
    this.limit = limit;
  }
}

export class RequestTooLargeError extends ConstellationError {
  readonly size: number;
  readonly limit: number;
  constructor(size: number, limit: number) {
    super("STORE_REQUEST_TOO_LARGE", `request is ${size} bytes, over the limit of ${limit} bytes: split it into smaller transactions`);
    this.size = size;
    this.limit = limit;
  }
}

export class InvalidRangeError extends ConstellationError {
  constructor(message: string) {
    super("STORE_INVALID_RANGE", message);
  }
}

export class TooManyOpsError extends ConstellationError {
  readonly count: number;
  readonly limit: number;
  constructor(count: number, limit: number) {
    super("STORE_TOO_MANY_OPS", `transaction has ${count} operations, over the limit of ${limit}: split it`);
    this.count = count;
    this.limit = limit;
  }
}

export class DuplicateKeyError extends ConstellationError {
  readonly key: string;
  constructor(key: string) {
    super("STORE_DUPLICATE_KEY", `transaction writes key "${truncate(key)}" more than once: write each key at most once per branch`);
    this.key = key;
  }
}

export class LeaseNotFoundError extends ConstellationError {
  readonly leaseId: string;
  constructor(leaseId: string) {
    super("STORE_LEASE_NOT_FOUND", `lease ${leaseId} does not exist or has expired: grant a new lease`);
    this.leaseId = leaseId;
  }
}

export class InvalidTtlError extends ConstellationError {
  constructor(ttl: unknown) {
    super("STORE_INVALID_TTL", `lease TTL must be a whole number of seconds from 1 to 9000000000, got ${String(ttl)}`);
  }
}

export class CompactedError extends ConstellationError {
  readonly revision: number;
  readonly compactRevision: number;
  constructor(revision: number, compactRevision: number) {
    super(
      "STORE_COMPACTED",
      `revision ${revision} has been compacted (history starts at ${compactRevision}): read the current state and continue from there`,
    );
    this.revision = revision;
    this.compactRevision = compactRevision;
  }
}

export class FutureRevisionError extends ConstellationError {
  readonly revision: number;
  readonly currentRevision: number;
  constructor(revision: number, currentRevision: number) {
    super("STORE_FUTURE_REVISION", `revision ${revision} is newer than the store's current revision ${currentRevision}`);
    this.revision = revision;
    this.currentRevision = currentRevision;
  }
}

export class StoreClosedError extends ConstellationError {
  constructor() {
    super("STORE_CLOSED", "the store has been closed");
  }
}

export class StoreUnavailableError extends ConstellationError {
  constructor(message: string, cause?: unknown) {
    super("STORE_UNAVAILABLE", message, { cause });
  }
}

export class StoreCorruptError extends ConstellationError {
  constructor(message: string, cause?: unknown) {
    super("STORE_CORRUPT", message, { cause });
  }
}

export class NotLeaderError extends ConstellationError {
  readonly election: string;
  constructor(election: string, detail: string) {
    super("ELECTION_NOT_LEADER", `not the leader of "${election}": ${detail}`);
    this.election = election;
  }
}

export interface SpecIssue {
  /** Dotted path of the field, e.g. "env.PATH" or "ram_mb". */
  field: string;
  message: string;
}

/** A star spec that is not valid: every problem found, each naming its field. */
export class InvalidSpecError extends ConstellationError {
  readonly issues: SpecIssue[];
  constructor(issues: SpecIssue[], what = "star spec") {
    super("RUNTIME_INVALID_SPEC", `invalid ${what}: ${issues.map((i) => (i.field ? `${i.field}: ${i.message}` : i.message)).join("; ")}`);
    this.issues = issues;
  }
}

export class CapacityExceededError extends ConstellationError {
  readonly field: string;
  readonly requested: number;
  readonly capacity: number;
  readonly unit: string;
  /** `largest`: of several nodes, the one with the most of it (none has enough). */
  constructor(field: string, requested: number, capacity: number, unit: string, largest?: string) {
    super("RUNTIME_CAPACITY_EXCEEDED", `${field} asks for ${requested} ${unit}, but ${largest ? `the largest node (${largest}) has` : "this node has"} ${capacity} ${unit}: ask for less`);
    this.field = field;
    this.requested = requested;
    this.capacity = capacity;
    this.unit = unit;
  }
}

/** The node cannot enforce a limit the spec asks for (no cgroups, not root, ...). */
export class LimitUnenforceableError extends ConstellationError {
  readonly limit: string;
  constructor(limit: string, missing: string) {
    super(
      "RUNTIME_LIMIT_UNENFORCEABLE",
      `cannot enforce ${limit} on this node: ${missing}. Fix that, or start the runtime in dev mode to run with limits not enforced`,
    );
    this.limit = limit;
  }
}

export class ScriptError extends ConstellationError {
  readonly script: string;
  constructor(script: string, message: string, cause?: unknown) {
    super("RUNTIME_SCRIPT_ERROR", `script ${script}: ${message}`, { cause });
    this.script = script;
  }
}

export class StarNotFoundError extends ConstellationError {
  readonly star: string;
  constructor(star: string) {
    super("RUNTIME_STAR_NOT_FOUND", `no star ${star} on this runtime`);
    this.star = star;
  }
}

export class StarExistsError extends ConstellationError {
  readonly star: string;
  constructor(star: string) {
    super("RUNTIME_STAR_EXISTS", `a star ${star} already exists on this runtime: pick another name or remove it first`);
    this.star = star;
  }
}

export class StartFailedError extends ConstellationError {
  readonly star: string;
  constructor(star: string, message: string, cause?: unknown) {
    super("RUNTIME_START_FAILED", `star ${star} failed to start: ${message}`, { cause });
    this.star = star;
  }
}

export class RuntimeUnavailableError extends ConstellationError {
  constructor(message: string, cause?: unknown) {
    super("RUNTIME_UNAVAILABLE", message, { cause });
  }
}

/** A request without a valid token. */
export class UnauthorizedError extends ConstellationError {
  constructor(message = "a valid token is needed: pass --token or set CONSTELLATION_TOKEN (see `constellation up`'s output)") {
    super("API_UNAUTHORIZED", message);
  }
}

/** A token whose scope does not allow the request. */
export class ForbiddenError extends ConstellationError {
  constructor(scope: string, needed: string) {
    super("API_FORBIDDEN", `this token's scope is ${scope}; this request needs ${needed}: use an admin token`);
  }
}

/** A spec field that only an admin token may set (seccomp "unconfined", mounts, root, runtime "isolate"). */
export class FieldForbiddenError extends ConstellationError {
  readonly field: string;
  constructor(field: string, scope: string, why: string) {
    super("API_FORBIDDEN", `${field}: ${why}; only an admin token of the whole cluster may ask for that (this token's scope is ${scope})`);
    this.field = field;
  }
}

/** A request that is not well-formed (bad JSON, wrong content type, unknown route). */
export class BadRequestError extends ConstellationError {
  readonly field?: string;
  constructor(message: string, field?: string) {
    super("API_BAD_REQUEST", message);
    if (field !== undefined) this.field = field;
  }
}

/** More of something at once than one caller may have (HTTP 429). */
export class TooManyError extends ConstellationError {
  readonly status = 429;
  constructor(message: string) {
    super("API_TOO_MANY", message);
  }
}

export class TooLargeError extends ConstellationError {
  constructor(limit: number) {
    super("API_TOO_LARGE", `the request body is over ${limit} bytes: send less (a spec is small; scripts travel by path)`);
  }
}

/** The constellation cannot be reached, or answered something that is not our API. */
export class ApiUnavailableError extends ConstellationError {
  constructor(message: string, cause?: unknown) {
    super("API_UNAVAILABLE", message, { cause });
  }
}

/** No star of that name in the constellation. */
export class NoSuchStarError extends ConstellationError {
  readonly star: string;
  constructor(star: string) {
    super("STAR_NOT_FOUND", `no star named ${star}: see \`constellation list\``);
    this.star = star;
  }
}

/** A star of that name exists already in the constellation. */
export class DuplicateStarError extends ConstellationError {
  readonly star: string;
  constructor(star: string) {
    super("STAR_EXISTS", `a star named ${star} exists already: pick another name, or remove it first (constellation rm ${star})`);
    this.star = star;
  }
}

/** A star's child asks for more than the star itself has (a child gets at most its parent's limits). */
export class ParentLimitError extends ConstellationError {
  readonly field: string;
  readonly parent: string;
  constructor(field: string, asked: string, parent: string, parentHas: string) {
    super(
      "STAR_OVER_PARENT_LIMIT",
      `${field} asks for ${asked}, but its parent star ${parent} has ${parentHas}: a star's children get at most the star's own limits; ask for at most that, or leave ${field} out to get the parent's`,
    );
    this.field = field;
    this.parent = parent;
  }
}

/**
 * The node has promised its memory to the stars that should run there (the sum of their memory
 * limits may be at most memoryOvercommit × its memory).
 */
export class NodeMemoryFullError extends ConstellationError {
  readonly field: string;
  readonly requestedMb: number;
  readonly usedMb: number;
  readonly leftMb: number;
  /** `detail`: say how much is promised and left (an admin may know the node's totals; a star's token may not). */
  constructor(field: string, node: string, requestedMb: number, usedMb: number, allowedMb: number, detail = true) {
    const leftMb = Math.max(0, allowedMb - usedMb);
    super(
      "NODE_MEMORY_FULL",
      detail
        ? `${field} asks for ${requestedMb} MB, but node ${node} has ${usedMb} of ${allowedMb} MB promised to the stars that should run there (${leftMb} MB left): ` +
            "stop or remove a star, or ask for less"
        : `${field} asks for ${requestedMb} MB, more than node ${node} has left to promise to the stars that should run there: stop or remove a star, or ask for less`,
    );
    this.field = field;
    this.requestedMb = requestedMb;
    this.usedMb = usedMb;
    this.leftMb = leftMb;
  }
}

/**
 * A tree of stars (an admin's star and every star below it, made by their tokens) may hold at
 * most so many stars and so many bytes of specs (docs/security.md "Quotas").
 */
export class QuotaExceededError extends ConstellationError {
  readonly field: string;
  constructor(what: "stars" | "spec bytes", root: string, has: number, limit: number) {
    super(
      "STAR_QUOTA_EXCEEDED",
      what === "stars"
        ? `the stars made from ${root} number ${has}, the most a tree of stars may hold (${limit}): remove some first`
        : `the specs of the stars made from ${root} would take ${has} bytes, more than a tree of stars may hold (${limit}): remove some first, or make specs smaller`,
    );
    this.field = what === "stars" ? "name" : "spec";
  }
}

/** The host has no room for a star's disk (`disk_mb`): its image could not be allocated. */
export class DiskFullError extends ConstellationError {
  constructor(mb: number, freeMb?: number) {
    const free = freeMb === undefined ? "" : `; ${freeMb} MB are free`;
    super("NODE_DISK_FULL", `the host has no room for this star's disk (${mb} MB for disk_mb and its filesystem${free}): free space on the node, or ask for a smaller disk_mb`);
  }
}

/** The store is empty, but the node has stars' files: it was lost or replaced (docs/reliability.md). */
export class StoreLostError extends ConstellationError {
  constructor(path: string, stars: number) {
    super(
      "STORE_LOST",
      `the store ${path} is missing or empty, but this node has the files of ${stars} star${stars === 1 ? "" : "s"}: ` +
        "the store was lost or replaced, and starting on it would end them. Restore store.db (with its -wal file) from a backup, " +
        "or start with --adopt to rebuild their records from this node (owners, events and other tokens are not rebuilt), " +
        "or with --reset to end and remove those stars",
    );
  }
}

/** No API token with that id (`constellation token ls` lists them). */
export class TokenNotFoundError extends ConstellationError {
  readonly id: string;
  constructor(id: string, what = "token", list = "constellation token ls") {
    super("TOKEN_NOT_FOUND", `no ${what} with id ${id}: see \`${list}\``);
    this.id = id;
  }
}

export class NodeNotFoundError extends ConstellationError {
  readonly node: string;
  constructor(node: string) {
    super("NODE_NOT_FOUND", `no node named ${node}: see \`constellation nodes\``);
    this.node = node;
  }
}

/** A namespace's quota cannot hold what is asked (create, start, deploy, scale). */
export class NamespaceQuotaError extends ConstellationError {
  readonly field: string;
  readonly namespace: string;
  constructor(namespace: string, problem: string, field = "namespace") {
    super("NAMESPACE_QUOTA_EXCEEDED", `${problem}: stop or remove some of its stars, or ask an admin to raise its quota (constellation quota set ${namespace} ...)`);
    this.field = field;
    this.namespace = namespace;
  }
}

export class PortInUseError extends ConstellationError {
  readonly port: number;
  constructor(name: string, port: number, node: string, byStar = false) {
    super(
      "PORT_IN_USE",
      port === 0
        ? `no free port is left for ${name} in node ${node}'s dynamic range: stop some stars there, or ask for a fixed port`
        : byStar
          ? `port ${name}=${port} is held by another star on node ${node} (fixed ports in 20000-31999 may meet the ones nodes give out): ask for another port (0: any free one)`
          : `port ${name}=${port} is in use on node ${node} by a program outside this star: free it there, or ask for another port (0: any free one)`,
    );
    this.port = port;
  }
}

export class NoSuchDeploymentError extends ConstellationError {
  readonly field = "name";
  constructor(name: string) {
    super("DEPLOYMENT_NOT_FOUND", `no deployment named ${callerText(name)}: see \`constellation deployments\``);
  }
}

export class NoSuchArtifactError extends ConstellationError {
  readonly field = "id";
  constructor(hex: string) {
    super("ARTIFACT_NOT_FOUND", `no artifact sha256:${callerText(hex)} in this cluster: upload it first (the SDK and CLI do when they deploy a script)`);
  }
}

export class TimeoutError extends ConstellationError {
  constructor(message: string) {
    super("TIMEOUT", message);
  }
}

export function isConstellationError(err: unknown): err is ConstellationError {
  return err instanceof ConstellationError || (err instanceof Error && (err as { isConstellationError?: unknown }).isConstellationError === true);
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
