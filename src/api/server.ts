/**
 * The HTTP JSON API (node:http with a small router, router.ts). Every route but /v1/health needs a token (Authorization: Bearer);
 * a `read` token may only GET. Errors are JSON `{ error: { code, message, field?, issues? } }`
 * with a 4xx status for anything the caller can fix — never a stack trace. Routes: docs/api.md.
 */
import type { ServerResponse } from "node:http";
import {
  ForbiddenError,
  type ErrorCode,
  InvalidSpecError,
  UnauthorizedError,
  isConstellationError,
} from "../errors.js";
import type { NodeLink } from "../agent/agent.js";
import type { Controller } from "../controller/controller.js";
import { eventOf } from "../controller/events.js";
import { KEYS, type StarView } from "../controller/model.js";
import type { Store } from "../store/types.js";
import { lookupToken, newToken, saveToken } from "../controller/tokens.js";
import { type Request, Router } from "./router.js";
import { createBody, eventsQuery, logsQuery, nameParams, noQuery, parse, removeQuery, tokenBody, waitQuery } from "./schemas.js";

export interface ApiOptions {
  store: Store;
  controller: Controller;
  /** This node's agent, for logs and usage (one node for now). */
  node: NodeLink;
}

export const BODY_LIMIT = 1024 * 1024;

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
  STAR_EXISTS: 409,
  TIMEOUT: 408,
  API_TOO_LARGE: 413,
  STORE_CLOSED: 503,
  STORE_UNAVAILABLE: 503,
};

/** A star with what its node last measured (CPU %, memory). */
function withUsage(view: StarView, node: NodeLink): StarView & { usage?: { cpuPercent: number; memoryBytes: number } } {
  const u = view.status?.state === "running" ? node.usage(view.name) : undefined;
  return u ? { ...view, usage: { cpuPercent: Math.round(u.cpuPercent * 10) / 10, memoryBytes: u.memoryBytes } } : view;
}

export interface Api {
  /** Listens on host:port (0: any free port); resolves with the URL. */
  listen(options: { port: number; host: string }): Promise<string>;
  close(): Promise<void>;
}

export async function buildApi(options: ApiOptions): Promise<Api> {
  const { controller, node, store } = options;
  const router = new Router({
    bodyLimit: BODY_LIMIT,
    onError: sendError,
    before: async (req: Request) => {
      if (req.path === "/v1/health") return;
      const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "");
      const token = m ? await lookupToken(store, m[1]!) : undefined;
      if (!token) throw new UnauthorizedError();
      req.auth = { scope: token.scope, name: token.name };
      const reading = req.method === "GET" || req.method === "HEAD";
      if (token.scope === "read" && !reading) throw new ForbiddenError(token.scope, "admin");
      if (token.scope === "star" && req.path.startsWith("/v1/tokens")) throw new ForbiddenError(token.scope, "admin");
    },
  });
  const name = (req: Request) => parse(nameParams, req.params, "path").name;
  const ndjson = (res: ServerResponse) => res.writeHead(200, { "content-type": "application/x-ndjson" });

  router
    .route("GET", "/v1/health", async () => ({ body: { ok: true } }))
    .route("GET", "/v1/status", async () => ({ body: await controller.summary() }))
    // A new token (admin only): shown once, stored only as its hash.
    .route("POST", "/v1/tokens", async (req) => {
      const body = parse(tokenBody, req.body, "body");
      const token = newToken();
      await saveToken(store, token, body.scope, body.name);
      return { status: 201, body: { token, scope: body.scope, name: body.name } };
    })
    .route("GET", "/v1/stars", async () => ({ body: { stars: (await controller.list()).map((v) => withUsage(v, node)) } }))
    .route("POST", "/v1/stars", async (req) => {
      const body = parse(createBody, req.body, "body");
      const opts = { ...(body.start === undefined ? {} : { start: body.start }), ...(req.auth?.scope === "star" ? { fromStar: true } : {}) };
      return { status: 201, body: await controller.create(body.spec, opts) };
    })
    .route("GET", "/v1/stars/:name", async (req) => {
      const star = name(req);
      parse(noQuery, req.query, "query");
      const view = withUsage(await controller.get(star), node);
      return { body: { ...view, events: await controller.events.list({ star, limit: 20 }) } };
    })
    .route("GET", "/v1/stars/:name/wait", async (req) => {
      const star = name(req);
      const q = parse(waitQuery, req.query, "query");
      // Only a report on the latest request counts (a star started again still shows its last end).
      const current = (v: StarView) => v.status !== undefined && (v.observedGeneration ?? 0) >= v.generation;
      const ended = (v: StarView) => current(v) && !["running", "starting", "pending"].includes(v.status!.state) && v.status!.restartAt === undefined;
      // Waiting for "running" also returns when the star ended instead (failed to start, say).
      const until = q.for === "running" ? (v: StarView) => (current(v) && v.status!.state === "running") || ended(v) : ended;
      return { body: await controller.waitFor(star, until, q.timeout_ms) };
    })
    .route("POST", "/v1/stars/:name/start", async (req) => ({ body: await controller.setDesired(name(req), "running") }))
    .route("POST", "/v1/stars/:name/stop", async (req) => ({ body: await controller.setDesired(name(req), "stopped") }))
    .route("DELETE", "/v1/stars/:name", async (req) => {
      const star = name(req);
      const q = parse(removeQuery, req.query, "query");
      await controller.remove(star, q.force ? { force: true } : {});
      return { status: 204 };
    })
    .route("GET", "/v1/stars/:name/logs", async (req, res) => {
      const star = name(req);
      const q = parse(logsQuery, req.query, "query");
      await controller.get(star); // 404 for an unknown star
      const abort = new AbortController();
      res.on("close", () => abort.abort());
      const lines = node.logs(star, { ...(q.tail === undefined ? {} : { tail: q.tail }), follow: q.follow === true, signal: abort.signal });
      ndjson(res);
      try {
        for await (const l of lines) {
          if (!res.write(`${JSON.stringify(l)}\n`)) await new Promise((r) => res.once("drain", r));
        }
      } catch {
        // the client went away, or the star's files did
      }
      res.end();
      return undefined;
    })
    .route("GET", "/v1/events", async (req, res) => {
      const q = parse(eventsQuery, req.query, "query");
      const filter = { ...(q.since === undefined ? {} : { since: q.since }), ...(q.star === undefined ? {} : { star: q.star }) };
      const first = await controller.events.list({ ...filter, limit: q.limit ?? (q.follow ? 20 : 100) });
      if (!q.follow) return { body: { events: first } };
      ndjson(res);
      const since = first.at(-1)?.seq ?? (await store.revision());
      for (const e of first) res.write(`${JSON.stringify(e)}\n`);
      // From the revision listed on: nothing is missed between the list and the watch.
      const watch = store.watch({ prefix: KEYS.events }, { fromRevision: since + 1 });
      res.on("close", () => watch.close());
      try {
        for await (const batch of watch) {
          // The batch carries the new events: no re-read of the whole log per event.
          for (const ev of batch.events) {
            if (ev.type !== "put") continue;
            const e = eventOf(ev.kv);
            if (q.star === undefined || e.star === q.star) res.write(`${JSON.stringify(e)}\n`);
          }
        }
      } catch {
        // closed
      }
      res.end();
      return undefined;
    });

  return {
    listen: ({ port, host }) => router.listen(port, host),
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
