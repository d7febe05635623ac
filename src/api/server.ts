/**
 * The HTTP JSON API (node:http with a small router, router.ts). Every route but /v1/health needs a token (Authorization: Bearer);
 * a `read` token may only GET; a star's token sees only its own star and its descendants; only
 * admin tokens see env values and manage tokens. Errors are JSON
 * `{ error: { code, message, field?, issues? } }` with a 4xx status for anything the caller can
 * fix — never a stack trace. Routes and rules: docs/api.md.
 */
import type { ServerResponse } from "node:http";
import {
  BadRequestError,
  ForbiddenError,
  NoSuchArtifactError,
  type ErrorCode,
  InvalidArgumentError,
  InvalidSpecError,
  TokenNotFoundError,
  TooManyError,
  UnauthorizedError,
  isConstellationError,
} from "../model/errors.js";
import type { NodeLink } from "../model/agent-link.js";
import type { Controller } from "../controller/controller.js";
import { eventOf } from "../controller/events.js";
import { type Event, KEYS, type Principal, type StarRecord, type StarView, namespaceOf, starKey } from "../model/records.js";
import { scopeText } from "../controller/controller.js";
import type { Store } from "../store/types.js";
import { TOKEN_ID_LENGTH, listTokens, lookupToken, newToken, revokeToken, saveToken, tokenKey } from "../controller/tokens.js";
import { type ApiTls, type Request, Router } from "./router.js";
import { createJoinToken, listJoinTokens, revokeJoinToken } from "../cluster/join.js";
import { gossipKeyId } from "../cluster/gossip/keyring.js";
import { ensureGossipKeyring, findGossipKey, installGossipKey, removeGossipKey, useGossipKey, viewKeyring } from "../controller/gossip-keys.js";
import type {
  STAR_FIELDS} from "./schemas.js";
import {
  createBody,
  eventsQuery,
  listQuery,
  logsQuery,
  nameParams,
  noQuery,
  parse,
  removeQuery,
  gossipKeyBody,
  gossipUseBody,
  joinTokenBody,
  tokenBody,
  quotaBody,
  deployBody,
  scaleBody,
  undoBody,
  artifactParams,
  artifactChunkParams,
  artifactChunkBody,
  artifactCommitBody,
  tokenParams,
  waitQuery,
} from "./schemas.js";

export interface ApiOptions {
  store: Store;
  controller: Controller;
  /** This node's agent, for logs and usage (one node for now). */
  node: NodeLink;
  /** When this constellation is a cluster: its CA's certificate (join tokens name it) and where nodes join (HOST:PORT). */
  cluster?: {
    caCert: string;
    address(): string;
    disconnect?(node: string): void;
    node?: string;
    api?(): string | undefined;
    /** The members this controller's gossip knows alive or suspect, and the keyring version each holds. */
    gossipMembers?(): Array<{ node: string; keys?: number }>;
    /** An HA cluster's controllers running now, and which one leads the loops (absent: this one alone). */
    controllers?(): Promise<Array<{ node: string; address: string; api?: string; leads: boolean }>>;
  };
  /** The controller's own node (it cannot be revoked). */
  ownNode?: string;
  /** Connections at once, and how long headers may take (tests shorten them). */
  connections?: { max?: number; headersTimeoutMs?: number };
}

export const BODY_LIMIT = 1024 * 1024;
/**
 * What callers other than admins may hold open at once (log and event streams, waits): per
 * holder — a read token, or a tree of stars (an admin's star and all below it share one share,
 * whatever tokens they use) — and in all.
 */
export const OPEN_REQUESTS = { perToken: 8, total: 64 };
/** Requests being served at once for callers other than admins: per holder (as OPEN_REQUESTS), and in all. */
export const REQUESTS_IN_FLIGHT = { perToken: 16, total: 128 };
/** Bytes of request bodies read at once for callers other than admins. */
export const BODY_BUDGET = 32 * BODY_LIMIT;
/** How often an open stream's token is checked again (a revoked or expired token's streams end). */
export const STREAM_RECHECK_MS = 2000;
/** The longest wait a caller other than an admin may ask for. */
export const MAX_WAIT_MS = 120_000;
/** A page of a list ends once its stars take this much JSON (with at least one star). */
export const PAGE_BYTES = 4 * BODY_LIMIT;

