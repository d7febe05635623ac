/** `--store etcd://…` and its client TLS files: the etcd an HA cluster's controllers share (server/ha.ts). */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { InvalidArgumentError } from "./errors.js";

/** etcd's client TLS, as files (paths made absolute): the CA that signed etcd's certificate, and this controller's certificate and key for etcd's `--client-cert-auth`. */
export interface EtcdTlsFiles {
  ca: string;
  cert?: string;
  key?: string;
}

/** What `--store` gives: etcd's client URLs, and the TLS files if etcd's link is TLS. */
export interface EtcdStoreConfig {
  backend: "etcd";
  endpoints: string[];
  tls?: EtcdTlsFiles;
}

/**
 * `etcd://h1:2379,h2:2379` (or `etcd://https://h1:2379,...`) → the endpoints as URLs; with
 * TLS files (`--store-ca`, and `--store-cert` with `--store-key`) the endpoints are https. Anything
 * else is a clear error.
 */
export function parseStoreUrl(url: string, tls: { ca?: string; cert?: string; key?: string } = {}): EtcdStoreConfig {
  const m = /^etcd:\/\/(.+)$/.exec(url.trim());
  if (!m) throw new InvalidArgumentError("store", `--store takes etcd://HOST:PORT[,HOST:PORT...] (the etcd members' client addresses), got "${url}"`);
  const endpoints = m[1]!.split(",").map((e) => e.trim());
  for (const e of endpoints) {
    const hostPort = e.replace(/^https?:\/\//, "");
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(hostPort) || Number(hostPort.split(":").at(-1)) > 65535) {
      throw new InvalidArgumentError("store", `--store: "${e}" is not HOST:PORT (e.g. etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379)`);
    }
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new InvalidArgumentError("store", "--store-cert and --store-key go together: this controller's certificate for etcd and its key");
  }
  if (tls.cert !== undefined && tls.ca === undefined) {
    throw new InvalidArgumentError("store", "--store-cert needs --store-ca too: the CA that signed etcd's own certificate");
  }
  const secure = tls.ca !== undefined;
  if (secure && endpoints.some((e) => e.startsWith("http://"))) {
    throw new InvalidArgumentError("store", "--store-ca makes the link to etcd TLS: its endpoints are https:// (or give them without a scheme)");
  }
  if (!secure && endpoints.some((e) => e.startsWith("https://"))) {
    throw new InvalidArgumentError("store", "an https:// etcd needs --store-ca FILE (the CA that signed etcd's certificate), and --store-cert/--store-key if etcd asks for a client certificate");
  }
  const files = secure ? { ca: resolve(tls.ca!), ...(tls.cert !== undefined ? { cert: resolve(tls.cert), key: resolve(tls.key!) } : {}) } : undefined;
  if (files) readEtcdTls(files); // each file readable and PEM, now rather than at the first connection
  return {
    backend: "etcd",
    endpoints: endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `${secure ? "https" : "http"}://${e}`)),
    ...(files ? { tls: files } : {}),
  };
}

/** The TLS files' contents (each must be readable and PEM of the right kind), with what to do if not. */
export function readEtcdTls(files: EtcdTlsFiles): { ca: Buffer; cert?: Buffer; key?: Buffer } {
  const read = (flag: string, path: string, kind: RegExp, what: string): Buffer => {
    let body: Buffer;
    try {
      body = readFileSync(path);
    } catch (err) {
      throw new InvalidArgumentError("store", `${flag} ${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): give the path of ${what}`);
    }
    if (body.includes("ENCRYPTED PRIVATE KEY") || body.includes("Proc-Type: 4,ENCRYPTED")) {
      throw new InvalidArgumentError("store", `${flag} ${path}: is encrypted with a passphrase: give the key unencrypted, in a file only root can read`);
    }
    if (!kind.test(body.toString("latin1"))) throw new InvalidArgumentError("store", `${flag} ${path}: is not ${what} in PEM (-----BEGIN ...-----)`);
    return body;
  };
  const CERT = /-----BEGIN CERTIFICATE-----/;
  return {
    ca: read("--store-ca", files.ca, CERT, "the CA certificate that signed etcd's certificate"),
    ...(files.cert !== undefined && files.key !== undefined
      ? {
          cert: read("--store-cert", files.cert, CERT, "this controller's client certificate for etcd"),
          key: read("--store-key", files.key, /-----BEGIN (EC |RSA )?PRIVATE KEY-----/, "the private key of --store-cert"),
        }
      : {}),
  };
}
