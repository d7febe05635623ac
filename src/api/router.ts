/**
 * A small HTTP router on node:http: routes by method and path pattern, JSON bodies with a size
 * limit and a content-type check, query strings, NDJSON streams, and one error handler.
 *
 * Why not fastify (the design's first choice): loading it costs ~20 MB of resident memory, a
 * quarter of the control plane's 80 MB budget (measured: fastify 20.4 MB, zod 14.4 MB,
 * better-sqlite3 5.4 MB on Node 20 here); the API needs a dozen routes and nothing else of it.
 */
import { readFileSync } from "node:fs";
import { chmod, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Principal } from "../model/records.js";
import { BadRequestError, TooLargeError, TooManyError } from "../model/errors.js";

export interface Request {
  method: string;
  path: string;
  params: Record<string, string>;
  query: Record<string, string>;
  headers: http.IncomingHttpHeaders;
  /** The parsed JSON body (undefined when there is none). */
  body: unknown;
  raw: http.IncomingMessage;
  /** Set by `before` (who is asking). */
  auth?: Principal;
  /** Set by `before`: the token's key in the store (the same for every request with that token). */
  tokenId?: string;
  /** Set by `before`: the token itself (a stream checks it again while it is open). */
  token?: string;
  /** Set by `admit` for callers other than admins: who shares their limits, and how to name it. */
  holder?: [key: string, mineAre: string];
}

/** A JSON reply, or `undefined` when the handler wrote the response itself (a stream). */
export type Reply = { status?: number; body?: unknown } | undefined;
export type Handler = (req: Request, res: http.ServerResponse) => Promise<Reply>;

interface Route {
  method: string;
  pattern: RegExp;
  names: string[];
  handler: Handler;
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new BadRequestError(`the path has a malformed escape (${segment.slice(0, 40)}): encode it with encodeURIComponent`);
  }
}

/** Headers must arrive within this (a slow or silent client is cut off, not kept). */
export const HEADERS_TIMEOUT_MS = 10_000;
/** The whole request (headers and body) within this; responses (streams) may go on longer. */
export const REQUEST_TIMEOUT_MS = 30_000;

/**
 * Connections the API takes at once by default: half of this process's open-file limit (at
 * most 8192), so clients, however many, never take the files the agent and the store need
 * (docs/security.md). Beyond it, new connections are closed at once.
 */
export function defaultMaxConnections(limitsFile = "/proc/self/limits"): number {
  return Math.max(64, Math.min(8192, Math.floor(openFileLimit(limitsFile) / 2)));
}

/** This process's open-file limit (soft). */
export function openFileLimit(limitsFile = "/proc/self/limits"): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(limitsFile, "utf8"));
    if (m) return m[1] === "unlimited" ? 1 << 20 : Number(m[1]);
  } catch {
    // not Linux: the usual default
  }
  return 1024;
}

/** Connections one address may hold on the HTTPS API (a CLI or SDK keeps at most 16). */
export const HTTPS_PER_ADDRESS = 128;

/** The HTTPS API's certificate and key (PEM), and the CA that signed it. */
export interface ApiTls {
  cert: string;
  key: string;
  ca: string;
}

const secureContextOf = (tls: ApiTls) => ({ cert: `${tls.cert.trim()}\n${tls.ca.trim()}\n`, key: tls.key });

export class Router {
  private readonly routes: Route[] = [];
  private servers: http.Server[] = [];
  private bodiesInFlight = 0;

  constructor(
    private readonly options: {
      bodyLimit: number;
      /** Runs before the route (auth); throws to refuse. */
      before?: (req: Request) => Promise<void>;
      /** After `before`: takes the caller's share of requests in flight (throws to refuse); the result gives it back. */
      admit?: (req: Request) => Promise<() => void>;
      /** Bytes of request bodies being read at once for callers other than admins (their bodies wait for none). */
      bodyBudget?: number;
      onError: (res: http.ServerResponse, err: unknown) => void;
      /** Connections at once (defaultMaxConnections() when absent). */
      maxConnections?: number;
      /** HEADERS_TIMEOUT_MS when absent. */
      headersTimeoutMs?: number;
    },
  ) {}