/**
 * Counts what each caller holds open; take() throws TooManyError past the limits. Admin tokens
 * are not counted: stars (their tokens) cannot lock the operator out.
 */
function openLimiter(limits: { perToken: number; total: number }, what: string) {
  const held = new Map<string, number>();
  let total = 0;
  return {
    take(who: string, mineAre: string): () => void {
      const mine = held.get(who) ?? 0;
      if (mine >= limits.perToken) throw new TooManyError(`${mineAre} ${mine} ${what} at once (at most ${limits.perToken}): wait for some to end first`);
      if (total >= limits.total) throw new TooManyError(`the node has ${total} ${what} at once for tokens other than admins' (at most ${limits.total}): try again shortly`);
      held.set(who, mine + 1);
      total++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        total--;
        const left = (held.get(who) ?? 1) - 1;
        if (left > 0) held.set(who, left);
        else held.delete(who);
      };
    },
  };
}

const STATUS: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  API_BAD_REQUEST: 400,
  RUNTIME_INVALID_SPEC: 400,
  RUNTIME_SCRIPT_ERROR: 400,
  RUNTIME_CAPACITY_EXCEEDED: 422,
  RUNTIME_LIMIT_UNENFORCEABLE: 422,
  API_UNAUTHORIZED: 401,
  API_FORBIDDEN: 403,
  STAR_NOT_FOUND: 404,
  NODE_NOT_FOUND: 404,
  DEPLOYMENT_NOT_FOUND: 404,
  ARTIFACT_NOT_FOUND: 404,
  TOKEN_NOT_FOUND: 404,
  STAR_EXISTS: 409,
  STAR_OVER_PARENT_LIMIT: 422,
  NODE_MEMORY_FULL: 422,
  NODE_DISK_FULL: 422,
  STAR_QUOTA_EXCEEDED: 422,
  NAMESPACE_QUOTA_EXCEEDED: 422,
  TIMEOUT: 408,
  API_TOO_LARGE: 413,
  STORE_CLOSED: 503,
  STORE_UNAVAILABLE: 503,
};

/**
 * A star with its node's latest word: a report the store has not taken yet (its disk is full:
 * the star's end is shown, not the run the store still holds), and what the node last measured
 * (CPU %, memory).
 */
function fromNode(stored: StarView, node: NodeLink): StarView & { usage?: { cpuPercent: number; memoryBytes: number } } {
  const ref = { name: stored.name, uid: stored.uid, node: stored.node };
  const unsent = node.unsentStatus(ref);
  const view = unsent ? { ...stored, status: unsent.status, observedGeneration: Math.max(stored.observedGeneration ?? 0, unsent.generation) } : stored;
  const u = view.status?.state === "running" ? node.usage(ref) : undefined;
  return u ? { ...view, usage: { cpuPercent: Math.round(u.cpuPercent * 10) / 10, memoryBytes: u.memoryBytes } } : view;
}

/** What an env value reads as through a token that is not an admin's. */
export const HIDDEN = "<hidden>";

/**
 * A star as `who` may see it: env values only for admin tokens (names are kept); a star's token
 * does not see who made its own star (outside what it may see).
 */
export function shown<T extends StarView>(view: T, who: Principal): T {
  if (who.scope === "admin") return view;
  const env = view.spec.env;
  let out: T = env && typeof env === "object" ? { ...view, spec: { ...view.spec, env: Object.fromEntries(Object.keys(env).map((k) => [k, HIDDEN])) } } : view;
  if (who.star && out.name === who.star.name && out.owner) {
    const { owner: _owner, ...rest } = out;
    out = rest as T;
  }
  return out;
}

