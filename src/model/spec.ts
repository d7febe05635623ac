/**
 * The star spec: what a user asks for, checked with one zod schema (types, validation and
 * readable errors from one place), then normalized into the limits a runtime enforces.
 * Field names keep the seed's spelling (cpu_percent, ram_mb, ...).
 */
import { z } from "zod";
import { CapacityExceededError, InvalidSpecError, callerText, unknownKeys } from "./errors.js";
import { constraintProblem, placementSchema } from "./placement.js";
import { PORT_NAME } from "./names.js";


/** A DNS label (RFC 1123): the star's name is also its hostname. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Sizes a spec may have (docs/security.md): a string of argv or environment at most the kernel's
 * MAX_ARG_STRLEN, paths at most PATH_MAX, lists short enough that checking one is cheap, and all
 * of argv and environment together well under what execve takes. A spec is in the store as long
 * as its star is; these keep one star from filling it.
 */
export const SPEC_SIZES = {
  /** Bytes of one argument or environment value. */
  string: 128 * 1024,
  /** Bytes of a path (script, cwd, root, mounts). */
  path: 4096,
  /** Items of command and of args. */
  items: 16_384,
  /** Entries of env (the launcher passes at most 1,024 variables, a few of them its own). */
  envEntries: 1000,
  /** Bytes of command, args and env together. */
  total: 512 * 1024,
} as const;

/** The least memory and disk a star may ask for (docs/api.md). */
export const MIN_RAM_MB = 4;
export const MIN_DISK_MB = 8;

/** Issues reported for one bad spec at most (the rest are counted). */
export const MAX_ISSUES = 20;

/** Any text that reaches a program's argv or environment: no NUL bytes (they would split it). */
const text = (what: string, max: number = SPEC_SIZES.string) =>
  z
    .string()
    .max(max, `${what} must be at most ${max} bytes`)
    .refine((v) => !v.includes("\0"), `${what} must not contain NUL bytes`);

const list = (what: string) => z.array(text(what)).max(SPEC_SIZES.items, `${what} must have at most ${SPEC_SIZES.items} items`);

/**
 * Lists too long to check item by item, found before the schema runs: a 1 MB body of 500,000
 * bad arguments is one issue, not 500,000.
 */
function tooLong(input: unknown): InvalidSpecError | undefined {
  if (typeof input !== "object" || input === null) return undefined;
  const o = input as Record<string, unknown>;
  const health = o.health as Record<string, unknown> | undefined;
  const lists: Array<[string, unknown, number?]> = [
    ["command", o.command],
    ["args", o.args],
    ["health.command", typeof health === "object" && health !== null ? health.command : undefined],
    ["env", typeof o.env === "object" && o.env !== null && !Array.isArray(o.env) ? Object.keys(o.env) : undefined, SPEC_SIZES.envEntries],
    ["mounts", o.mounts],
  ];
  const issues = lists
    .filter(([, v, max]) => Array.isArray(v) && v.length > (max ?? SPEC_SIZES.items))
    .map(([field, , max]) => ({ field, message: `${field} must have at most ${max ?? SPEC_SIZES.items} ${field === "env" ? "entries" : "items"}` }));
  // Lists of text with bad items: the first one, and how many (not an issue each).
  const wrong = (x: unknown) =>
    typeof x !== "string" ? "must be strings" : x.length > SPEC_SIZES.string ? `must be at most ${SPEC_SIZES.string} bytes each` : x.includes("\0") ? "must not contain NUL bytes" : undefined;
  const env = typeof o.env === "object" && o.env !== null && !Array.isArray(o.env) ? (o.env as Record<string, unknown>) : undefined;
  const texts: Array<[string, unknown[] | undefined, (i: number) => string]> = [
    ...lists.slice(0, 3).map(([field, v]): [string, unknown[] | undefined, (i: number) => string] => [field, Array.isArray(v) ? v : undefined, (i) => `${field}.${i}`]),
    ["env values", env && Object.values(env), (i) => `env.${Object.keys(env!)[i]}`],
  ];
  for (const [what, v, at] of texts) {
    if (!v || v.length > SPEC_SIZES.items || (what === "env values" && v.length > SPEC_SIZES.envEntries)) continue;
    let first = -1;
    let bad = 0;
    for (let i = 0; i < v.length; i++) {
      if (wrong(v[i]) === undefined) continue;
      bad++;
      if (first < 0) first = i;
    }
    if (bad > 1) issues.push({ field: at(first), message: `${what} ${wrong(v[first])} (${bad} items are not right)` });
  }
  return issues.length > 0 ? new InvalidSpecError(issues) : undefined;
}
const positive = (what: string) => z.number({ error: `${what} must be a number` }).positive(`${what} must be greater than 0`);

