/**
 * A node's gossip member (docs/gossip.md, "How nodes run it"): every node of a cluster, its
 * controller's too, runs one on UDP (`--gossip-port`, default 7947) at the address other
 * machines reach it, sealed with the cluster's keyring, its meta what others should know of
 * it without asking the store. A node keeps its copy of the keyring, the port it listened on
 * and where it joined in its data dir (cluster/gossip.json, root's only), so after a restart it
 * gossips at once — while its controller is away too — on the same address.
 */
import { chmodSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLUSTER_DIR } from "../cluster/files.js";
import type { GossipConfig } from "../cluster/gossip/config.js";
import { Keyring } from "../cluster/gossip/keyring.js";
import { META_BYTES, type Meta } from "../cluster/gossip/messages.js";
import type { MemberState, MemberView } from "../cluster/gossip/swim.js";
import { GossipNode } from "../cluster/gossip/udp.js";
import { RuntimeUnavailableError } from "../model/errors.js";
import type { GossipKeyring, NodeRecord } from "../model/records.js";
import { type MembersView, membersFile } from "../model/node-files.js";

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
  try {
    const c = JSON.parse(readFileSync(cacheFile(dataDir), "utf8")) as GossipCache;
    new Keyring(c.keyring.primary, c.keyring.keys); // each key is one
    if (!Number.isSafeInteger(c.keyring.version)) return undefined;
    return c;
  } catch {
    return undefined;
  }
}

/** Keeps the cache whole (written beside, then renamed), root's only: it holds the cluster key. */
export function writeGossipCache(dataDir: string, cache: GossipCache): void {
  const file = cacheFile(dataDir);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(cache)}\n`, { mode: 0o600 });
  chmodSync(`${file}.tmp`, 0o600);
  renameSync(`${file}.tmp`, file);
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
      meta: o.meta,
      ...(o.config ? { config: o.config } : {}),
      seeds: o.seeds ?? [],
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
      const file = membersFile(o.dataDir);
      writeFileSync(`${file}.tmp`, `${JSON.stringify(view)}\n`, { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
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
  return {
    address: node.address,
    port,
    get version() {
      return version;
    },
    setKeyring(r) {
      if (r.version <= version) return;
      keyring.set(r.primary, r.keys.filter((k) => k !== r.primary));
      version = r.version;
      o.keyring = r;
      save(seeds);
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
      clearTimeout(writing);
    },
    close: () => {
      stopped = true;
      clearTimeout(writing);
      node.close();
    },
  };
}
