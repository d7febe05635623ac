/** `--store etcd://…` and its client TLS files: the etcd an HA cluster's controllers share (server/ha.ts). */
import { type KeyObject, X509Certificate, createPrivateKey } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
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

/** The most a PEM file given for etcd's link may hold (a certificate chain is a few KiB). */
const MAX_PEM_BYTES = 1 << 20;

/**
 * The TLS files' contents, each checked before any use: a regular file of at most 1 MiB, PEM of
 * the right kind that parses (the CA a CA's certificate, the key unencrypted and the
 * certificate's own, the certificate valid now by this machine's clock), with what to do if
 * not. `source` says where the paths came from (the flags, or the data dir's store.json).
 */
export function readEtcdTls(files: EtcdTlsFiles, source = "flags"): { ca: Buffer; cert?: Buffer; key?: Buffer } {
  const named = (flag: string) => (source === "flags" ? flag : `${flag.replace(/^--store-/, "")} in ${source}`);
  const read = (flag: string, path: string, what: string): Buffer => {
    const where = `${named(flag)} ${path}`;
    let fd: number | undefined;
    try {
      // Opened without blocking (a FIFO), then only a regular file of sane size is read.
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
      const st = fstatSync(fd);
      if (!st.isFile()) throw new InvalidArgumentError("store", `${where}: is not a regular file: give the path of ${what}`);
      if (st.size > MAX_PEM_BYTES) throw new InvalidArgumentError("store", `${where}: is ${st.size} bytes, more than a PEM file holds (at most ${MAX_PEM_BYTES}): give the path of ${what}`);
      const body = Buffer.alloc(st.size);
      let at = 0;
      while (at < st.size) {
        const n = readSync(fd, body, at, st.size - at, at);
        if (n === 0) break;
        at += n;
      }
      return body.subarray(0, at);
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw err;
      throw new InvalidArgumentError("store", `${where}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): give the path of ${what}`);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  };
  const certOf = (flag: string, path: string, body: Buffer, what: string): X509Certificate => {
    if (!body.toString("latin1").includes("-----BEGIN CERTIFICATE-----")) throw new InvalidArgumentError("store", `${named(flag)} ${path}: is not ${what} in PEM (-----BEGIN CERTIFICATE-----)`);
    try {
      return new X509Certificate(body);
    } catch {
      throw new InvalidArgumentError("store", `${named(flag)} ${path}: its PEM does not hold a certificate that parses: give ${what}`);
    }
  };
  const caBody = read("--store-ca", files.ca, "the CA certificate that signed etcd's certificate");
  const ca = certOf("--store-ca", files.ca, caBody, "the CA certificate that signed etcd's certificate");
  if (!ca.ca) throw new InvalidArgumentError("store", `${named("--store-ca")} ${files.ca}: is a certificate but not a CA's: give the CA that signed etcd's certificate (its --trusted-ca-file)`);
  if (files.cert === undefined || files.key === undefined) return { ca: caBody };
  const certBody = read("--store-cert", files.cert, "this controller's client certificate for etcd");
  const cert = certOf("--store-cert", files.cert, certBody, "this controller's client certificate for etcd");
  const keyBody = read("--store-key", files.key, "the private key of --store-cert");
  const keyText = keyBody.toString("latin1");
  if (keyText.includes("ENCRYPTED PRIVATE KEY") || keyText.includes("Proc-Type: 4,ENCRYPTED")) {
    throw new InvalidArgumentError("store", `${named("--store-key")} ${files.key}: is encrypted with a passphrase: give the key unencrypted, in a file only root can read`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyBody);
  } catch {
    throw new InvalidArgumentError("store", `${named("--store-key")} ${files.key}: is not a PEM private key that parses (-----BEGIN PRIVATE KEY-----): give the key of --store-cert`);
  }
  if (!cert.checkPrivateKey(key)) throw new InvalidArgumentError("store", `${named("--store-key")} ${files.key}: is not the key of ${files.cert}: give the key that goes with the certificate`);
  const now = Date.now();
  const clock = `this machine's clock says ${new Date(now).toISOString()}`;
  if (now < Date.parse(cert.validFrom)) throw new InvalidArgumentError("store", `${named("--store-cert")} ${files.cert}: is not valid until ${new Date(cert.validFrom).toISOString()} and ${clock}: is this machine's clock right?`);
  if (now > Date.parse(cert.validTo)) throw new InvalidArgumentError("store", `${named("--store-cert")} ${files.cert}: expired at ${new Date(cert.validTo).toISOString()} (${clock}): give a current certificate (or is the clock wrong?)`);
  return { ca: caBody, cert: certBody, key: keyBody };
}