/**
 * A health check: `failure_threshold` failures in a row make the star not ready,
 * `success_threshold` successes make it ready again; `kill_after` failures in a row (0: never)
 * end the run, which then restarts by its restart policy (Kubernetes' liveness probe).
 */
const probeTiming = {
  interval_ms: z.number().int().min(50).default(1000),
  timeout_ms: z.number().int().min(10).default(1000),
  failure_threshold: z.number().int().min(1).default(3),
  success_threshold: z.number().int().min(1).default(1),
  kill_after: z.number().int().min(0).default(0),
};
/** A check's port: a number, or the name of one of the star's ports (the one its node gave it). */
const checkPort = z.union([z.number().int().min(1).max(65535), z.string().regex(PORT_NAME, "port is 1..65535 or the name of one of the star's ports")]);
const healthCheck = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("http"),
    port: checkPort,
    path: z.string().max(SPEC_SIZES.path, `path must be at most ${SPEC_SIZES.path} bytes`).startsWith("/", "path must start with /").default("/"),
    ...probeTiming,
  }),
  z.strictObject({
    type: z.literal("tcp"),
    port: checkPort,
    ...probeTiming,
  }),
  z.strictObject({
    type: z.literal("exec"),
    command: list("command").min(1, "command must name a program"),
    ...probeTiming,
  }),
]);
export type HealthCheck = z.output<typeof healthCheck>;

// Below these a limit means nothing the kernel can enforce (a 1 ms CPU quota per 100 ms
// period, a few pages of memory, a filesystem with room for its own metadata).
const resourceFields = {
  cpu_percent: positive("cpu_percent").min(1, "cpu_percent must be at least 1 (1 % of a core)").max(100_000).optional(),
  cpu_cores: positive("cpu_cores").min(0.01, "cpu_cores must be at least 0.01").max(1024).optional(),
  ram_mb: positive("ram_mb").min(MIN_RAM_MB, `ram_mb must be at least ${MIN_RAM_MB}`).optional(),
  ram_gb: positive("ram_gb").min(MIN_RAM_MB / 1024, `ram_gb must be at least ${MIN_RAM_MB / 1024} (${MIN_RAM_MB} MB)`).optional(),
  disk_mb: positive("disk_mb").min(MIN_DISK_MB, `disk_mb must be at least ${MIN_DISK_MB}`).optional(),
  /** Processes and threads at most (default: the node's, 256 unless configured). */
  pids: z.number().int().min(1).max(4_194_304).optional(),
};
type ResourceField = keyof typeof resourceFields;

