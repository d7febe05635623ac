/**
 * A node's connection to a controller of its cluster (mutual TLS 1.3): only the cluster's CA is
 * trusted and only a controller's certificate of this cluster is taken. Nothing is sent before
 * the controller's certificate is judged; a refusal says why, with the dates and this machine's
 * time when the certificate's dates are the cause (a clock far off, usually).
 */
import { type TLSSocket, connect } from "node:tls";
import { certDatesProblem, identityOf } from "./tls/identity.js";

export function dialController(o: { host: string; port: number; cert: string; key: string; ca: string; cluster: string; timeoutMs: number; target: string }): Promise<TLSSocket> {
  return new Promise<TLSSocket>((done, fail) => {
    const s = connect({
      host: o.host,
      port: o.port,
      cert: o.cert,
      key: o.key,
      ca: o.ca,
      minVersion: "TLSv1.3",
      // Judged at secureConnect below (so that a refusal can name the certificate's dates).
      rejectUnauthorized: false,
      checkServerIdentity: (_name, cert) => {
        const id = identityOf(cert.raw);
        if (!id || id.role !== "controller" || id.cluster !== o.cluster) return new Error(`${o.target} is not a controller of cluster ${o.cluster}`);
        return undefined;
      },
    });
    const timer = setTimeout(() => s.destroy(new Error(`${o.target} did not answer within ${o.timeoutMs / 1000} s`)), o.timeoutMs);
    s.once("secureConnect", () => {
      clearTimeout(timer);
      if (!s.authorized) {
        const why = certDatesProblem(s.authorizationError, s.getPeerCertificate(), `the controller's (${o.target})`, o.ca) ?? refusal(s.authorizationError, o.target);
        s.destroy();
        fail(new Error(why));
        return;
      }
      s.setNoDelay(true); // small frames, answered at once: no Nagle delay behind a delayed ACK
      done(s);
    });
    s.once("error", (err) => {
      clearTimeout(timer);
      fail(err);
    });
  });
}

/** Why a controller's certificate was not taken (OpenSSL's code, or checkServerIdentity's message). */
function refusal(error: unknown, target: string): string {
  const text = error instanceof Error ? error.message : String(error);
  if (/^[A-Z_]+$/.test(text)) return `${target}'s certificate is not one of this cluster's CA (${text})`;
  return text;
}
