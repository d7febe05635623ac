/**
 * One process that is a whole single-node constellation: the embedded store, the controller and
 * its HTTP API, and this node's agent with its runtimes (design.md §4: one binary, roles by flag).
 *
 * The data dir holds everything, so a restart keeps all state:
 *   store.db        the store (SQLite)            admin.token  the admin token (0600)
 *   node.json       what the node owns on the host: its id (cgroups constellation/<id>/<runtime>) and uid range
 *   runtime/        process runtime (stars)       endpoint     the API's URL, for the CLI
 *                                                 api.sock     the API for root (0600), no connection limit
 *   isolate/        isolate runtime
 *   cache/          bundled scripts (isolates)
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { availableParallelism, hostname, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { Agent } from "../agent/agent.js";
import { AgentService } from "../controller/agent-service.js";
import { InvalidArgumentError, RuntimeUnavailableError, StoreLostError } from "../model/errors.js";
import { lookupToken, newToken, saveToken } from "../controller/tokens.js";
import { buildApi } from "../api/server.js";
import { Controller, type TreeQuotas } from "../controller/controller.js";
import { type NodeRecord, PREFIX } from "../model/records.js";
import { IsolateRuntime } from "../runtime/isolate/isolate-runtime.js";
import { ProcessRuntime } from "../runtime/process/process-runtime.js";
import { nodeCgroupsBusy } from "../runtime/cgroup/detect.js";
import { claimNode } from "../runtime/node-claim.js";
import { adoptStars } from "./adopt.js";
import { DEFAULT_NODE_LIMITS, type NodeCapacity, type NodeLimits, type StarSpecInput } from "../model/spec.js";
import type { Runtime } from "../runtime/types.js";
import { openStore } from "../store/open.js";
import type { Store } from "../store/types.js";

/** The API's unix socket in the data dir (root's). */
export const API_SOCKET = "api.sock";

export interface SingleNodeOptions {
  dataDir: string;
  /** API port on 127.0.0.1 (0: any free port). */
  port?: number;
  host?: string;
  /** Run where limits cannot be enforced (not root); stars are marked "limits not enforced". */
  devMode?: boolean;
  /** This node's name (default: the host name, as a DNS label). */
  nodeName?: string;
  /** Stars' defaults and ceilings on this node, and memory overcommit (DEFAULT_NODE_LIMITS for the rest). */
  limits?: Partial<NodeLimits>;
  /** What a tree of stars may hold (TREE_QUOTAS for the rest). */
  quotas?: Partial<TreeQuotas>;
  /** Start even if the store is empty while stars' files are on this node: those stars are ended and removed. */
  reset?: boolean;
  /** Start even if the store is empty while stars' files are on this node: their records are rebuilt from them (adopt.ts). */
  adopt?: boolean;
}

/** The stars this node has files of (process and isolate runtimes), by directory. */
function starsOnDisk(dataDir: string): string[] {
  const out: string[] = [];
  for (const dir of [join(dataDir, "runtime", "stars"), join(dataDir, "isolate", "stars")]) {
    try {
      out.push(...readdirSync(dir));
    } catch {
      // none
    }
  }
  return out;
}

export interface SingleNode {
  url: string;
  /** The admin token (also in <dataDir>/admin.token). */
  token: string;
  dataDir: string;
  close(): Promise<void>;
}

export function nodeNameOf(name: string): string {
  const label = name.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63);
  return label || "node";
}

/** DEFAULT_NODE_LIMITS with `given` over them; a default over its ceiling is refused. */
export function nodeLimitsOf(given: Partial<NodeLimits> = {}): NodeLimits {
  const limits = { ...DEFAULT_NODE_LIMITS, ...given };
  for (const [d, max] of [["defaultPids", "maxPids"], ["defaultNofile", "maxNofile"]] as const) {
    if (limits[d] > limits[max]) throw new InvalidArgumentError(d, `${d} (${limits[d]}) is over ${max} (${limits[max]}): a star that asks for nothing would be refused; lower ${d} or raise ${max}`);
  }
  return limits;
}

