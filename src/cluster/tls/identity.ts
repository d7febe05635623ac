/**
 * Reading the cluster's certificates (issue 11): who a node certificate says it is, when it is
 * due for renewal, a CA's fingerprint. node:crypto only, so a running controller or node does
 * not hold the X.509 library that makes certificates (ca.ts, loaded only while signing:
 * signer.ts), which cost a node ~15 MB of memory.
 */
import { X509Certificate, createHash } from "node:crypto";

export interface CertAndKey {
  cert: string;
  key: string;
}

/** What a node's certificate says it is. */
export interface NodeIdentity {
  cluster: string;
  node: string;
  role: "controller" | "agent";
}

/** A certificate or request that cannot be used, and why. */
export class CertificateError extends Error {}

/** Certificates are made valid from this long before they are issued (clocks that lag). */
export const BACKDATE_MS = 5 * 60_000;

/**
 * When a certificate should be renewed: once two thirds of its life (from its issue, not its
 * backdated start) have passed.
 */
export function renewAt(cert: string): number {
  const id = identityOf(cert);
  if (!id) return 0;
  const issued = id.notBefore + BACKDATE_MS;
  return issued + ((id.notAfter - issued) * 2) / 3;
}

/** The SHA-256 of a certificate's DER, hex: what a join token pins the CA by. */
export function fingerprint(certPem: string): string {
  return createHash("sha256").update(new X509Certificate(certPem).raw).digest("hex");
}

/** Who a node certificate (PEM or DER) says it is, or undefined if it is not one of ours. */
export function identityOf(cert: string | Uint8Array): (NodeIdentity & { serial: string; notAfter: number; notBefore: number }) | undefined {
  try {
    const c = new X509Certificate(typeof cert === "string" ? cert : Buffer.from(cert));
    // The subject, one attribute a line ("CN=node-1\nOU=agent\nO=prod"); each at most once.
    const fields = new Map<string, string[]>();
    for (const line of c.subject.split("\n")) {
      const eq = line.indexOf("=");
      if (eq > 0) fields.set(line.slice(0, eq), [...(fields.get(line.slice(0, eq)) ?? []), line.slice(eq + 1)]);
    }
    const get = (type: string) => (fields.get(type)?.length === 1 ? fields.get(type)![0] : undefined);
    const node = get("CN");
    const role = get("OU");
    const cluster = get("O");
    if (!node || !cluster || (role !== "controller" && role !== "agent")) return undefined;
    const notBefore = Date.parse(c.validFrom);
    const notAfter = Date.parse(c.validTo);
    if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter)) return undefined;
    return { node, role, cluster, serial: c.serialNumber.toLowerCase(), notAfter, notBefore };
  } catch {
    return undefined;
  }
}

/**
 * A certificate refused for its dates (OpenSSL's CERT_NOT_YET_VALID or CERT_HAS_EXPIRED), said
 * with the dates and this machine's time, since a clock far off is the usual cause; undefined
 * for any other failure. `whose`: "the controller's", "node n-1's", "this node's".
 */
export function certDatesProblem(
  code: unknown,
  cert: { raw?: Buffer; valid_from?: string; valid_to?: string } | undefined,
  whose: string,
  /** The CA the certificate must be signed by for its dates to be the problem (absent: the caller checked). */
  ca?: string,
  now = Date.now(),
): string | undefined {
  if (code !== "CERT_NOT_YET_VALID" && code !== "CERT_HAS_EXPIRED") return undefined;
  // OpenSSL names only its last complaint: a certificate of another CA that is also out of date
  // is said as out of date. Only one this CA signed is the clock's problem.
  if (ca !== undefined && !signedBy(cert?.raw, ca)) return undefined;
  const iso = (d: string | undefined) => (d && Number.isFinite(Date.parse(d)) ? new Date(Date.parse(d)).toISOString() : undefined);
  const clock = `this machine's clock says ${new Date(now).toISOString()}`;
  if (code === "CERT_NOT_YET_VALID") {
    const from = iso(cert?.valid_from);
    return `${whose} certificate is not valid yet${from ? ` (from ${from})` : ""} and ${clock}: is this machine's clock right, or the other machine's?`;
  }
  if (code === "CERT_HAS_EXPIRED") {
    const to = iso(cert?.valid_to);
    return `${whose} certificate has expired${to ? ` (at ${to})` : ""} and ${clock}: if it should not have, is this machine's clock right, or the other machine's?`;
  }
  return undefined;
}

/** Whether `raw` (DER) is a certificate issued and signed by `caPem`. */
function signedBy(raw: Buffer | undefined, caPem: string): boolean {
  if (!raw || raw.length === 0) return false;
  try {
    const leaf = new X509Certificate(raw);
    const ca = new X509Certificate(caPem);
    return leaf.checkIssued(ca) && leaf.verify(ca.publicKey);
  } catch {
    return false;
  }
}
