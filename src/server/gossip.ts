/**
 * A node's gossip member (docs/gossip.md, "How nodes run it"): every node of a cluster, its
 * controller's too, runs one on UDP (`--gossip-port`, default 7947) at the address other
 * machines reach it, sealed with the cluster's keyring, its meta what others should know of
 * it without asking the store. A node keeps its copy of the keyring, the port it listened on
 * and where it joined in its data dir (cluster/gossip.json, root's only), so after a restart it
 * gossips at once — while its controller is away too — on the same address.
 */
import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLUSTER_DIR } from "../cluster/files.js";
import type { GossipConfig } from "../cluster/gossip/config.js";
import { Keyring } from "../cluster/gossip/keyring.js";
import { META_BYTES, type Meta } from "../cluster/gossip/messages.js";
import type { MemberState, MemberView } from "../cluster/gossip/swim.js";
import { GossipNode } from "../cluster/gossip/udp.js";
import { RuntimeUnavailableError } from "../model/errors.js";
import type { GossipKeyring, NodeRecord } from "../model/records.js";
import { type MembersView, VIEW_EVERY_MS, membersFile } from "../model/node-files.js";

/** The gossip's UDP port when none is given. */
export const GOSSIP_PORT = 7947;

/** A member's state as the node's gossip sees it, and since when (ms since the epoch). */
export interface GossipState {
  state: MemberState;
  since: number;
}

export interface NodeGossip {
  /** Where others reach this member (host:port). */
  readonly address: string;
  readonly port: number;
  /** The keyring version in use. */
  readonly version: number;
  /** Uses keyring `r` from now on (if it is newer than the one in use). */
  setKeyring(r: GossipKeyring): void;
  /** Joins through these members (host:port). */
  join(seeds: string[]): void;
  /** What gossip says of a member by name. */
  state(name: string): GossipState | undefined;
  members(): MemberView[];
  readonly node: GossipNode;
  /** Says this member leaves, then stops. */
  leave(): Promise<void>;
  close(): void;
}

export interface NodeGossipOptions {
  dataDir: string;
  name: string;
  /** Where to listen (default all IPv4 addresses). */
  host?: string;
  /** Default GOSSIP_PORT; 0: the port of the last start if free, else any free one. */
  port?: number;
  /** The host others reach this node at (its advertised address). */
  advertise: string;
  keyring: GossipKeyring;
  meta: Meta;
  seeds?: string[];
  config?: Partial<GossipConfig>;
  onChange?: (member: MemberView, before: MemberState | undefined) => void;
  /** A packet came that no key of the ring opens (a rotation this node has not heard of?). */
  onUnknownKey?: () => void;
  log: (line: string) => void;
}

/** What a node keeps of its gossip between starts. */
interface GossipCache {
  keyring: GossipKeyring;
  port?: number;
  seeds?: string[];
}

const cacheFile = (dataDir: string) => join(dataDir, CLUSTER_DIR, "gossip.json");

/** The node's kept copy of its gossip's keyring, port and seeds, if any (a broken file is none). */
export function readGossipCache(dataDir: string): GossipCache | undefined {
  let c: Partial<GossipCache>;
  try {
    c = JSON.parse(readFileSync(cacheFile(dataDir), "utf8")) as Partial<GossipCache>;
    const r = c.keyring!;
    if (!Number.isSafeInteger(r.version) || !Array.isArray(r.keys) || !r.keys.every((k) => typeof k === "string") || typeof r.primary !== "string") return undefined;
    new Keyring(r.primary, r.keys); // each key is one
  } catch {
    return undefined;
  }
  // What else is wrong in it is left out (the port and seeds come again from the controller).
  const port = Number.isInteger(c.port) && c.port! > 0 && c.port! < 65536 ? c.port : undefined;
  const seeds = Array.isArray(c.seeds) ? c.seeds.filter((s): s is string => typeof s === "string" && s.length <= 300).slice(0, 16) : undefined;
  return { keyring: { version: c.keyring!.version, primary: c.keyring!.primary, keys: c.keyring!.keys }, ...(port ? { port } : {}), ...(seeds ? { seeds } : {}) };
}

/**
 * Writes a file whole (beside it, then renamed over it) with `mode`; whatever was at the side
 * name (a planted symlink) is removed first and never followed.
 */
