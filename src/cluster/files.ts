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
import { randomBytes } from "node:crypto";
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

/** The node's cluster identity, if it has one. */
export function readClusterFiles(dataDir: string): ClusterFiles | undefined {
  const dir = join(dataDir, CLUSTER_DIR);
  if (!existsSync(join(dir, "cluster.json"))) return undefined;
  finishSwap(dir); // a renewal cut short by a crash
  const meta = JSON.parse(readFileSync(join(dir, "cluster.json"), "utf8")) as Pick<ClusterFiles, "name" | "node" | "role" | "controller">;
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  return {
    ...meta,
    caCert: read("ca.crt"),
    ...(meta.role === "controller" ? { caKey: read("ca.key") } : {}),
    cert: read("node.crt"),
    key: read("node.key"),
  };
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