export const starSpecSchema = z
  .strictObject({
    name: z.string().regex(DNS_LABEL, "name must be a DNS label: 1-63 lowercase letters, digits or '-', not starting or ending with '-'"),
    script: text("script", SPEC_SIZES.path).pipe(z.string().min(1, "script must be a path")).optional(),
    /**
     * The script's code as uploaded to the cluster (`sha256:<hex>`, model/artifact.ts): its node
     * fetches it by that hash and runs it; `script` is then only its name (the SDK and CLI set
     * both when they package a script).
     */
    artifact: z.string().regex(/^sha256:[0-9a-f]{64}$/, "artifact is sha256:<64 lowercase hex digits>").optional(),
    command: list("command").min(1, "command must name a program").optional(),
    args: list("args").default([]),
    env: z
      .record(
        z.string().max(SPEC_SIZES.path).regex(ENV_NAME, "environment variable names are letters, digits and _, not starting with a digit"),
        text("env values"),
      )
      .default({}),
    cwd: text("cwd", SPEC_SIZES.path).optional(),
    runtime: z.enum(["process", "isolate"]).default("process"),
    ...resourceFields,
    /** The same limits in the seed's other spelling: `resources: { cpu_cores: 2, ram_gb: 4 }` (one place for each). */
    resources: z.strictObject(resourceFields).optional(),
    /** Open files per process (RLIMIT_NOFILE; default: the node's, 1024 unless configured). */
    nofile: z.number().int().min(16).max(1_048_576).optional(),
    restart: z.enum(["never", "on-failure", "always"]).default("never"),
    backoff_ms: z.number().int().min(0).default(100),
    max_backoff_ms: z.number().int().min(0).default(30_000),
    /** At most this many restarts within `restart_window_s`; then the star is left failed. */
    max_restarts: z.number().int().min(0).default(10),
    restart_window_s: z.number().int().min(1).default(60),
    stop_grace_ms: z.number().int().min(0).max(3_600_000).default(10_000),
    /**
     * At most once (docs/cluster.md): a node cut off from its controller stops the star as soon
     * as its lease may have expired, and the controller runs it elsewhere only once that lease
     * and the star's stop have surely passed — never two copies at any moment (default: false,
     * availability first: a cut-off node's copy runs on until it is back).
     */
    exclusive: z.boolean().default(false),
    network: z.enum(["host", "none"]).default("host"),
    /**
     * Named ports (`{ http: 0 }`: any free port the node picks; `{ http: 8080 }`: that one),
     * given to the star as PORT_<NAME> (and PORT: the first) and shown by inspect; a fixed port
     * another star holds on a node rules that node out (docs/cluster.md § Ports).
     */
    ports: z
      .record(
        z.string(),
        z.number().int("a port is a whole number").min(0, "a port is 1..65535, or 0 for any free port").max(65535, "a port is 1..65535, or 0 for any free port"),
      )
      .refine((p) => Object.keys(p).length <= 16, "at most 16 ports")
      .optional(),
    /** Each log file (stdout, stderr) is rotated at this size... */
    log_max_mb: z.number().positive("log_max_mb must be greater than 0").max(102_400).default(10),
    /** ...and at most this many files are kept per stream (the current one included). */
    log_max_files: z.number().int().min(1).max(100).default(3),
    health: healthCheck.optional(),
    /**
     * More of the host on purpose: `host` (an absolute path that exists) appears at `path`
     * (default: the same path) in the star, read-only unless `readonly: false`.
     */
    mounts: z
      .array(
        z.strictObject({
          host: text("mounts.host", SPEC_SIZES.path).refine((v) => v.startsWith("/"), "host must be an absolute path"),
          path: text("mounts.path", SPEC_SIZES.path).refine((v) => v.startsWith("/"), "path must be an absolute path").optional(),
          readonly: z.boolean().default(true),
        }),
      )
      .max(32, "at most 32 mounts")
      .default([]),
    /** Run in this root filesystem (a directory holding the program) instead of the host's tree. */
    root: text("root", SPEC_SIZES.path).refine((v) => v.startsWith("/"), "root must be an absolute path").optional(),
    /**
     * The system call filter: "default" blocks what containers must not do (new user
     * namespaces, mount, keyctl, bpf, ptrace, ...); "unconfined" turns it off (admin tokens only).
     */
    seccomp: z.enum(["default", "unconfined"]).default("default"),
    /** Its namespace (default "default"; a namespace's token: its own): who may see and touch it, and whose quota it counts against. */
    namespace: z.string().regex(DNS_LABEL, "namespace must be a DNS label (lowercase letters, digits, '-'), e.g. team-a").optional(),
    /** Where it may and would rather run (model/placement.ts): strategy, spread_by, constraints, affinities. */
    placement: placementSchema.optional(),
    /**
     * 0..100 (default 50): when no node has room for it, stars of lower priority are stopped
     * and placed again elsewhere to make room (docs/cluster.md § Priorities and preemption).
     */
    priority: z.number().int("priority must be a whole number").min(0, "priority is 0..100").max(100, "priority is 0..100").optional(),
  })
  .superRefine((given, ctx) => {
    // Each limit in one place: at the top, or in resources.
    for (const k of Object.keys(given.resources ?? {}) as ResourceField[]) {
      if (given[k] !== undefined) ctx.addIssue({ code: "custom", path: ["resources", k], message: `${k} is given twice: at the top and in resources; give it once` });
    }
    const s = { ...given, ...given.resources };
    for (const [list, i, c] of [...(s.placement?.constraints ?? []).map((c, i) => ["constraints", i, c] as const), ...(s.placement?.affinities ?? []).map((c, i) => ["affinities", i, c] as const)]) {
      const problem = constraintProblem(c);
      if (problem) ctx.addIssue({ code: "custom", path: ["placement", list, i, "value"], message: problem });
    }
    if (s.placement?.spread_by !== undefined && s.placement.strategy !== "spread") {
      ctx.addIssue({ code: "custom", path: ["placement", "spread_by"], message: "spread_by goes with strategy spread" });
    }
    if (s.artifact !== undefined && s.script === undefined) {
      ctx.addIssue({ code: "custom", path: ["artifact"], message: "artifact goes with script (the name of the script it was bundled from)" });
    }
    if ((s.script === undefined) === (s.command === undefined)) {
      ctx.addIssue({ code: "custom", path: ["script"], message: "give exactly one of script (a .js/.mjs/.ts file) or command" });
    }
    if (s.cpu_percent !== undefined && s.cpu_cores !== undefined) {
      ctx.addIssue({ code: "custom", path: ["cpu_cores"], message: "give cpu_percent or cpu_cores, not both" });
    }
    if (s.ram_mb !== undefined && s.ram_gb !== undefined) {
      ctx.addIssue({ code: "custom", path: ["ram_gb"], message: "give ram_mb or ram_gb, not both" });
    }
    if (s.health && s.health.type !== "exec" && s.network === "none") {
      ctx.addIssue({ code: "custom", path: ["health", "type"], message: "http and tcp checks need network host (the agent cannot reach a star with network none): use an exec check" });
    }
    if (s.ports !== undefined && Object.keys(s.ports).length > 0 && s.network === "none") {
      ctx.addIssue({ code: "custom", path: ["ports"], message: "ports need network host (a star with network none cannot be reached on one)" });
    }
    for (const name of Object.keys(s.ports ?? {})) {
      if (!PORT_NAME.test(name)) ctx.addIssue({ code: "custom", path: ["ports", name], message: `a port's name is lowercase letters, digits and '-', starting with a letter, at most 15 characters (e.g. http), got ${JSON.stringify(name.slice(0, 40))}` });
    }
    if (s.health && s.health.type !== "exec" && typeof s.health.port === "string" && s.ports?.[s.health.port] === undefined) {
      ctx.addIssue({ code: "custom", path: ["health", "port"], message: `the health check's port ${s.health.port} is none of the star's ports: name one of ports (${Object.keys(s.ports ?? {}).join(", ") || "it has none"}) or give a number` });
    }
    const fixed = Object.entries(s.ports ?? {}).filter(([, p]) => p !== 0);
    for (const [i, [name, p]] of fixed.entries()) {
      const first = fixed.findIndex(([, q]) => q === p);
      if (first < i) ctx.addIssue({ code: "custom", path: ["ports", name], message: `port ${p} is given twice (${fixed[first]![0]} and ${name}); give each a port of its own` });
    }
    if (s.root !== undefined && s.runtime !== "process") {
      ctx.addIssue({ code: "custom", path: ["root"], message: "root is for process stars (isolates run in the node's isolate host)" });
    }
    const bytes = (xs: readonly string[]) => xs.reduce((n, x) => n + Buffer.byteLength(x) + 1, 0);
    const checkArgv = s.health?.type === "exec" ? s.health.command : [];
    const total = bytes(s.command ?? []) + bytes(s.args) + bytes(Object.entries(s.env).map(([k, v]) => `${k}=${v}`)) + bytes(checkArgv);
    if (total > SPEC_SIZES.total) {
      ctx.addIssue({ code: "custom", path: ["args"], message: `command, args, env and the health check's command take ${total} bytes together; at most ${SPEC_SIZES.total}: pass large data in a file` });
    }
    if (s.max_backoff_ms < s.backoff_ms) {
      ctx.addIssue({ code: "custom", path: ["max_backoff_ms"], message: "max_backoff_ms must be at least backoff_ms" });
    }
  })
  // One spelling from here on: the limits at the top.
  .transform(({ resources, ...s }) => ({ ...s, ...resources }));