  route(method: string, path: string, handler: Handler): this {
    const names: string[] = [];
    const pattern = new RegExp(`^${path.replace(/:([a-z]+)/g, (_, n: string) => (names.push(n), "([^/]+)"))}$`);
    this.routes.push({ method, pattern, names, handler });
    return this;
  }

  private async handle(raw: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let release: (() => void) | undefined;
    try {
      const target = raw.url ?? "/";
      const q = target.indexOf("?");
      const path = q < 0 ? target : target.slice(0, q);
      const query = q < 0 ? {} : Object.fromEntries(new URLSearchParams(target.slice(q + 1)));
      const method = raw.method ?? "GET";
      const req: Request = { method, path, params: {}, query, headers: raw.headers, body: undefined, raw };
      await this.options.before?.(req); // who asks, before anything of the request is interpreted
      release = await this.options.admit?.(req);
      const as = method === "HEAD" ? "GET" : method; // HEAD: the GET route, without the body
      const route = this.routes.find((r) => {
        if (r.method !== as) return false;
        const m = r.pattern.exec(path);
        if (!m) return false;
        req.params = Object.fromEntries(r.names.map((n, i) => [n, decode(m[i + 1]!)]));
        return true;
      });
      if (!route) throw Object.assign(new BadRequestError(`no route ${method} ${path}: see docs/api.md`), { status: 404 });
      if (method === "HEAD") {
        const reply = await route.handler(req, res);
        if (reply !== undefined) res.writeHead(reply.status ?? 200).end();
        return;
      }
      req.body = await this.readBody(raw, req.auth?.scope !== "admin");
      const reply = await route.handler(req, res);
      if (reply === undefined) return;
      const payload = reply.body === undefined ? "" : JSON.stringify(reply.body);
      res.writeHead(reply.status ?? 200, payload ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {});
      res.end(payload);
    } catch (err) {
      if (res.headersSent) res.destroy();
      else this.options.onError(res, err);
    } finally {
      release?.();
    }
  }

