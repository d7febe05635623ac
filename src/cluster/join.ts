/**
 * Joining a cluster with a token (issue 11), as Docker Swarm does it and safer where its users
 * were bitten: the token names the cluster CA by its SHA-256 fingerprint, so the joining node
 * checks it is talking to this cluster's controller before it sends anything (no trust on first
 * use); the secret is kept only as a hash, expires, and can be revoked; the controller, not the
 * node, chooses the names in the certificate it signs, and a name already in use is refused.
 *
 *   token:  cjt1.<CA fingerprint, 64 hex>.<id, 12 hex>.<secret, 43 base64url>
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Duplex } from "node:stream";
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { connect } from "node:tls";
import { z } from "zod";
import { type CertRecord, type JoinTokenRecord, KEYS, nodeKey } from "../model/records.js";
import type { Store } from "../store/types.js";
import { RnpError, RnpPeer } from "./rnp/peer.js";
import { type CertAndKey, certDatesProblem, fingerprint, identityOf } from "./tls/identity.js";
import { createCsr, signCsr } from "./tls/signer.js";

const TOKEN = /^cjt1\.([0-9a-f]{64})\.([0-9a-f]{12})\.([A-Za-z0-9_-]{43})$/;
const NODE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const DEFAULT_JOIN_TTL_S = 24 * 3600;

export interface ParsedJoinToken {
  caFingerprint: string;
  id: string;
  secret: string;
}

export function parseJoinToken(token: string): ParsedJoinToken | undefined {
  const m = TOKEN.exec(token.trim());
  return m ? { caFingerprint: m[1]!, id: m[2]!, secret: m[3]! } : undefined;
}

const hash = (secret: string) => createHash("sha256").update(secret).digest("hex");

/** A new join token, recorded (its secret's hash) in the store; the token is shown once. */
export async function createJoinToken(store: Store, caCert: string, options: { ttlSeconds?: number; role?: "agent" | "controller" } = {}): Promise<{ token: string; id: string; expiresAt: number }> {
  const id = randomBytes(6).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  const now = Date.now();
  const record: JoinTokenRecord = { secretHash: hash(secret), role: options.role ?? "agent", createdAt: now, expiresAt: now + (options.ttlSeconds ?? DEFAULT_JOIN_TTL_S) * 1000 };
  await store.put(`${KEYS.joinTokens}${id}`, JSON.stringify(record));
  return { token: `cjt1.${fingerprint(caCert)}.${id}.${secret}`, id, expiresAt: record.expiresAt };
}

export async function revokeJoinToken(store: Store, id: string): Promise<boolean> {
  const kv = await store.get(`${KEYS.joinTokens}${id}`);
  if (!kv) return false;
  const r = JSON.parse(kv.value) as JoinTokenRecord;
  await store.put(kv.key, JSON.stringify({ ...r, revokedAt: r.revokedAt ?? Date.now() }));
  return true;
}

export async function listJoinTokens(store: Store): Promise<Array<JoinTokenRecord & { id: string }>> {
  const { kvs } = await store.range({ prefix: KEYS.joinTokens });
  return kvs.map((kv) => ({ id: kv.key.slice(KEYS.joinTokens.length), ...(JSON.parse(kv.value) as JoinTokenRecord) }));
}

/** An address a certificate may name: an IP address, or a DNS name (no wildcard). */
const ADDRESS = z
  .string()
  .max(253)
  .refine((a) => isIP(a) !== 0 || /^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/i.test(a), "each address is an IP address or a DNS name (no wildcards)");

export const joinBody = z.strictObject({
  token: z.string().max(200),
  node: z.string().regex(NODE_NAME, "a node name is a DNS label: lowercase letters, digits and dashes, at most 63"),
  csr: z.string().max(8192),
  addresses: z.array(ADDRESS).max(16),
});

/** What a joining node gets: its certificate, the CA's, and the cluster's name. */
export interface Admission {
  cert: string;
  caCert: string;
  cluster: string;
  role: "agent" | "controller";
}

/**
 * The controller's side of a join: the token must be this cluster's, known, unexpired and not
 * revoked, and the node's name not in use; then the node's request is signed with the names
 * the controller chose. Every refusal is an RnpError saying what to do.
 */