/**
 * A spec's limits in one spelling, as it is stored: those given in `resources: {...}` lifted to
 * the top (a valid spec only; anything else is returned as it is, for parseStarSpec to refuse).
 */
export function withLimitsAtTop(input: StarSpecInput): StarSpecInput {
  const { resources, ...rest } = input;
  if (resources === undefined) return input;
  return { ...rest, ...resources };
}

/** What a user writes (before defaults). */
export type StarSpecInput = z.input<typeof starSpecSchema>;
/** A valid spec with defaults filled in. */
export type StarSpec = z.output<typeof starSpecSchema>;

/** The limits a runtime enforces, in kernel units. Absent: unlimited. */
export interface Limits {
  /** CPU in millicores: 1000 = one core (cpu_percent 25 → 250). */
  cpuMillis?: number;
  memoryBytes?: number;
  diskBytes?: number;
  pids: number;
  /** RLIMIT_NOFILE of the star's processes. */
  nofile?: number;
}

/**
 * A node's defaults and ceilings (docs/security.md): what a star gets when its spec is silent,
 * and the most it may ask for. Memory is always limited: a star without ram_mb gets
 * `defaultRamMb`, not the whole machine.
 */
export interface NodeLimits {
  defaultRamMb: number;
  /**
   * disk_mb of a star that asks for none (a filesystem of its own, ~50 ms more at its first
   * start); absent: such a star writes to the node's disk unbounded, as in Kubernetes without an
   * ephemeral-storage limit (docs/security.md "Disk").
   */
  defaultDiskMb?: number;
  defaultPids: number;
  maxPids: number;
  defaultNofile: number;
  maxNofile: number;
  /** Most a star's logs may take: 2 streams × log_max_mb × log_max_files. */
  maxLogMb: number;
  /** The node refuses stars whose memory would sum past this × its memory (1.0: no overcommit). */
  memoryOvercommit: number;
}