/** A deployment as `who` may see it: its templates' env values only for admin tokens (as a star's). */
export function shownDeployment<T extends { history: Array<{ template: { env?: Record<string, string> } }> }>(d: T, who: Principal): T {
  if (who.scope === "admin") return d;
  const hide = (env: Record<string, string> | undefined) => (env && typeof env === "object" ? Object.fromEntries(Object.keys(env).map((k) => [k, HIDDEN])) : env);
  return { ...d, history: d.history.map((r) => ({ ...r, template: { ...r.template, ...(r.template.env ? { env: hide(r.template.env) } : {}) } })) };
}

/**
 * Whether event `e` is about a star `visible` holds (undefined: all are), as that very star: by
 * its uid (a star made again under a name it once had is another's), by time for events that
 * carry none.
 */
function eventVisible(e: Event, visible: Map<string, StarRecord> | undefined): boolean {
  if (!visible) return true;
  const r = e.star === undefined ? undefined : visible.get(e.star);
  if (r === undefined) return false;
  return e.uid !== undefined ? e.uid === r.uid : e.at >= r.createdAt;
}

export interface Api {
  /** Listens on host:port (0: any free port); resolves with the URL. */
  listen(options: { port: number; host: string; tls?: ApiTls }): Promise<string>;
  /** A renewed certificate for the HTTPS API. */
  useCert(tls: ApiTls): void;
  /** Listens on a unix socket too (root's only; no connection limit): the operator's way in. */
  listenUnix(path: string): Promise<void>;
  close(): Promise<void>;
}

