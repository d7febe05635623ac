/**
 * What members say to each other (docs/gossip.md): packets, and the news they carry. Short
 * keys: a packet goes in one UDP datagram and its size is the protocol's cost. Pure:
 * `parsePacket` takes a decoded value and returns a typed packet or throws saying what was wrong.
 */

/** A member's own description, carried with its alive news (addresses, resources, labels, version). */
export type Meta = Record<string, unknown>;

/** News: a member is alive (at an incarnation, with its address and meta), suspected, or dead. */
export type News =
  | { k: "a"; n: string; i: number; ad: string; m: Meta }
  | { k: "s"; n: string; i: number; f: string }
  | { k: "d"; n: string; i: number; f: string };

/** One member in a full state exchange. st: 0 alive, 1 suspect, 2 dead, 3 left. */
export interface StateEntry {
  n: string;
  ad: string;
  i: number;
  st: 0 | 1 | 2 | 3;
  m: Meta;
}

export type Packet =
  /** Are you there? `n`: who the sender means to reach (a member that moved does not answer for another). */
  | { t: "ping"; q: number; f: string; n: string; g?: News[] }
  | { t: "ack"; q: number; f: string; g?: News[] }
  /** Please probe `n` at `a` for me, and answer with seq `q`. */
  | { t: "preq"; q: number; f: string; n: string; a: string; g?: News[] }
  /** I asked `n` for you and heard nothing (so you know your own link is fine). */
  | { t: "nack"; q: number; f: string }
  | { t: "gos"; f: string; g: News[] }
  /**
   * Full state, in parts that each fit a packet (`k`: the part's index; each part stands alone):
   * sent (`push`, `j` when joining), and answered with the receiver's (`pull`) to part 0.
   */
  | { t: "push"; f: string; a: string; j: boolean; k: number; s: StateEntry[] }
  | { t: "pull"; f: string; k: number; s: StateEntry[] };

export class GossipProtocolError extends Error {
  override readonly name = "GossipProtocolError";
  readonly code = "GOSSIP_BAD_PACKET";
}

/** Most members one part of a state exchange may carry. */
export const MAX_STATE_ENTRIES = 1024;
/** Most news one packet may carry. */
const MAX_NEWS = 256;
const MAX_META_KEYS = 64;

function bad(what: string): never {
  throw new GossipProtocolError(what);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function name(x: unknown, what: string): string {
  if (typeof x !== "string" || x.length === 0 || x.length > 253) bad(`${what}: a member name of 1 to 253 characters`);
  return x;
}

function address(x: unknown, what: string): string {
  if (typeof x !== "string" || x.length === 0 || x.length > 300) bad(`${what}: an address of 1 to 300 characters`);
  return x;
}

function counter(x: unknown, what: string): number {
  if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) bad(`${what}: a whole number ≥ 0`);
  return x;
}

/**
 * A member's meta: plain JSON (strings, finite numbers, booleans, null, lists, objects) at most
 * META_DEPTH deep and META_BYTES long as JSON — so it always fits a packet with room for a
 * refutation (memberlist's limit is 512 bytes), and nothing in it can fail to be sent on.
 */
export function checkMeta(x: unknown): Meta {
  if (!isObject(x) || Object.keys(x).length > MAX_META_KEYS) bad(`meta: an object of at most ${MAX_META_KEYS} keys`);
  const plain = (v: unknown, depth: number): boolean => {
    if (v === null || typeof v === "string" || typeof v === "boolean") return true;
    if (typeof v === "number") return Number.isFinite(v);
    if (depth >= META_DEPTH || typeof v !== "object") return false;
    return Array.isArray(v) ? v.every((e) => plain(e, depth + 1)) : Object.values(v).every((e) => plain(e, depth + 1));
  };
  if (!plain(x, 0)) bad(`meta: plain JSON values only, at most ${META_DEPTH} deep`);
  if (JSON.stringify(x).length > META_BYTES) bad(`meta: at most ${META_BYTES} bytes as JSON`);
  return x;
}
const meta = checkMeta;

/** Meta's limits (see checkMeta). */
export const META_BYTES = 512;
const META_DEPTH = 4;

/**
 * Incarnations past this are refused: a refutation is the incarnation heard plus one, so a
 * member pushed to the largest one could never refute again (a key holder's attack).
 */
export const MAX_INCARNATION = 2 ** 48;

function incarnation(x: unknown, what: string): number {
  const i = counter(x, what);
  if (i > MAX_INCARNATION) bad(`${what}: an incarnation of at most 2^48`);
  return i;
}

function news(x: unknown): News {
  if (!isObject(x)) bad("news: an object");
  const n = name(x.n, "news.n");
  const i = incarnation(x.i, "news.i");
  switch (x.k) {
    case "a":
      return { k: "a", n, i, ad: address(x.ad, "news.ad"), m: meta(x.m) };
    case "s":
    case "d":
      return { k: x.k, n, i, f: name(x.f, "news.f") };
    default:
      return bad(`news.k: one of a, s, d (got ${String(x.k).slice(0, 20)})`);
  }
}

function newsList(x: unknown): News[] | undefined {
  if (x === undefined) return undefined;
  if (!Array.isArray(x) || x.length > MAX_NEWS) bad(`g: a list of at most ${MAX_NEWS} news`);
  return x.map(news);
}

function state(x: unknown): StateEntry[] {
  if (!Array.isArray(x) || x.length > MAX_STATE_ENTRIES) bad(`s: a list of at most ${MAX_STATE_ENTRIES} members`);
  return x.map((e) => {
    if (!isObject(e)) bad("s[]: an object");
    const st = e.st;
    if (st !== 0 && st !== 1 && st !== 2 && st !== 3) bad("s[].st: 0, 1, 2 or 3");
    return { n: name(e.n, "s[].n"), ad: address(e.ad, "s[].ad"), i: incarnation(e.i, "s[].i"), st, m: meta(e.m) };
  });
}

/** A decoded packet, checked: every field of the right kind and size, or a GossipProtocolError. */
export function parsePacket(x: unknown): Packet {
  if (!isObject(x)) bad("a packet is an object");
  const f = name(x.f, "f");
  const withNews = <P extends object>(p: P): P => {
    const g = newsList(x.g);
    return g === undefined ? p : { ...p, g };
  };
  switch (x.t) {
    case "ping":
      return withNews({ t: "ping", q: counter(x.q, "q"), f, n: name(x.n, "n") });
    case "ack":
      return withNews({ t: "ack", q: counter(x.q, "q"), f });
    case "preq":
      return withNews({ t: "preq", q: counter(x.q, "q"), f, n: name(x.n, "n"), a: address(x.a, "a") });
    case "nack":
      return { t: "nack", q: counter(x.q, "q"), f };
    case "gos":
      return { t: "gos", f, g: newsList(x.g) ?? bad("g: news") };
    case "push":
      if (typeof x.j !== "boolean") bad("j: true or false");
      return { t: "push", f, a: address(x.a, "a"), j: x.j, k: counter(x.k, "k"), s: state(x.s) };
    case "pull":
      return { t: "pull", f, k: counter(x.k, "k"), s: state(x.s) };
    default:
      return bad(`t: not a packet type (${String(x.t).slice(0, 20)})`);
  }
}