export const DEFAULT_NODE_LIMITS: NodeLimits = {
  defaultRamMb: 512,
  defaultPids: 256,
  maxPids: 4096,
  defaultNofile: 1024,
  maxNofile: 65_536,
  maxLogMb: 1024,
  memoryOvercommit: 1.0,
};

export interface NodeCapacity {
  cpuCores: number;
  memoryBytes: number;
  /** Free disk for star directories, if known. */
  diskBytes?: number;
  /** Defaults and ceilings (DEFAULT_NODE_LIMITS when absent). */
  limits?: NodeLimits;
}

/** Parses and checks a spec; throws InvalidSpecError naming every bad field. */
export function parseStarSpec(input: unknown): StarSpec {
  const long = tooLong(input);
  if (long) throw long;
  // A key "__proto__" in a map the schema checks is dropped by it unseen, but stays in what is
  // stored and sent to the node: refused as the name it is not.
  for (const field of ["env", "ports"] as const) {
    const m = (input as Record<string, unknown> | null)?.[field];
    if (m !== null && typeof m === "object" && Object.prototype.hasOwnProperty.call(m, "__proto__")) {
      throw new InvalidSpecError([{ field: `${field}.__proto__`, message: `__proto__ is not a ${field === "env" ? "variable" : "port"} name` }]);
    }
  }
  const res = starSpecSchema.safeParse(input);
  if (res.success) return res.data;
  const all = res.error.issues;
  const more = all.length > MAX_ISSUES ? [{ field: "", message: `and ${all.length - MAX_ISSUES} more problems` }] : [];
  throw new InvalidSpecError([
    ...all.slice(0, MAX_ISSUES).map((issue) => {
      const field = issue.path.map(String).join(".");
      if (issue.code === "unrecognized_keys") {
        // Keys as the caller sent them, but a few and short: they are the caller's text.
        const keys = (issue as { keys: string[] }).keys;
        return { field: callerText([field, keys[0]].filter(Boolean).join(".")), message: `unknown field${keys.length > 1 ? "s" : ""} ${unknownKeys(keys)}` };
      }
      return { field: callerText(field), message: issue.message };
    }),
    ...more,
  ]);
}

