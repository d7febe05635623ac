/**
 * The HTTP JSON API (fastify). Every route but /v1/health needs a token (Authorization: Bearer);
 * a `read` token may only GET. Errors are JSON `{ error: { code, message, field?, issues? } }`
 * with a 4xx status for anything the caller can fix — never a stack trace. Routes: docs/api.md.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import {
  BadRequestError,

  ForbiddenError,
  type ErrorCode,
  InvalidSpecError,
  TooLargeError,
  UnauthorizedError,
  isConstellationError,
} from "../errors.js";
import type { NodeLink } from "../agent/agent.js";
import type { Controller } from "../controller/controller.js";
import type { StarView } from "../controller/model.js";
import type { Store } from "../store/types.js";
import { lookupToken, newToken, saveToken } from "../controller/tokens.js";
import { createBody, eventsQuery, logsQuery, nameParams, parse, removeQuery, tokenBody, waitQuery } from "./schemas.js";

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

export async function buildApi(options: ApiOptions): Promise<FastifyInstance> {
  const { controller, node, store } = options;
  const app = Fastify({ bodyLimit: BODY_LIMIT, logger: false, return503OnClosing: true });

  app.addHook("onRequest", async (req: FastifyRequest) => {
    if (req.url === "/v1/health") return;
    const header = req.headers.authorization ?? "";
    const m = /^Bearer (\S+)$/.exec(header);
    const token = m ? await lookupToken(store, m[1]!) : undefined;
    if (!token) throw new UnauthorizedError();
    const reading = req.method === "GET" || req.method === "HEAD";
    if (token.scope === "read" && !reading) throw new ForbiddenError(token.scope, "admin");
    if (token.scope === "star" && req.url.startsWith("/v1/tokens")) throw new ForbiddenError(token.scope, "admin");
  });

  app.setErrorHandler((err: unknown, _req, reply) => sendError(reply, err));
  app.setNotFoundHandler((req, reply) =>
    sendError(reply, Object.assign(new BadRequestError(`no route ${req.method} ${req.url.split("?")[0]}: see docs/api.md`), { status: 404 })),
  );

  app.get("/v1/health", async () => ({ ok: true }));

  app.get("/v1/status", async () => controller.summary());

  // A new token (admin only, as every non-GET request): shown once, stored only as its hash.
  app.post("/v1/tokens", async (req, reply) => {
    const body = parse(tokenBody, req.body, "body");
    const token = newToken();
    await saveToken(store, token, body.scope, body.name);
    return reply.code(201).send({ token, scope: body.scope, name: body.name });
  });

  app.get("/v1/stars", async () => ({ stars: (await controller.list()).map((v) => withUsage(v, node)) }));

  app.post("/v1/stars", async (req, reply) => {
    const body = parse(createBody, req.body, "body");
    const view = await controller.create(body.spec, body.start === undefined ? {} : { start: body.start });
    return reply.code(201).send(view);
  });

  app.get("/v1/stars/:name", async (req) => {
    const { name } = parse(nameParams, req.params, "path");
    parse(removeQuery.pick({}), req.query, "query");
    const view = withUsage(await controller.get(name), node);
    const events = await controller.events.list({ star: name, limit: 20 });
    return { ...view, events };
  });

  app.get("/v1/stars/:name/wait", async (req) => {
    const { name } = parse(nameParams, req.params, "path");
    const q = parse(waitQuery, req.query, "query");
    // Only a report on the latest request counts (a star started again still shows its last end).
    const current = (v: StarView) => v.status !== undefined && (v.observedGeneration ?? 0) >= v.generation;
    const ended = (v: StarView) => current(v) && !["running", "starting", "pending"].includes(v.status!.state) && v.status!.restartAt === undefined;
    // Waiting for "running" also returns when the star ended instead (failed to start, say).
    const until = q.for === "running" ? (v: StarView) => (current(v) && v.status!.state === "running") || ended(v) : ended;
    return controller.waitFor(name, until, q.timeout_ms);
  });

  app.post("/v1/stars/:name/start", async (req) => controller.setDesired(parse(nameParams, req.params, "path").name, "running"));
  app.post("/v1/stars/:name/stop", async (req) => controller.setDesired(parse(nameParams, req.params, "path").name, "stopped"));

  app.delete("/v1/stars/:name", async (req, reply) => {
    const { name } = parse(nameParams, req.params, "path");
    const q = parse(removeQuery, req.query, "query");
    await controller.remove(name, q.force ? { force: true } : {});
    return reply.code(204).send();
  });

  app.get("/v1/stars/:name/logs", async (req, reply) => {
    const { name } = parse(nameParams, req.params, "path");
    const q = parse(logsQuery, req.query, "query");
    await controller.get(name); // 404 for an unknown star
    const abort = new AbortController();
    req.raw.on("close", () => abort.abort());
    const lines = node.logs(name, { ...(q.tail === undefined ? {} : { tail: q.tail }), follow: q.follow === true, signal: abort.signal });
    reply.raw.writeHead(200, { "content-type": "application/x-ndjson" });
    try {
      for await (const l of lines) {
        if (!reply.raw.write(`${JSON.stringify(l)}\n`)) await new Promise((r) => reply.raw.once("drain", r));
      }
    } catch {
      // the client went away, or the star's files did
    }
    reply.raw.end();
    return reply;
  });

  app.get("/v1/events", async (req, reply) => {
    const q = parse(eventsQuery, req.query, "query");
    const filter = { ...(q.since === undefined ? {} : { since: q.since }), ...(q.star === undefined ? {} : { star: q.star }) };
    const first = await controller.events.list({ ...filter, limit: q.limit ?? (q.follow ? 20 : 100) });
    if (!q.follow) return { events: first };
    reply.raw.writeHead(200, { "content-type": "application/x-ndjson" });
    let since = first.at(-1)?.seq ?? (await store.revision());
    for (const e of first) reply.raw.write(`${JSON.stringify(e)}\n`);
    const watch = store.watch({ prefix: "/constellation/events/" }, { fromRevision: since + 1 });
    req.raw.on("close", () => watch.close());
    try {
      for await (const batch of watch) {
        for (const e of await controller.events.list({ ...filter, since })) {
          reply.raw.write(`${JSON.stringify(e)}\n`);
          since = e.seq;
        }
        since = Math.max(since, batch.revision);
      }
    } catch {
      // closed
    }
    reply.raw.end();
    return reply;
  });

  await app.ready();
  return app;
}

function sendError(reply: FastifyReply, err: unknown): FastifyReply {
  const e = err as { code?: string; statusCode?: number; status?: number; message?: string };
  let status = 500;
  let body: { code: string; message: string; field?: string; issues?: unknown };
  if (isConstellationError(err)) {
    status = (err as { status?: number }).status ?? STATUS[err.code] ?? 500;
    body = { code: err.code, message: err.message };
    const field = (err as { field?: string }).field;
    if (field !== undefined) body.field = field;
    if (err instanceof InvalidSpecError) body.issues = err.issues;
  } else if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
    status = 413;
    const t = new TooLargeError(BODY_LIMIT);
    body = { code: t.code, message: t.message };
  } else if (e.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
    status = 415;
    body = { code: "API_BAD_REQUEST", message: "send the body as application/json" };
  } else if (typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    // fastify's own checks: malformed JSON, an empty body, a bad content-length
    status = e.statusCode;
    body = { code: "API_BAD_REQUEST", message: `bad request: ${e.message ?? "malformed"}` };
  } else {
    body = { code: "INTERNAL", message: "internal error: the request was not carried out; see the controller's log" };
    process.emitWarning(`constellation API: ${(err as Error)?.stack ?? String(err)}`);
  }
  return reply.code(status).header("content-type", "application/json").send({ error: body });
}


