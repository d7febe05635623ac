/**
 * The cluster's certificate authority (issue 11): `init` makes it, the controller signs each
 * joining node's certificate request with it, and every RNP link is mutual TLS with
 * certificates it signed. X.509 by @peculiar/x509 over node:crypto's WebCrypto; keys are ECDSA
 * P-256. Pure of I/O: PEM strings in, PEM strings out (the controller keeps the CA's key in its
 * data dir, 0600; nodes keep their own keys).
 */
import "reflect-metadata"; // @peculiar/x509 needs the Reflect metadata API
import { createHash, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";
import { BACKDATE_MS, type CertAndKey, CertificateError, type NodeIdentity } from "./identity.js";

export { BACKDATE_MS, type CertAndKey, CertificateError, type NodeIdentity, fingerprint, identityOf, renewAt } from "./identity.js";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY = 86_400_000;

async function newKeys(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString("base64").replace(/.{64}/g, "$&\n").trimEnd()}\n-----END PRIVATE KEY-----\n`;
}

async function importKey(pem: string): Promise<webcrypto.CryptoKey> {
  const der = Buffer.from(pem.replace(/-----(BEGIN|END) PRIVATE KEY-----|\s/g, ""), "base64");
  return webcrypto.subtle.importKey("pkcs8", der, ALG, false, ["sign"]) as Promise<webcrypto.CryptoKey>;
}

/** RFC 4514 value escaping for a name we put in a subject (cluster and node names are checked before, this is belt and braces). */
const rdn = (v: string) => v.replace(/([,+"\\<>;=])/g, "\\$1");

/** A new cluster CA: self-signed, for ten years, allowed to sign node certificates only. */
export async function createCa(cluster: string, now = Date.now()): Promise<CertAndKey> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${rdn(cluster)} cluster CA, O=constellation`,
    keys,
    signingAlgorithm: SIGN,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + 3650 * DAY),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString("pem"), key: await keyPem(keys.privateKey) };
}

/** A node's key and its certificate request, naming the node. */
export async function createCsr(node: string): Promise<{ csr: string; key: string }> {
  const keys = await newKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${rdn(node)}`, keys, signingAlgorithm: SIGN });
  return { csr: csr.toString("pem"), key: await keyPem(keys.privateKey) };
}

/**
 * Signs a node's certificate request with the CA: the subject and names are the controller's
 * (from the join it admitted), not the request's; only the request's public key is taken, and
 * only if the request is signed by its key (proof the node holds it).
 */
export async function signCsr(
  ca: CertAndKey,
  csrPem: string,
  id: NodeIdentity & { addresses: string[]; validDays?: number },
  now = Date.now(),
): Promise<{ cert: string; serial: string; notAfter: number }> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new CertificateError(`the certificate request is not a PEM PKCS#10 request: ${(err as Error).message}`);
  }
  if (!(await csr.verify())) throw new CertificateError("the certificate request is not signed by its own key");
  const alg = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256") throw new CertificateError("the certificate request's key is not ECDSA P-256");
  const caCert = new x509.X509Certificate(ca.cert);
  const serial = createHash("sha256").update(webcrypto.getRandomValues(new Uint8Array(32))).digest("hex").slice(0, 32).replace(/^[089a-f]/, "7"); // first byte 0x10-0x7f: positive, and no leading zero byte (DER would drop it: 1 node in 256 was refused)
  const notAfter = now + (id.validDays ?? 90) * DAY;
  const names = id.addresses.map((a) => (isIP(a) ? { type: "ip" as const, value: a } : { type: "dns" as const, value: a }));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${rdn(id.node)}, OU=${id.role}, O=${rdn(id.cluster)}`,
    issuer: caCert.subject,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(notAfter),
    publicKey: await csr.publicKey.export(),
    signingKey: await importKey(ca.key),
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: id.node }, ...names], false),
      await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
    ],
  });
  return { cert: cert.toString("pem"), serial, notAfter };
}