/** The fields of a spec that say what it takes of a node's CPU and memory. */
export type Footprint = Pick<StarSpec, "cpu_cores" | "cpu_percent" | "ram_mb" | "ram_gb">;

/** The CPU a spec asks for, in thousandths of a core (undefined: no limit). */
export function cpuMillisOf(spec: Footprint): number | undefined {
  if (spec.cpu_cores !== undefined) return Math.round(spec.cpu_cores * 1000);
  if (spec.cpu_percent !== undefined) return Math.round(spec.cpu_percent * 10);
  return undefined;
}

/** The memory a spec asks for, in bytes, with the node's default when it says none. */
export function memoryBytesOf(spec: Footprint, node: Pick<NodeLimits, "defaultRamMb"> = DEFAULT_NODE_LIMITS): number {
  if (spec.ram_gb !== undefined) return Math.round(spec.ram_gb * 2 ** 30);
  if (spec.ram_mb !== undefined) return Math.round(spec.ram_mb * 2 ** 20);
  return Math.round(node.defaultRamMb * 2 ** 20);
}

/**
 * The spec's limits in kernel units, with the node's defaults for what the spec leaves out,
 * checked against the node's capacity and ceilings (CapacityExceededError naming the field).
 */
export function limitsOf(spec: StarSpec, capacity?: NodeCapacity): Limits {
  const node = capacity?.limits ?? DEFAULT_NODE_LIMITS;
  const nofile = spec.nofile ?? node.defaultNofile;
  const limits: Limits = { pids: spec.pids ?? node.defaultPids, nofile };
  const cpuMillis = cpuMillisOf(spec);
  if (cpuMillis !== undefined) limits.cpuMillis = cpuMillis;
  limits.memoryBytes = memoryBytesOf(spec, node);
  const diskMb = spec.disk_mb ?? node.defaultDiskMb;
  if (diskMb !== undefined) limits.diskBytes = Math.round(diskMb * 2 ** 20);
  if (limits.pids > node.maxPids) throw new CapacityExceededError("pids", limits.pids, node.maxPids, "processes (the node's ceiling)");
  if (nofile > node.maxNofile) throw new CapacityExceededError("nofile", nofile, node.maxNofile, "open files (the node's ceiling)");
  const logMb = 2 * spec.log_max_mb * spec.log_max_files;
  if (logMb > node.maxLogMb) {
    throw new CapacityExceededError("log_max_mb", logMb, node.maxLogMb, "MB of logs (2 streams × log_max_mb × log_max_files; the node's ceiling)");
  }
  if (capacity) {
    if (limits.cpuMillis !== undefined && limits.cpuMillis > capacity.cpuCores * 1000) {
      const field = spec.cpu_cores !== undefined ? "cpu_cores" : "cpu_percent";
      const [req, cap, unit] =
        field === "cpu_cores" ? [spec.cpu_cores!, capacity.cpuCores, "cores"] : [spec.cpu_percent!, capacity.cpuCores * 100, "% of a core"];
      throw new CapacityExceededError(field, req, cap, unit);
    }
    if (limits.memoryBytes > capacity.memoryBytes) {
      const mb = Math.floor(capacity.memoryBytes / 2 ** 20);
      throw new CapacityExceededError(spec.ram_gb !== undefined ? "ram_gb" : "ram_mb", Math.round(limits.memoryBytes / 2 ** 20), mb, "MB");
    }
    if (limits.diskBytes !== undefined && capacity.diskBytes !== undefined && limits.diskBytes > capacity.diskBytes) {
      throw new CapacityExceededError("disk_mb", diskMb!, Math.floor(capacity.diskBytes / 2 ** 20), "MB free");
    }
  }
  return limits;
}
