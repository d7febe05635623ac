/**
 * The cluster's gossip keyring in the store (KEYS.gossipKeyring): made once by the controller
 * (init), rotated the way memberlist's keyring is — install a new key everywhere, use it, then
 * remove the old one — each change a compare-and-set that raises the version, so two operators
 * rotating at once cannot lose each other's step. Nodes fetch it over RNP (agent.gossipKeys)
 * when their heartbeat's answer names a newer version.
 */
import { checkGossipKey, gossipKeyId, newGossipKey } from "../cluster/gossip/keyring.js";
import { InvalidArgumentError, TokenNotFoundError } from "../model/errors.js";
import { type GossipKeyring, KEYS } from "../model/records.js";
import { follow } from "../store/follow.js";
import type { Store } from "../store/types.js";

/** What `gossip key ls` shows of a key: its id, never the key. */
export interface GossipKeyView {
  id: string;
  primary: boolean;
}

/** At most this many keys open packets at once (a rotation needs two). */
export const MAX_GOSSIP_KEYS = 8;

function parse(value: string): GossipKeyring {
  const r = JSON.parse(value) as GossipKeyring;
  if (!Number.isSafeInteger(r.version) || typeof r.primary !== "string" || !Array.isArray(r.keys) || !r.keys.includes(r.primary)) {
    throw new Error(`the gossip keyring in the store (${KEYS.gossipKeyring}) is not one`);
  }
  return r;
}

/** The keyring, made with one new key if the store has none yet (once: two controllers cannot make two). */
export async function ensureGossipKeyring(store: Store): Promise<GossipKeyring> {
  for (;;) {
    const kv = await store.get(KEYS.gossipKeyring);
    if (kv) return parse(kv.value);
    const key = newGossipKey();
    const made: GossipKeyring = { version: 1, primary: key, keys: [key] };
    const r = await store.txn({
      compare: [{ key: KEYS.gossipKeyring, target: "version", op: "=", value: 0 }],
      success: [{ type: "put", key: KEYS.gossipKeyring, value: JSON.stringify(made) }],
    });
    if (r.succeeded) return made;
  }
}

/** The keys by id (the primary first). */
export function viewKeyring(r: GossipKeyring): { version: number; keys: GossipKeyView[] } {
  const ids = [r.primary, ...r.keys.filter((k) => k !== r.primary)].map((k) => ({ id: gossipKeyId(k), primary: k === r.primary }));
  return { version: r.version, keys: ids };
}

/** A key of the ring named by itself or by its id (TokenNotFoundError if none). */
export function findGossipKey(r: GossipKeyring, keyOrId: string): string {
  const k = r.keys.find((key) => key === keyOrId || gossipKeyId(key) === keyOrId.toLowerCase());
  if (!k) throw new TokenNotFoundError(keyOrId, "gossip key", "constellation gossip key ls");
  return k;
}

async function change(store: Store, f: (r: GossipKeyring) => Omit<GossipKeyring, "version">): Promise<GossipKeyring> {
  for (;;) {
    const kv = await store.get(KEYS.gossipKeyring);
    if (!kv) {
      await ensureGossipKeyring(store);
      continue;
    }
    const r = parse(kv.value);
    const next: GossipKeyring = { version: r.version + 1, ...f(r) };
    const res = await store.txn({
      compare: [{ key: KEYS.gossipKeyring, target: "modRevision", op: "=", value: kv.modRevision }],
      success: [{ type: "put", key: KEYS.gossipKeyring, value: JSON.stringify(next) }],
    });
    if (res.succeeded) return next;
  }
}

/**
 * Replaces every key with one new one (a node revoked: its copy of the keyring opens nothing
 * from now on). Nodes take the new keyring at their next heartbeat, or as soon as a packet
 * sealed with it reaches them.
 */
export function replaceGossipKeyring(store: Store): Promise<GossipKeyring> {
  const key = newGossipKey();
  return change(store, () => ({ primary: key, keys: [key] }));
}

/** Installs a key (a new random one if none is given): nodes open packets sealed with it. */
export async function installGossipKey(store: Store, key = newGossipKey()): Promise<{ keyring: GossipKeyring; key: string }> {
  try {
    checkGossipKey(key);
  } catch (err) {
    throw new InvalidArgumentError("key", `${(err as Error).message}: make one with \`constellation gossip key install\` (no key), or \`openssl rand -base64 32\``);
  }
  const keyring = await change(store, (r) => {
    if (r.keys.includes(key)) return r;
    if (r.keys.length >= MAX_GOSSIP_KEYS) throw new InvalidArgumentError("key", `the keyring holds ${r.keys.length} keys, the most it may: remove one no longer used first`);
    return { primary: r.primary, keys: [...r.keys, key] };
  });
  return { keyring, key };
}

/** Makes an installed key the one that seals (every node must have it installed first). */
export function useGossipKey(store: Store, keyOrId: string): Promise<GossipKeyring> {
  return change(store, (r) => ({ primary: findGossipKey(r, keyOrId), keys: r.keys }));
}

/** Removes a key that no longer seals: packets sealed with it are dropped from then on. */
export function removeGossipKey(store: Store, keyOrId: string): Promise<GossipKeyring> {
  return change(store, (r) => {
    const k = findGossipKey(r, keyOrId);
    if (k === r.primary) throw new InvalidArgumentError("key", `key ${gossipKeyId(k)} is the one in use: \`constellation gossip key use\` another first`);
    return { primary: r.primary, keys: r.keys.filter((x) => x !== k) };
  });
}

/**
 * Calls `onChange` with the keyring now and after every change, until `signal` aborts (a watch
 * that breaks is made again from a fresh read).
 */
export function followGossipKeyring(store: Store, onChange: (r: GossipKeyring) => void, signal: AbortSignal, log: (line: string) => void): Promise<void> {
  return follow(
    store,
    { key: KEYS.gossipKeyring },
    (kvs) => {
      if (kvs[0]) onChange(parse(kvs[0].value));
    },
    signal,
    (err, failures) => {
      if (failures === 0) log(`gossip: following the keyring in the store failed (${err.message}); trying again`);
    },
  );
}