export async function admit(store: Store, ca: CertAndKey, cluster: string, raw: unknown, validDays?: number): Promise<Admission> {
  const parsed = joinBody.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new RnpError("bad-request", `join: ${i.path.join(".") || "body"}: ${i.message}`);
  }
  const { token, node, csr, addresses } = parsed.data;
  const t = parseJoinToken(token);
  if (!t) throw new RnpError("unauthorized", "the join token is not one: copy it whole from `constellation token create --join` (it begins with cjt1.)");
  if (t.caFingerprint !== fingerprint(ca.cert)) throw new RnpError("unauthorized", "the join token is for another cluster's CA");
  const kv = await store.get(`${KEYS.joinTokens}${t.id}`);
  const record = kv ? (JSON.parse(kv.value) as JoinTokenRecord) : undefined;
  const given = Buffer.from(hash(t.secret), "hex");
  if (!record || !timingSafeEqual(given, Buffer.from(record.secretHash, "hex"))) throw new RnpError("unauthorized", "the join token is not known to this cluster: make a new one with `constellation token create --join`");
  if (record.revokedAt !== undefined) throw new RnpError("unauthorized", `the join token ${t.id} was revoked: make a new one`);
  if (record.expiresAt <= Date.now()) throw new RnpError("unauthorized", `the join token ${t.id} expired at ${new Date(record.expiresAt).toISOString()}: make a new one`);
  // The name is taken once, atomically: a second join under it (at once or later) is refused,
  // so no token holder can hold a certificate for a name a real machine takes afterwards.
  const inUse = () => new RnpError("conflict", `a node named ${node} is already in the cluster: give this one another name (--node)`);
  if (await store.get(nodeKey(node))) throw inUse();
  const nameKey = `${KEYS.nodeNames}${node}`;
  const taken = await store.txn({ compare: [{ key: nameKey, target: "createRevision", op: "=", value: 0 }], success: [{ type: "put", key: nameKey, value: JSON.stringify({ at: Date.now(), joinToken: t.id }) }] });
  if (!taken.succeeded) throw inUse();
  const { cert, serial, notAfter } = await signCsr(ca, csr, { cluster, node, role: record.role, addresses, ...(validDays ? { validDays } : {}) }).catch(async (err: Error) => {
    await store.delete({ key: nameKey }).catch(() => undefined); // nothing issued: the name is free again
    throw new RnpError("bad-request", `join: ${err.message}`);
  });
  const issued: CertRecord = { node, role: record.role, issuedAt: Date.now(), notAfter, joinToken: t.id, addresses };
  await store.put(`${KEYS.certs}${serial}`, JSON.stringify(issued));
  return { cert, caCert: ca.cert, cluster, role: record.role };
}

export const renewBody = z.strictObject({ csr: z.string().max(8192) });

/**
 * A node's certificate renewed before it expires (the node asks over its own connection, so
 * only for itself): a new certificate for the new key with the same names, recorded as issued;
 * the one it replaces is revoked (its connection goes on; it cannot connect with it again).
 */
export async function renew(store: Store, ca: CertAndKey, cluster: string, node: string, serial: string, raw: unknown, validDays?: number): Promise<{ cert: string }> {
  const parsed = renewBody.safeParse(raw);
  if (!parsed.success) throw new RnpError("bad-request", `renew: ${parsed.error.issues[0]!.message}`);
  // The connection's certificate, or the one that last replaced it through a renewal (a
  // connection made before a renewal goes on, and renews again when that one is due).
  let kv = await store.get(`${KEYS.certs}${serial}`);
  let old = kv ? (JSON.parse(kv.value) as CertRecord) : undefined;
  for (let hops = 0; kv && old?.renewedTo !== undefined && hops < 1000; hops++) {
    kv = await store.get(`${KEYS.certs}${old.renewedTo}`);
    old = kv ? (JSON.parse(kv.value) as CertRecord) : undefined;
  }
  if (!kv || !old || old.node !== node || old.revokedAt !== undefined) throw new RnpError("unauthorized", "renew: this connection's certificate is not one the controller holds valid");
  // Only when due (a node asks at two thirds of its certificate's life; half allows for its
  // clock): a node cannot make the controller sign and record certificates without end.
  const dueAt = old.issuedAt + (old.notAfter - old.issuedAt) / 2;
  if (Date.now() < dueAt) throw new RnpError("bad-request", `renew: this node's certificate is not due for renewal before ${new Date(dueAt).toISOString()}`);
  const cordon = await store.get(`${KEYS.cordons}${node}`);
  if (cordon && (JSON.parse(cordon.value) as { revoked?: boolean }).revoked) throw new RnpError("unauthorized", `renew: node ${node} is revoked`);
  const signed = await signCsr(ca, parsed.data.csr, { cluster, node, role: old.role, addresses: old.addresses ?? [], ...(validDays ? { validDays } : {}) }).catch((err: Error) => {
    throw new RnpError("bad-request", `renew: ${err.message}`);
  });
  const issued: CertRecord = { node, role: old.role, issuedAt: Date.now(), notAfter: signed.notAfter, ...(old.addresses ? { addresses: old.addresses } : {}), renewedFrom: serial };
  // At once, and only if neither this certificate nor the node changed meanwhile: a revocation
  // (which marks the node first, then its certificates) never misses the new one.
  const done = await store.txn({
    compare: [
      { key: kv.key, target: "modRevision", op: "=", value: kv.modRevision },
      { key: `${KEYS.cordons}${node}`, target: "modRevision", op: "=", value: cordon?.modRevision ?? 0 },
    ],
    success: [
      { type: "put", key: `${KEYS.certs}${signed.serial}`, value: JSON.stringify(issued) },
      { type: "put", key: kv.key, value: JSON.stringify({ ...old, revokedAt: Date.now(), renewedTo: signed.serial }) },
    ],
  });
  if (!done.succeeded) throw new RnpError("unavailable", "renew: this node's certificate or state changed meanwhile (a renewal or revocation at the same time); try again");
  return { cert: signed.cert };
}