export async function buildApi(options: ApiOptions): Promise<Api> {
  const { controller, node, store } = options;
  /** Who a token is, if it is valid now: it exists, has not expired, and its star (if any) is that very star. */
  const authenticate = async (raw: string): Promise<Principal> => {
    const token = await lookupToken(store, raw);
    if (!token) throw new UnauthorizedError();
    if (token.expiresAt !== undefined && Date.now() >= token.expiresAt) {
      throw new UnauthorizedError(`this token expired at ${new Date(token.expiresAt).toISOString()}: ask an admin for a new one (constellation token --scope read --ttl 1h)`);
    }
    const who: Principal = { scope: token.scope, name: token.name, ...(token.namespace !== undefined ? { namespace: token.namespace } : {}) };
    if (token.scope === "star") {
      // A star's token works while that very star exists (tokens of older agents name it only).
      const named = token.star?.name ?? token.name.replace(/^star:/, "");
      const record = await controller.find(named);
      if (!record || (token.star && token.star.uid !== record.uid)) {
        throw new UnauthorizedError(`this token belongs to star ${named}, which has been removed: a removed star's token is no longer valid`);
      }
      who.star = { name: record.name, uid: record.uid };
      who.namespace = namespaceOf(record);
    }
    return who;
  };
  /**
   * Ends a stream once its token stops being valid (expired, revoked, its star removed): checked
   * every STREAM_RECHECK_MS, and the returned function stops the checks.
   */
  const endWithToken = (req: Request, res: ServerResponse): (() => void) => {
    const timer = setInterval(() => {
      authenticate(req.token!).catch(() => res.destroy());
    }, STREAM_RECHECK_MS);
    timer.unref();
    const stop = () => clearInterval(timer);
    res.once("close", stop);
    return stop;
  };
  /** Writes a line, waiting while the client reads slower than it comes (never buffering without end). */
  const send = async (res: ServerResponse, value: unknown): Promise<void> => {
    if (res.destroyed || res.write(`${JSON.stringify(value)}\n`) || res.destroyed) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.on("drain", done);
      res.on("close", done);
    });
  };
  const router = new Router({
    bodyLimit: BODY_LIMIT,
    ...(options.connections?.max === undefined ? {} : { maxConnections: options.connections.max }),
    ...(options.connections?.headersTimeoutMs === undefined ? {} : { headersTimeoutMs: options.connections.headersTimeoutMs }),
    onError: sendError,
    bodyBudget: BODY_BUDGET,
    // Every request of a caller other than an admin takes a share: a star cannot keep the API
    // (and the agent, which shares its event loop) busy with cheap requests in parallel.
    admit: async (req: Request) => {
      if (!req.auth || req.auth.scope === "admin") return () => undefined;
      req.holder = await holderOf(req);
      return inFlight.take(...req.holder);
    },
    before: async (req: Request) => {
      if (req.path === "/v1/health") return;
      const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "");
      if (!m) throw new UnauthorizedError();
      const who = await authenticate(m[1]!);
      req.tokenId = tokenKey(m[1]!);
      req.token = m[1]!;
      req.auth = who;
      const reading = req.method === "GET" || req.method === "HEAD";
      if (who.scope === "read" && !reading) throw new ForbiddenError(who.scope, "admin");
      // The cluster itself (tokens, nodes, gossip keys, quotas) is a cluster admin's: not a namespace's.
      const cluster = ["/v1/tokens", "/v1/join-tokens", "/v1/nodes/", "/v1/gossip/"].some((p) => req.path.startsWith(p)) || (req.path.startsWith("/v1/namespaces/") && !reading);
      if (cluster && (who.scope !== "admin" || who.namespace !== undefined)) throw new ForbiddenError(scopeText(who), who.namespace !== undefined && who.scope === "admin" ? "an admin token of the whole cluster" : "admin");
    },
  });
  const name = (req: Request) => parse(nameParams, req.params, "path").name;
  const who = (req: Request) => req.auth!;
  const open = openLimiter(OPEN_REQUESTS, "streams and waits");
  const inFlight = openLimiter(REQUESTS_IN_FLIGHT, "requests in flight");
  /** Who shares a caller's limits: a read token alone; every star of a tree together. */
  const holderOf = async (req: Request): Promise<[key: string, mineAre: string]> => {
    const by = who(req);
    if (!by.star) return [`token:${req.tokenId}`, "this token has"];
    const root = await controller.treeRoot(by.star);
    return [`tree:${root.uid}`, `the stars made from ${root.name} have`];
  };
  /** Takes one of the caller's open requests (released by the returned function); its holder was found by `admit`. */
  const take = (req: Request): (() => void) => (req.holder ? open.take(...req.holder) : () => undefined);
  // Headers at once: a stream may have nothing to say for a while.
  const clusterOf = () => {
    if (!options.cluster) throw new InvalidArgumentError("cluster", "this constellation is one node, not a cluster: make one with `constellation init --cluster NAME`");
    return options.cluster;
  };
  const ndjson = (res: ServerResponse) => res.writeHead(200, { "content-type": "application/x-ndjson" }).flushHeaders();

  router
    .route("GET", "/v1/health", async () => ({ body: { ok: true } }))
    .route("GET", "/v1/status", async (req) => {
      const summary = await controller.summary(who(req));
      const c = options.cluster;
      if (!c) return { body: summary };
      if (c.controllers) return { body: { ...summary, controllers: await c.controllers() } };
      const api = c.api?.();
      return { body: { ...summary, controllers: [{ node: c.node ?? options.ownNode ?? "controller", address: c.address(), ...(api ? { api } : {}), leads: true }] } };
    })
    // Tokens (admin only, see `before`). A new one is shown once and stored only as its hash.
    .route("POST", "/v1/tokens", async (req) => {
      const body = parse(tokenBody, req.body, "body");
      const token = newToken();
      const record = await saveToken(store, token, body.scope, body.name, { ...(body.ttl_s === undefined ? {} : { ttlSeconds: body.ttl_s }), ...(body.namespace === undefined ? {} : { namespace: body.namespace }) });
      const id = tokenKey(token).slice(KEYS.tokens.length, KEYS.tokens.length + TOKEN_ID_LENGTH);
      return { status: 201, body: { token, id, scope: body.scope, name: body.name, ...(body.namespace === undefined ? {} : { namespace: body.namespace }), ...(record.expiresAt === undefined ? {} : { expiresAt: record.expiresAt }) } };
    })
    // Deployments (issue 13): deploy (create, new revision, new count, or nothing), scale, undo, remove.
    .route("POST", "/v1/deployments", async (req) => {
      const body = parse(deployBody, req.body, "body");
      const out = await controller.deployments.deploy(body.spec, who(req), body.dry_run ? { dryRun: true } : {});
      return { status: out.changed && out.revision === 1 && !body.dry_run ? 201 : 200, body: { ...out, deployment: shownDeployment(out.deployment, who(req)) } };
    })
    .route("GET", "/v1/deployments", async (req) => {
      parse(noQuery, req.query, "query");
      return { body: { deployments: (await controller.deployments.list(who(req))).map((d) => shownDeployment(d, who(req))) } };
    })
    .route("GET", "/v1/deployments/:name", async (req) => {
      const d = await controller.deployments.get(name(req), who(req));
      const events = (await controller.events.list({ deployment: d.name })).filter((e) => e.at >= d.createdAt).slice(-20);
      return { body: { ...shownDeployment(d, who(req)), events } };
    })
    .route("POST", "/v1/deployments/:name/scale", async (req) => ({ body: shownDeployment(await controller.deployments.scale(name(req), parse(scaleBody, req.body, "body").instances, who(req)), who(req)) }))
    .route("POST", "/v1/deployments/:name/undo", async (req) => ({ body: shownDeployment(await controller.deployments.undo(name(req), parse(undoBody, req.body, "body").revision, who(req)), who(req)) }))
    .route("DELETE", "/v1/deployments/:name", async (req) => {
      await controller.deployments.remove(name(req), who(req));
      return { status: 204 };
    })
    // Artifacts (a star's bundled code by its SHA-256): uploaded a chunk at a time, then committed.
    .route("GET", "/v1/artifacts/:id", async (req) => {
      const hex = parse(artifactParams, req.params, "path").id;
      // A namespace sees the code it uploaded, no other's (not even whether it exists).
      const a = who(req).star ? undefined : await controller.artifacts.get(hex, who(req).namespace);
      if (!a) throw new NoSuchArtifactError(hex);
      return { body: { id: `sha256:${hex}`, size: a.size, chunks: a.chunks, createdAt: a.createdAt } };
    })
    .route("PUT", "/v1/artifacts/:id/chunks/:index", async (req) => {
      if (who(req).star) throw new ForbiddenError("star", "an admin token (a star's token uploads no code)");
      const p = parse(artifactChunkParams, req.params, "path");
      await controller.artifacts.putChunk(p.id, p.index, Buffer.from(parse(artifactChunkBody, req.body, "body").data, "base64"), who(req).namespace);
      return { status: 204 };
    })
    .route("POST", "/v1/artifacts/:id", async (req) => {
      if (who(req).star) throw new ForbiddenError("star", "an admin token (a star's token uploads no code)");
      const hex = parse(artifactParams, req.params, "path").id;
      const body = parse(artifactCommitBody, req.body, "body");
      const made = await controller.artifacts.commit(hex, body.size, body.chunks, who(req).namespace);
      const a = (await controller.artifacts.get(hex, who(req).namespace))!;
      return { status: made ? 201 : 200, body: { id: `sha256:${hex}`, size: a.size, chunks: a.chunks, createdAt: a.createdAt } };
    })
    // Namespaces: every token sees its own (a namespace's token: that one); quotas are set by a cluster admin.
    .route("GET", "/v1/namespaces", async (req) => {
      parse(noQuery, req.query, "query");
      return { body: { namespaces: await controller.namespaces(who(req)) } };
    })
    .route("PUT", "/v1/namespaces/:name/quota", async (req) => {
      const ns = parse(nameParams, req.params, "path").name;
      await controller.setQuota(ns, parse(quotaBody, req.body, "body"));
      return { body: (await controller.namespaces()).find((n) => n.name === ns) };
    })
    .route("DELETE", "/v1/namespaces/:name/quota", async (req) => {
      const ns = parse(nameParams, req.params, "path").name;
      if (!(await controller.removeQuota(ns))) throw new InvalidArgumentError("namespace", `namespace ${ns} has no quota (see constellation quota ls)`);
      return { status: 204 };
    })
    .route("GET", "/v1/tokens", async (req) => {
      parse(noQuery, req.query, "query");
      return { body: { tokens: await listTokens(store) } };
    })
    .route("DELETE", "/v1/tokens/:id", async (req) => {
      await revokeToken(store, parse(tokenParams, req.params, "path").id);
      return { status: 204 };
    })
    // Join tokens (admin only): a node that holds one may join the cluster once per use, until
    // it expires or is revoked. A new one is shown once and stored only as its secret's hash.
    .route("POST", "/v1/join-tokens", async (req) => {
      const body = parse(joinTokenBody, req.body, "body");
      const cluster = clusterOf();
      const t = await createJoinToken(store, cluster.caCert, body.ttl_s === undefined ? {} : { ttlSeconds: body.ttl_s });
      return { status: 201, body: { ...t, address: cluster.address() } };
    })
    .route("GET", "/v1/join-tokens", async (req) => {
      parse(noQuery, req.query, "query");
      clusterOf();
      const tokens = (await listJoinTokens(store)).map(({ secretHash: _, ...t }) => t);
      return { body: { tokens } };
    })
    .route("DELETE", "/v1/join-tokens/:id", async (req) => {
      clusterOf();
      const id = parse(tokenParams, req.params, "path").id;
      if (!/^[0-9a-f]{12}$/.test(id) || !(await revokeJoinToken(store, id))) throw new TokenNotFoundError(id, "join token", "constellation token ls --join");
      return { status: 204 };
    })
    // Nodes (admin only): cordon (nothing new goes there), drain (its stars move away too), uncordon.
    .route("POST", "/v1/nodes/:name/cordon", async (req) => {
      await controller.cordon(parse(nameParams, req.params, "path").name);
      return { status: 204 };
    })
    .route("POST", "/v1/nodes/:name/drain", async (req) => {
      await controller.cordon(parse(nameParams, req.params, "path").name, { drain: true });
      return { status: 204 };
    })
    .route("POST", "/v1/nodes/:name/revoke", async (req) => {
      const node = parse(nameParams, req.params, "path").name;
      return { body: await controller.revokeNode(node, options.ownNode, options.cluster?.disconnect) };
    })
    .route("POST", "/v1/nodes/:name/uncordon", async (req) => {
      await controller.uncordon(parse(nameParams, req.params, "path").name);
      return { status: 204 };
    })
    // The gossip keyring (admin only): keys are shown by id; a key is shown once, when installed.
    .route("GET", "/v1/gossip/keys", async (req) => {
      parse(noQuery, req.query, "query");
      const c = clusterOf();
      const keyring = viewKeyring(await ensureGossipKeyring(store));
      return { body: { ...keyring, nodes: (c.gossipMembers?.() ?? []).map((m) => ({ node: m.node, version: m.keys ?? null })) } };
    })
    .route("POST", "/v1/gossip/keys", async (req) => {
      const body = parse(gossipKeyBody, req.body, "body");
      clusterOf();
      const { keyring, key } = await installGossipKey(store, body.key);
      return { status: 201, body: { ...viewKeyring(keyring), id: gossipKeyId(key), ...(body.key === undefined ? { key } : {}) } };
    })
    .route("POST", "/v1/gossip/keys/:id/use", async (req) => {
      const c = clusterOf();
      const { force } = parse(gossipUseBody, req.body ?? {}, "body");
      // Every node must open packets sealed with the key before anyone seals with it: nodes
      // that do not hold the latest keyring (their gossip meta says which they hold) would drop
      // them and take their peers for dead.
      const keyring = await ensureGossipKeyring(store);
      findGossipKey(keyring, parse(tokenParams, req.params, "path").id); // no such key: said first
      const latest = keyring.version;
      const behind = (c.gossipMembers?.() ?? []).filter((m) => m.keys !== latest);
      if (behind.length > 0 && force !== true) {
        const names = behind.slice(0, 5).map((m) => `${m.node} (${m.keys === undefined ? "unknown" : `version ${m.keys}`})`).join(", ");
        throw new InvalidArgumentError("key", `not every node holds keyring version ${latest} yet: ${names}${behind.length > 5 ? ` and ${behind.length - 5} more` : ""}; wait until \`constellation gossip key ls\` shows them all (within a heartbeat, if they are up), or --force`);
      }
      return { body: viewKeyring(await useGossipKey(store, parse(tokenParams, req.params, "path").id)) };
    })
    .route("DELETE", "/v1/gossip/keys/:id", async (req) => {
      clusterOf();
      return { body: viewKeyring(await removeGossipKey(store, parse(tokenParams, req.params, "path").id)) };
    })
    .route("GET", "/v1/stars", async (req) => {
      // A page at a time, by name, with only the fields asked for: a list costs what it shows.
      // A page also ends at PAGE_BYTES of stars (at least one): 30 stars with 0.9 MB specs made
      // each list 28.6 MB, and 20 at once took `up` to 1.34 GB (issue 9).
      const q = parse(listQuery, req.query, "query");
      const stars: Array<Record<string, unknown>> = [];
      let bytes = 0;
      let next: string | undefined;
      for await (const v of controller.views(who(req), q.after)) {
        if (stars.length === q.limit || bytes >= PAGE_BYTES) {
          next = stars.at(-1)!.name as string;
          break;
        }
        const full = shown(fromNode(v, node), who(req)) as unknown as Record<string, unknown>;
        const out = q.fields ? Object.fromEntries(Object.entries(full).filter(([k]) => k === "name" || q.fields!.includes(k as (typeof STAR_FIELDS)[number]))) : full;
        bytes += JSON.stringify(out).length;
        stars.push(out);
      }
      return { body: { stars, ...(next === undefined ? {} : { next }) } };
    })
    .route("POST", "/v1/stars", async (req) => {
      const body = parse(createBody, req.body, "body");
      const opts = { ...(body.start === undefined ? {} : { start: body.start }), ...(req.auth?.scope === "star" ? { fromStar: true } : {}), by: who(req) };
      return { status: 201, body: shown(await controller.create(body.spec, opts), who(req)) };
    })
    .route("GET", "/v1/stars/:name", async (req) => {
      const star = name(req);
      parse(noQuery, req.query, "query");
      const view = shown(fromNode(await controller.get(star, who(req)), node), who(req));
      const visible = await controller.visible(who(req));
      // This star's events, not those of earlier stars of its name (an old failure is not its own).
      const events = (await controller.events.list({ star, uid: view.uid, limit: 20 })).filter((e) => eventVisible(e, visible));
      return { body: { ...view, events } };
    })
    .route("GET", "/v1/stars/:name/wait", async (req) => {
      const star = name(req);
      const q = parse(waitQuery, req.query, "query");
      // Only a report on the latest request counts (a star started again still shows its last end).
      const current = (v: StarView) => v.status !== undefined && (v.observedGeneration ?? 0) >= v.generation;
      const ended = (v: StarView) => current(v) && !["running", "starting", "pending"].includes(v.status!.state) && v.status!.restartAt === undefined;
      // Waiting for "running" also returns when the star ended instead (failed to start, say).
      const until = q.for === "running" ? (v: StarView) => (current(v) && v.status!.state === "running") || ended(v) : ended;
      if (who(req).scope !== "admin" && q.timeout_ms > MAX_WAIT_MS) {
        throw new BadRequestError(`timeout_ms may be at most ${MAX_WAIT_MS} for this token: wait again after a timeout`, "timeout_ms");
      }
      const release = take(req);
      try {
        return { body: shown(await controller.waitFor(star, until, q.timeout_ms, who(req)), who(req)) };
      } finally {
        release();
      }
    })
    .route("POST", "/v1/stars/:name/start", async (req) => ({ body: shown(await controller.setDesired(name(req), "running", who(req)), who(req)) }))
    .route("POST", "/v1/stars/:name/stop", async (req) => ({ body: shown(await controller.setDesired(name(req), "stopped", who(req)), who(req)) }))
    .route("DELETE", "/v1/stars/:name", async (req) => {
      const star = name(req);
      const q = parse(removeQuery, req.query, "query");
      await controller.remove(star, { ...(q.force ? { force: true } : {}), by: who(req) });
      return { status: 204 };
    })
    .route("GET", "/v1/stars/:name/logs", async (req, res) => {
      const star = name(req);
      const q = parse(logsQuery, req.query, "query");
      const seen = await controller.get(star, who(req)); // 404 for an unknown star (or one this token may not see)
      // Each stream reads files a star wrote: a caller (a star's token, say) may not open many.
      const release = take(req);
      const abort = new AbortController();
      res.on("close", () => abort.abort());
      try {
        const lines = node.logs({ name: star, uid: seen.uid, node: seen.node }, { ...(q.tail === undefined ? {} : { tail: q.tail }), ...(q.since === undefined ? {} : { since: q.since }), follow: q.follow === true, signal: abort.signal });
        ndjson(res);
        endWithToken(req, res);
        for await (const l of lines) {
          if (abort.signal.aborted) break;
          await send(res, l);
        }
      } catch {
        // the client went away, or the star's files did
      } finally {
        release();
      }
      res.end();
      return undefined;
    })
    .route("GET", "/v1/events", async (req, res) => {
      const q = parse(eventsQuery, req.query, "query");
      // `star=NAME`: the events of the star of that name now (of earlier ones too when there is none, or with all=1).
      const current = q.star !== undefined && !q.all ? await controller.find(q.star) : undefined;
      const filter = { ...(q.since === undefined ? {} : { since: q.since }), ...(q.star === undefined ? {} : { star: q.star }), ...(current ? { uid: current.uid } : {}) };
      const visible = await controller.visible(who(req));
      const limit = q.limit ?? (q.follow ? 20 : 100);
      // A star's token: the newest `limit` of the events about what it may see.
      const all = await controller.events.list(visible ? filter : { ...filter, limit });
      const first = visible ? all.filter((e) => eventVisible(e, visible)).slice(-limit) : all;
      if (!q.follow) return { body: { events: first } };
      const release = take(req);
      res.on("close", release);
      ndjson(res);
      endWithToken(req, res);
      const since = first.at(-1)?.seq ?? (await store.revision());
      for (const e of first) await send(res, e);
      // From the revision listed on: nothing is missed between the list and the watch.
      const watch = store.watch({ prefix: KEYS.events }, { fromRevision: since + 1 });
      res.on("close", () => watch.close());
      try {
        for await (const batch of watch) {
          // The batch carries the new events: no re-read of the whole log per event.
          for (const ev of batch.events) {
            if (ev.type !== "put") continue;
            const e = eventOf(ev.kv);
            if (q.star !== undefined && e.star !== q.star) continue;
            // A star made after the stream opened is one this token sees if its owner is (a new
            // child); one removed is no longer (its name may come back as another's star).
            if (visible && e.star !== undefined && e.kind === "star.created" && !visible.has(e.star)) {
              const kv = await store.get(starKey(e.star));
              const r = kv ? (JSON.parse(kv.value) as StarRecord) : undefined;
              if (r && r.uid === e.uid && r.owner && visible.get(r.owner.name)?.uid === r.owner.uid) visible.set(r.name, r);
            }
            if (!eventVisible(e, visible)) continue;
            if (visible && e.kind === "star.removed") visible.delete(e.star!);
            await send(res, e);
          }
        }
      } catch {
        // closed
      }
      res.end();
      return undefined;
    });

  return {
    listen: ({ port, host, tls }) => router.listen(port, host, tls),
    useCert: (tls) => router.useCert(tls),
    listenUnix: (path) => router.listenUnix(path),
    close: () => router.close(),
  };
}

function sendError(res: ServerResponse, err: unknown): void {
  let status = 500;
  let body: { code: string; message: string; field?: string; issues?: unknown };
  if (isConstellationError(err)) {
    status = (err as { status?: number }).status ?? STATUS[err.code] ?? 500;
    body = { code: err.code, message: err.message };
    const field = (err as { field?: string }).field;
    if (field !== undefined) body.field = field;
    if (err instanceof InvalidSpecError) body.issues = err.issues;
  } else {
    body = { code: "INTERNAL", message: "internal error: the request was not carried out; see the controller's log" };
    process.emitWarning(`constellation API: ${(err as Error)?.stack ?? String(err)}`);
  }
  const payload = JSON.stringify({ error: body });
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(payload) });
  res.end(payload);
}