export async function startSingleNode(options: SingleNodeOptions): Promise<SingleNode> {
  const dataDir = resolve(options.dataDir);
  // 0711: stars (other users) pass through to their own directories but cannot list it; the
  // store (which holds stars' env) and the admin token are 0600.
  mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  chmodSync(dataDir, 0o711);
  const dbPath = join(dataDir, "store.db");
  closeSync(openSync(dbPath, "a", 0o600)); // SQLite gives its -wal and -shm files the db's mode
  for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
  const store = await openStore({ backend: "sqlite", path: dbPath });
  // Recovery from facts, never from absence: a store with nothing in it on a node that has stars'
  // files was lost or replaced, and starting on it would end every star (issue 9).
  if (options.reset === true && options.adopt === true) {
    await store.close();
    throw new InvalidArgumentError("adopt", "--adopt keeps the node's stars and --reset removes them: give one of them");
  }
  const known = starsOnDisk(dataDir);
  const lost = known.length > 0 && (await store.range({ prefix: PREFIX }, { countOnly: true })).count === 0;
  if (lost && options.reset !== true && options.adopt !== true) {
    await store.close();
    throw new StoreLostError(dbPath, known.length);
  }
  const closers: Array<() => Promise<void>> = [() => store.close()];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    const token = await adminToken(store, dataDir);
    const devMode = options.devMode === true;
    // The runtimes and the controller apply the same defaults and ceilings.
    const capacity: Required<Omit<NodeCapacity, "diskBytes">> = { cpuCores: availableParallelism(), memoryBytes: totalmem(), limits: nodeLimitsOf(options.limits) };
    // What this node owns on the host (cgroups, uids) is named by it: node.json (issue 9).
    const root = process.getuid?.() === 0;
    const claim = claimNode(dataDir, root ? { busy: (id) => nodeCgroupsBusy(id) } : { registry: null });
    // Stars see none of the data dir (the store, the admin token, other stars' files).
    const process_ = await ProcessRuntime.create({ dataDir: join(dataDir, "runtime"), devMode, hide: [dataDir], capacity, claim });
    const runtimes: Partial<Record<"process" | "isolate", Runtime>> = { process: process_ };
    closers.push(() => process_.close());
    if (!devMode) {
      const isolate = await IsolateRuntime.create({ dataDir: join(dataDir, "isolate"), capacity, claim }).catch(() => undefined);
      if (isolate) {
        runtimes.isolate = isolate;
        closers.push(() => isolate.close());
      }
    }
    const node: NodeRecord = {
      name: options.nodeName ?? nodeNameOf(hostname()),
      ...capacity,
      runtimes: Object.keys(runtimes),
      limitsEnforced: !devMode,
      startedAt: Date.now(),
    };
    // The node checks what it would refuse at start (mounts, root, enforceable limits) at create.
    const validate = async (spec: StarSpecInput, o: { trusted: boolean }) => {
      const kind = (spec as { runtime?: "process" | "isolate" }).runtime ?? "process";
      await runtimes[kind]?.validate(spec, o);
    };
    // The store was lost and the operator said --adopt: the node's stars become its records again.
    if (lost && options.adopt === true) await adoptStars(store, node.name, Object.values(runtimes));
    const controller = new Controller({ store, validate, ...(options.quotas ? { quotas: options.quotas } : {}) });
    const served: { url?: string } = {}; // known once the API listens
    const agent = new Agent({ link: new AgentService(store, node.name), node, runtimes, endpoint: () => served.url });
    const api = await buildApi({ store, controller, node: agent });
    closers.push(() => api.close());
    // Listen first: stars started from here on get the API's URL (and a token) in their env.
    const port = options.port ?? 7070;
    let address: string;
    try {
      // Port 0 (any free port): the one of the last start if it is free, so the stars that run
      // on (their CONSTELLATION_ENDPOINT) still reach the API after a restart.
      const last = port === 0 ? lastPort(dataDir) : undefined;
      const host = options.host ?? "127.0.0.1";
      address = last === undefined ? await api.listen({ port, host }) : await api.listen({ port: last, host }).catch(() => api.listen({ port, host }));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE") throw new RuntimeUnavailableError(`port ${port} is in use (another constellation up?): stop it, or pass --port N (0: any free port)`);
      if (code === "EACCES") throw new RuntimeUnavailableError(`no permission to listen on port ${port}: use a port above 1023`);
      throw err;
    }
    const url = address.replace("[::1]", "127.0.0.1");
    served.url = url;
    // The operator's own way in (the CLI and SDK use it from the data dir when they may).
    const socket = join(dataDir, API_SOCKET);
    if (Buffer.byteLength(socket) < 100) await api.listenUnix(socket);
    else process.emitWarning(`constellation: ${socket} is too long for a unix socket; the CLI will use ${url}`);
    await agent.start();
    closers.push(() => agent.stop());
    controller.start();
    closers.push(() => controller.stop());
    writeFileSync(join(dataDir, "endpoint"), `${url}\n`, { mode: 0o644 });
    return { url, token, dataDir, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The API's port at the data dir's last start (its `endpoint` file), if any. */
function lastPort(dataDir: string): number | undefined {
  try {
    const port = Number(new URL(readFileSync(join(dataDir, "endpoint"), "utf8").trim()).port);
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The admin token: made on the first start (0600 in the data dir), the same ever after — unless
 * it was revoked (`constellation token rm`): then a new one replaces it in the file.
 */
async function adminToken(store: Store, dataDir: string): Promise<string> {
  const file = join(dataDir, "admin.token");
  if (existsSync(file)) {
    const token = readFileSync(file, "utf8").trim();
    if (await lookupToken(store, token)) return token;
    // Not in the store: a new, empty store (keep the file's token), or revoked (make a new one).
    const { count } = await store.range({ prefix: PREFIX }, { countOnly: true });
    if (count === 0) {
      await saveToken(store, token, "admin", "admin");
      return token;
    }
  }
  const token = newToken();
  await saveToken(store, token, "admin", "admin");
  writeFileSync(`${file}.tmp`, `${token}\n`, { mode: 0o600 });
  chmodSync(`${file}.tmp`, 0o600);
  renameSync(`${file}.tmp`, file);
  return token;
}