/**
 * The joining node's side: connects to `address` (host:port), checks that the controller's
 * certificate chain ends in the CA the token names (before sending anything), and trades the
 * token and a new key's certificate request for its certificate.
 */
export async function joinCluster(options: { address: string; token: string; node: string; addresses?: string[]; timeoutMs?: number }): Promise<Admission & { key: string }> {
  const t = parseJoinToken(options.token);
  if (!t) throw new RnpError("unauthorized", "the join token is not one: copy it whole from `constellation token create --join` (it begins with cjt1.)");
  const [host, portText] = splitAddress(options.address);
  const socket = await new Promise<Duplex>((resolve, reject) => {
    const s = connect({ host, port: Number(portText), rejectUnauthorized: false, minVersion: "TLSv1.3", servername: host.match(/^[\d.:]+$/) ? undefined : host });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new RnpError("unavailable", `no answer from ${options.address} within ${options.timeoutMs ?? 10_000} ms`));
    }, options.timeoutMs ?? 10_000);
    s.once("secureConnect", () => {
      clearTimeout(timer);
      // The chain the controller sent: its certificate, then the CA that signed it.
      const leaf = s.getPeerCertificate(true);
      const issuer = leaf.issuerCertificate;
      const pinned = issuer?.raw && createHash("sha256").update(issuer.raw).digest("hex") === t.caFingerprint;
      const signed = pinned && new X509Certificate(leaf.raw).verify(new X509Certificate(issuer.raw).publicKey);
      // ...and it is a controller's: another node's certificate (of the same CA) gets no token.
      if (signed && identityOf(leaf.raw)?.role !== "controller") {
        s.destroy();
        reject(new RnpError("unauthorized", `${options.address} is a node of the cluster this token is for, not its controller: give the controller's address`));
        return;
      }
      if (!signed) {
        s.destroy();
        reject(new RnpError("unauthorized", `${options.address} is not a controller of the cluster this token is for (its certificate is not signed by the CA the token names)`));
        return;
      }
      // Its dates by this machine's clock: a clock far off would fail every connection after the join.
      const now = Date.now();
      const dates = certDatesProblem(now < Date.parse(leaf.valid_from) ? "CERT_NOT_YET_VALID" : now > Date.parse(leaf.valid_to) ? "CERT_HAS_EXPIRED" : undefined, leaf, `the controller's (${options.address})`, undefined, now);
      if (dates) {
        s.destroy();
        reject(new RnpError("unauthorized", dates));
        return;
      }
      resolve(s);
    });
    s.once("error", (err) => {
      clearTimeout(timer);
      reject(new RnpError("unavailable", `cannot reach ${options.address}: ${err.message}`));
    });
  });
  const peer = new RnpPeer(socket, { role: "client", hello: { node: options.node } });
  try {
    const { csr, key } = await createCsr(options.node);
    const admission = (await peer.call("cluster.join", { token: options.token, node: options.node, csr, addresses: options.addresses ?? [] }, { timeoutMs: options.timeoutMs ?? 10_000 })) as Admission;
    if (fingerprint(admission.caCert) !== t.caFingerprint) throw new RnpError("unauthorized", "the controller answered with another CA than the token names");
    return { ...admission, key };
  } finally {
    peer.close();
  }
}

export function splitAddress(address: string): [string, string] {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(address);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new RnpError("bad-request", `"${address}" is not HOST:PORT (e.g. 10.0.0.10:7946)`);
  return [m[1]!, m[2]!];
}