  private async readBody(raw: http.IncomingMessage, budgeted: boolean): Promise<unknown> {
    const length = Number(raw.headers["content-length"] ?? "0");
    if (length > this.options.bodyLimit) {
      raw.resume();
      throw new TooLargeError(this.options.bodyLimit);
    }
    if (length === 0 && raw.headers["transfer-encoding"] === undefined) {
      raw.resume(); // no body (a GET, say): nothing to wait for
      return undefined;
    }
    // What it may take, held before a byte is read (a body of unknown length: the limit).
    const held = budgeted && this.options.bodyBudget !== undefined ? length || this.options.bodyLimit : 0;
    if (held > 0 && this.bodiesInFlight + held > this.options.bodyBudget!) {
      raw.resume();
      throw new TooManyError(`the API is reading ${this.bodiesInFlight} bytes of request bodies already (at most ${this.options.bodyBudget}): try again shortly`);
    }
    this.bodiesInFlight += held;
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      // Until the body ends, is too large, or the client goes (what it held is given back then too).
      await new Promise<void>((resolve, reject) => {
        raw.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > this.options.bodyLimit || (held > 0 && size > held)) {
            raw.pause();
            reject(new TooLargeError(this.options.bodyLimit));
            return;
          }
          chunks.push(chunk);
        });
        raw.once("end", resolve);
        raw.once("error", reject);
        raw.once("close", () => reject(new BadRequestError("the request ended before its body did")));
      });
    } finally {
      this.bodiesInFlight -= held;
    }
    if (size === 0) return undefined;
    const type = (raw.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== "application/json") throw Object.assign(new BadRequestError("send the body as application/json"), { status: 415 });
    try {
      return JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (err) {
      throw new BadRequestError(`the body is not valid JSON: ${(err as Error).message}`);
    }
  }

  /**
   * Listens; resolves with the URL (http://host:port). With `tls`, HTTPS with that certificate
   * (its chain ends in `ca`, sent along so a client can pin it: `constellation login`).
   */
  listen(port: number, host: string, tls?: ApiTls): Promise<string> {
    const server = this.makeServer(tls);
    const budget = this.options.maxConnections ?? defaultMaxConnections();
    server.maxConnections = budget;
    if (tls) {
      // One budget for the API: the HTTPS listener and the local one take half each.
      for (const s of this.servers) if (s.maxConnections === budget) s.maxConnections = Math.max(32, Math.floor(budget / 2));
      // And no one address holds more than its share of the HTTPS port.
      const byAddress = new Map<string, number>();
      server.on("connection", (socket: Socket) => {
        const address = socket.remoteAddress ?? "?";
        const n = byAddress.get(address) ?? 0;
        if (n >= HTTPS_PER_ADDRESS) {
          socket.destroy();
          return;
        }
        byAddress.set(address, n + 1);
        socket.once("close", () => {
          const left = (byAddress.get(address) ?? 1) - 1;
          if (left > 0) byAddress.set(address, left);
          else byAddress.delete(address);
        });
      });
    }
    let warned = 0;
    server.on("drop", () => {
      if (Date.now() - warned < 60_000) return;
      warned = Date.now();
      process.emitWarning(`constellation API: ${server.maxConnections} connections open, the most it takes; new ones are closed until some end`);
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        const a = server.address() as AddressInfo;
        resolve(`${tls ? "https" : "http"}://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`);
      });
    });
  }

  /**
   * Listens on a unix socket as well (0600: root's), with no connection limit: the operator's
   * way in on this machine, which no flood of TCP connections can take (docs/security.md).
   */
  async listenUnix(path: string): Promise<void> {
    const server = this.makeServer();
    await rm(path, { force: true }); // a socket left by an earlier run
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      const mask = process.umask(0o177);
      try {
        server.listen(path, () => (server.off("error", reject), resolve()));
      } finally {
        process.umask(mask);
      }
    });
    await chmod(path, 0o600);
  }

  /** A new certificate for the HTTPS servers (renewed before it expires): new connections get it. */
  useCert(tls: ApiTls): void {
    for (const server of this.servers) if (server instanceof https.Server) server.setSecureContext(secureContextOf(tls));
  }

  private makeServer(tls?: ApiTls): http.Server {
    // Timeouts are checked every second (Node's default is every 30 s).
    const timeouts = {
      headersTimeout: this.options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS,
      requestTimeout: Math.max(REQUEST_TIMEOUT_MS, this.options.headersTimeoutMs ?? 0),
      connectionsCheckingInterval: Math.min(1000, this.options.headersTimeoutMs ?? 1000),
    };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.handle(req, res);
    const server = tls ? https.createServer({ ...timeouts, ...secureContextOf(tls), minVersion: "TLSv1.2", handshakeTimeout: 10_000 }, handler) : http.createServer(timeouts, handler);
    server.keepAliveTimeout = 5000;
    // Node's headersTimeout starts at a request's first byte: a connection that sends nothing
    // gets the same time for its first request, then is closed.
    const firstRequest = this.options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
    // (Over TLS, the requests' socket is the TLS one, made once the handshake is done.)
    server.on(tls ? "secureConnection" : "connection", (socket: Socket) => {
      const timer = setTimeout(() => socket.destroy(), firstRequest);
      timer.unref();
      const clear = () => clearTimeout(timer);
      socket.once("close", clear);
      socket.once("constellation:request", clear);
    });
    server.on("request", (req: http.IncomingMessage) => req.socket.emit("constellation:request"));
    this.servers.push(server);
    return server;
  }

  async close(): Promise<void> {
    await Promise.all(
      this.servers.map((server) => {
        const closed = new Promise((r) => server.close(r));
        server.closeAllConnections(); // open streams (logs -f, events -f) too
        return closed;
      }),
    );
    this.servers = [];
  }
}
