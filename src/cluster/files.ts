/**
 * A node's cluster identity in its data dir (issue 11), written once, whole or not at all:
 *
 *   cluster/cluster.json   { name, node, role, controller? }   which cluster, as whom, and where its controller is
 *   cluster/ca.crt         the cluster CA's certificate (the only issuer trusted)
 *   cluster/ca.key         the CA's key (a controller only; 0600)
 *   cluster/node.crt       this node's certificate, signed by the CA
 *   cluster/node.key       its key (0600)
 *
 * The directory is made under another name and renamed into place, so a crash leaves either
 * no identity (the node joins again) or a whole one.
 */
import { type KeyObject, X509Certificate, createPrivateKey, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidArgumentError } from "../model/errors.js";

export interface ClusterFiles {
  /** The cluster's name. */
  name: string;
  /** This node's name (in its certificate). */
  node: string;
  role: "controller" | "agent";
  /** For an agent: its controller's cluster address (HOST:PORT). */
  controller?: string;
  caCert: string;
  /** For a controller: the CA's key, with which it signs joining nodes' certificates. */
  caKey?: string;
  cert: string;
  key: string;
}

export const CLUSTER_DIR = "cluster";
const CLUSTER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** A cluster's name must be a DNS label (it goes into certificates). */
export function checkClusterName(name: string): string {
  if (!CLUSTER_NAME.test(name)) throw new InvalidArgumentError("cluster", `cluster name "${name}" is not a DNS label: lowercase letters, digits and dashes, at most 63 (e.g. production)`);
  return name;
}

/**
 * Replaces the node's certificate and key (a renewal): both written beside the old ones, then
 * renamed over them, key first. A crash between leaves `node.crt.next`, which the next read
 * finishes (the key is renamed first, so a new key is never paired with the old certificate
 * for long: the read completes the swap).
 */
export function replaceNodeCert(dataDir: string, cert: string, key: string): void {
  const dir = join(dataDir, CLUSTER_DIR);
  writeFileSync(join(dir, "node.key.next"), key, { mode: 0o600 });
  writeFileSync(join(dir, "node.crt.next"), cert, { mode: 0o644 });
  finishSwap(dir);
}

function finishSwap(dir: string): void {
  if (!existsSync(join(dir, "node.crt.next"))) return;
  if (existsSync(join(dir, "node.key.next"))) renameSync(join(dir, "node.key.next"), join(dir, "node.key"));
  renameSync(join(dir, "node.crt.next"), join(dir, "node.crt"));
}

/**
 * The node's cluster identity, if it has one. A damaged or missing file, a key that is not its
 * certificate's, or a certificate the CA did not sign is a clear error naming the file.
 */
export function readClusterFiles(dataDir: string): ClusterFiles | undefined {
  const dir = join(dataDir, CLUSTER_DIR);
  if (!existsSync(join(dir, "cluster.json"))) return undefined;
  finishSwap(dir); // a renewal cut short by a crash
  const damaged = (f: string, why: string) =>
    new InvalidArgumentError("cluster", `${join(dir, f)} ${why}: restore ${dir} from a backup, or make this node anew (remove ${dir}, then join with a new token)`);
  const read = (f: string) => {
    try {
      return readFileSync(join(dir, f), "utf8");
    } catch (err) {
      throw damaged(f, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  let meta: Pick<ClusterFiles, "name" | "node" | "role" | "controller">;
  try {
    meta = JSON.parse(read("cluster.json")) as typeof meta;
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw err;
    throw damaged("cluster.json", "is damaged (not JSON)");
  }
  const ok =
    typeof meta === "object" && meta !== null && typeof meta.name === "string" && CLUSTER_NAME.test(meta.name) && typeof meta.node === "string" && meta.node.length > 0 &&
    (meta.role === "controller" || (meta.role === "agent" && typeof meta.controller === "string"));
  if (!ok) throw damaged("cluster.json", "is damaged (it must name the cluster, the node, its role, and an agent's controller)");
  const pem = (f: string, kind: "certificate" | "key") => {
    const text = read(f);
    try {
      return { text, value: kind === "certificate" ? new X509Certificate(text) : createPrivateKey(text) };
    } catch {
      throw damaged(f, `is damaged (not a PEM ${kind})`);
    }
  };
  const ca = pem("ca.crt", "certificate");
  const cert = pem("node.crt", "certificate");
  const key = pem("node.key", "key");
  const caX = ca.value as X509Certificate;
  const certX = cert.value as X509Certificate;
  if (!certX.checkPrivateKey(key.value as KeyObject)) throw damaged("node.key", "is not the key of node.crt");
  if (!certX.verify(caX.publicKey)) throw damaged("node.crt", "is not signed by ca.crt");
  let caKey: string | undefined;
  if (meta.role === "controller") {
    const k = pem("ca.key", "key");
    if (!caX.checkPrivateKey(k.value as KeyObject)) throw damaged("ca.key", "is not the key of ca.crt");
    caKey = k.text;
  }
  return { ...meta, caCert: ca.text, ...(caKey !== undefined ? { caKey } : {}), cert: cert.text, key: key.text };
}

/** Writes a new identity (there must be none yet). */
export function writeClusterFiles(dataDir: string, files: ClusterFiles): void {
  const dir = join(dataDir, CLUSTER_DIR);
  if (existsSync(dir)) throw new InvalidArgumentError("cluster", `${dir} exists already: this node belongs to a cluster`);
  const tmp = join(dataDir, `.${CLUSTER_DIR}-${randomBytes(6).toString("hex")}`);
  mkdirSync(tmp, { mode: 0o700 });
  try {
    const meta = { name: files.name, node: files.node, role: files.role, ...(files.controller ? { controller: files.controller } : {}) };
    writeFileSync(join(tmp, "cluster.json"), `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o644 });
    writeFileSync(join(tmp, "ca.crt"), files.caCert, { mode: 0o644 });
    if (files.caKey) writeFileSync(join(tmp, "ca.key"), files.caKey, { mode: 0o600 });
    writeFileSync(join(tmp, "node.crt"), files.cert, { mode: 0o644 });
    writeFileSync(join(tmp, "node.key"), files.key, { mode: 0o600 });
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