export function writeWhole(file: string, text: string, mode: number): void {
  const tmp = `${file}.tmp`;
  rmSync(tmp, { force: true });
  writeFileSync(tmp, text, { mode, flag: "wx" });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

/** Keeps the cache whole, root's only: it holds the cluster key. */
export function writeGossipCache(dataDir: string, cache: GossipCache): void {
  writeWhole(cacheFile(dataDir), `${JSON.stringify(cache)}\n`, 0o600);
}

/**
 * A node's meta for gossip: its resources, version, labels and addresses, as much as fits in a
 * packet's share (labels, then addresses, are left out until it fits).
 */
export function nodeMeta(node: Pick<NodeRecord, "cpuCores" | "memoryBytes" | "version" | "labels">, addresses: string[]): Meta {
  const full: Meta = { cpu: node.cpuCores, memory: node.memoryBytes, ...(node.version ? { version: node.version } : {}), addresses, ...(node.labels ? { labels: node.labels } : {}) };
  const fits = (m: Meta) => Buffer.byteLength(JSON.stringify(m)) <= META_BYTES;
  if (fits(full)) return full;
  const { labels: _, ...noLabels } = full;
  if (fits(noLabels)) return noLabels;
  for (let n = addresses.length - 1; n >= 0; n--) {
    const m = { ...noLabels, addresses: addresses.slice(0, n) };
    if (fits(m)) return m;
  }
  return { cpu: node.cpuCores, memory: node.memoryBytes };
}

/** Starts a node's gossip member: the port in use is a clear error, not a crash. */
export async function startNodeGossip(o: NodeGossipOptions): Promise<NodeGossip> {
  let version = o.keyring.version;
  const keyring = new Keyring(o.keyring.primary, o.keyring.keys);
  const host = o.host ?? "0.0.0.0";
  const wanted = o.port ?? GOSSIP_PORT;
  const cached = readGossipCache(o.dataDir);
  const last = wanted === 0 ? cached?.port : undefined;
  const start = (port: number) =>
    GossipNode.start({
      name: o.name,
      host,
      port,
      advertiseHost: o.advertise.replace(/^\[|\]$/g, ""),
      keyring,
      meta: { ...o.meta, keys: version },
      ...(o.config ? { config: o.config } : {}),
      seeds: o.seeds ?? [],
      ...(o.onUnknownKey ? { onUnsealed: o.onUnknownKey } : {}),
      onChange: (m, before) => {
        for (const f of changes) f(m, before);
        o.onChange?.(m, before);
      },
      log: o.log,
    });
  const changes: Array<(m: MemberView, before: MemberState | undefined) => void> = [];
  let node: GossipNode;
  try {
    // Port 0: the advertised port must be the bound one, known only once bound.
    node = last ? await start(last).catch(() => start(0)) : await start(wanted);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new RuntimeUnavailableError(`the gossip port ${wanted} (UDP) is in use (another node here?): stop it, or pass --gossip-port N`);
    if (code === "EACCES") throw new RuntimeUnavailableError(`no permission to listen on the gossip port ${wanted}: use a port above 1023`);
    throw err;
  }
  const port = node.port;
  const save = (seeds?: string[]) => {
    try {
      writeGossipCache(o.dataDir, { keyring: { version, primary: o.keyring.primary, keys: o.keyring.keys }, port, ...(seeds ? { seeds } : {}) });
    } catch (err) {
      o.log(`gossip: its copy of the keyring could not be kept in the data dir (${(err as Error).message}); it is fetched again at the next start`);
    }
  };
  let seeds = o.seeds;
  save(seeds);
  const wall = (since: number) => Math.round(Date.now() - (performance.now() - since));
  // The view on disk, written at most every 200 ms while members change (and once at the start).
  let writing: NodeJS.Timeout | undefined;
  const writeView = () => {
    writing = undefined;
    const view: MembersView = { self: o.name, at: Date.now(), members: node.swim.list().map((m) => ({ name: m.name, address: m.address, state: m.state, since: wall(m.since), incarnation: m.incarnation, meta: m.meta })) };
    try {
      writeWhole(membersFile(o.dataDir), `${JSON.stringify(view)}\n`, 0o600);
    } catch {
      // (a full disk: the view is written again at the next change)
    }
  };
  const viewChanged = () => {
    if (writing === undefined && !stopped) {
      writing = setTimeout(writeView, 200);
      writing.unref();
    }
  };
  let stopped = false;
  changes.push((m, before) => {
    viewChanged();
    // Rare in a healthy cluster, and what an operator looks for: each member not alive, said.
    if (m.name !== o.name && (m.state !== "alive" || (before !== undefined && before !== "alive"))) o.log(`gossip: node ${m.name} is ${m.state}${before ? ` (was ${before})` : ""}`);
  });
  writeView();
  // Written again now and then, so its time says the node still runs.
  const refresh = setInterval(() => viewChanged(), VIEW_EVERY_MS);
  refresh.unref();
  return {
    address: node.address,
    port,
    get version() {
      return version;
    },
    setKeyring(r) {
      // Any other keyring than the one in use (a store restored from a backup may hold an older
      // version: the store's word is taken, not the higher number).
      if (r.version === version && r.primary === o.keyring.primary && r.keys.join() === o.keyring.keys.join()) return;
      keyring.set(r.primary, r.keys.filter((k) => k !== r.primary));
      version = r.version;
      o.keyring = r;
      save(seeds);
      node.swim.setMeta({ ...o.meta, keys: version }); // others see which keyring it holds
    },
    join(s) {
      seeds = s;
      save(seeds);
      node.swim.join(s);
    },
    state(name) {
      const m = node.swim.member(name);
      return m && { state: m.state, since: wall(m.since) };
    },
    members: () => node.swim.list(),
    node,
    leave: async () => {
      await node.leave();
      stopped = true;
      clearInterval(refresh);
      clearTimeout(writing);
      writeView(); // the last view: this node left
    },
    close: () => {
      stopped = true;
      clearInterval(refresh);
      clearTimeout(writing);
      node.close();
    },
  };
}
