/**
 * The SDK's transport: JSON over HTTP with node:http and a keep-alive agent (already loaded by
 * Node, so the CLI starts fast). An error answer becomes an ApiError carrying the server's code.
 */
import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import { ApiUnavailableError, ConstellationError, type ErrorCode } from "../model/errors.js";

/** An error the API answered with: its stable code, message, and the field it is about. */
export class ApiError extends ConstellationError {
  readonly status: number;
  readonly field?: string;
  readonly issues?: Array<{ field: string; message: string }>;
  constructor(status: number, body: { code?: string; message?: string; field?: string; issues?: Array<{ field: string; message: string }> }) {
    super((body.code ?? "API_BAD_REQUEST") as ErrorCode, body.message ?? `HTTP ${status}`);
    this.status = status;
    if (body.field !== undefined) this.field = body.field;
    if (body.issues !== undefined) this.issues = body.issues;
  }
}

export interface Transport {
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
  /** A newline-delimited JSON stream (logs, events). */
  stream<T>(path: string, signal?: AbortSignal): AsyncIterable<T>;
  close(): void;
}

/**
 * `ca`: for an https:// endpoint, the only CA its certificate may come from (the cluster's,
 * pinned by `constellation login`); the host name is checked against the certificate as usual.
 */
export function httpTransport(endpoint: string, token: string, options: { ca?: string } = {}): Transport {
  let base: URL;
  // unix:/path/api.sock: HTTP over the node's unix socket.
  const socketPath = endpoint.startsWith("unix:") ? endpoint.slice("unix:".length) : undefined;
  try {
    base = new URL(socketPath === undefined ? endpoint : "http://localhost");
  } catch {
    throw new ApiUnavailableError(`the endpoint ${JSON.stringify(endpoint)} is not a URL: give one like http://127.0.0.1:7070 or unix:/path/api.sock`);
  }
  const secure = base.protocol === "https:";
  if (base.protocol !== "http:" && !secure) throw new ApiUnavailableError(`endpoint ${endpoint}: give http://, https:// or unix:`);
  if (secure && options.ca === undefined) throw new ApiUnavailableError(`endpoint ${endpoint}: an https:// endpoint needs the cluster's CA (constellation login ${endpoint} --ca-fingerprint F --token T pins it)`);
  if (secure && !/-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----/.test(options.ca!)) {
    throw new ApiUnavailableError(`the cluster CA given for ${endpoint} (CONSTELLATION_CA, or the login) is not a PEM certificate: give the CA's certificate, or log in again`);
  }
  // The address checked as usual, and the certificate must be a controller's (OU=controller): every
  // node of the cluster holds a certificate of the same CA, which must not pass for the API.
  const checkServerIdentity = (host: string, cert: tls.PeerCertificate): Error | undefined =>
    tls.checkServerIdentity(host, cert) ?? (cert.subject?.OU === "controller" ? undefined : Object.assign(new Error(`the certificate of ${endpoint} is not a controller's (${cert.subject?.CN ?? "?"}, ${cert.subject?.OU ?? "?"})`), { code: "ERR_TLS_CERT_NOT_CONTROLLER" }));
  const agent = secure ? new https.Agent({ keepAlive: true, maxSockets: 16, ca: options.ca!, minVersion: "TLSv1.2", checkServerIdentity }) : new http.Agent({ keepAlive: true, maxSockets: 16 });
  const client = secure ? https : http;
  const headers = { authorization: `Bearer ${token}`, accept: "application/json" };

  const send = (method: string, path: string, body: unknown, signal?: AbortSignal, retried = false): Promise<http.IncomingMessage> =>
    new Promise<http.IncomingMessage>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = client.request(
        {
          agent,
          ...(socketPath === undefined ? { host: base.hostname, port: base.port } : { socketPath }),
          method,
          path,
          headers: payload === undefined ? headers : { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
          ...(signal ? { signal } : {}),
        },
        resolve,
      );
      req.on("error", (err: NodeJS.ErrnoException) => {
        if (err.name === "AbortError") reject(err);
        // A kept-alive connection the server closed as idle just as this request went out on it:
        // the request never reached it. Once, on a new connection (as Node's documentation advises).
        else if (req.reusedSocket && !retried && (err.code === "ECONNRESET" || err.code === "EPIPE")) send(method, path, body, signal, true).then(resolve, reject);
        else if (secure && err.code === "ERR_TLS_CERT_ALTNAME_INVALID") {
          reject(new ApiUnavailableError(`the certificate of ${endpoint} is not for ${base.hostname} (${err.message}): use an address it names`, err));
        } else if (secure && err.code === "ERR_TLS_CERT_NOT_CONTROLLER") {
          reject(new ApiUnavailableError(`${err.message}: it may not stand for the API`, err));
        } else if (secure && /CERT|SIGNATURE|SELF_SIGNED|TLS/.test(err.code ?? "")) {
          reject(new ApiUnavailableError(`the constellation at ${endpoint} is not of the pinned cluster: its certificate is not from that CA (${err.code}); log in again if the cluster was remade`, err));
        } else reject(new ApiUnavailableError(`cannot reach the constellation at ${endpoint} (${err.code ?? err.message}): is \`constellation up\` running?`, err));
      });
      req.end(payload);
    });

  const readAll = async (res: http.IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  };

  const failure = async (res: http.IncomingMessage): Promise<never> => {
    const text = await readAll(res);
    let body: { error?: Record<string, unknown> } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // not ours
    }
    if (!body.error) throw new ApiUnavailableError(`${endpoint} answered HTTP ${res.statusCode} without an API error: is it a constellation?`);
    throw new ApiError(res.statusCode ?? 0, body.error);
  };

  return {
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      const res = await send(method, path, body);
      if ((res.statusCode ?? 0) >= 400) return failure(res);
      const text = await readAll(res);
      return (text ? JSON.parse(text) : undefined) as T;
    },
    async *stream<T>(path: string, signal?: AbortSignal): AsyncIterable<T> {
      const res = await send("GET", path, undefined, signal);
      if ((res.statusCode ?? 0) >= 400) await failure(res);
      let buf = "";
      try {
        for await (const chunk of res) {
          buf += (chunk as Buffer).toString("utf8");
          for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line) yield JSON.parse(line) as T;
          }
        }
      } catch (err) {
        if (signal?.aborted) return;
        if (err instanceof ApiError || (err as Error).name === "SyntaxError") throw err;
        throw new ApiUnavailableError(`the constellation at ${endpoint} closed the stream (${(err as Error).message}): is it still up?`, err);
      }
    },
    close() {
      agent.destroy();
    },
  };
}
