/**
 * RNP messages (docs/rnp.md): the shapes a frame body may decode to, checked before anything
 * acts on them. Pure: `parseMessage` takes a decoded value and returns a typed message or
 * throws a ProtocolError saying what was wrong.
 */

export const PROTOCOL_VERSIONS = [1] as const;

export const T = {
  hello: 0,
  request: 1,
  response: 2,
  error: 3,
  item: 4,
  end: 5,
  cancel: 6,
  credit: 7,
  ping: 8,
  pong: 9,
} as const;

export const ERROR_CODES = [
  "bad-request",
  "not-found",
  "conflict",
  "unauthorized",
  "forbidden",
  "unavailable",
  "unsupported-version",
  "too-large",
  "internal",
  "cancelled",
  "deadline",
  "gone",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface Hello {
  versions: number[];
  node?: string;
  cluster?: string;
  /** A controller's API over HTTPS (its URL), for what runs on the nodes (stars' SDK). */
  api?: string;
  /** A controller's gossip member (host:port), through which a node joins the gossip. */
  gossip?: string;
  maxFrame?: number;
}

export type Message =
  | { t: typeof T.hello; hello: Hello }
  | { t: typeof T.request; id: number; method: string; body: unknown; stream: boolean }
  | { t: typeof T.response; id: number; body: unknown }
  | { t: typeof T.error; id: number; code: ErrorCode; message: string }
  | { t: typeof T.item; id: number; body: unknown }
  | { t: typeof T.end; id: number }
  | { t: typeof T.cancel; id: number }
  | { t: typeof T.credit; id: number; n: number }
  | { t: typeof T.ping; nonce: number }
  | { t: typeof T.pong; nonce: number };

export class ProtocolError extends Error {}

/** The wire form of a message: the array docs/rnp.md gives for its type. */
export function toWire(m: Message): unknown[] {
  switch (m.t) {
    case T.hello:
      return [m.t, m.hello];
    case T.request:
      return m.stream ? [m.t, m.id, m.method, m.body ?? null, true] : [m.t, m.id, m.method, m.body ?? null];
    case T.response:
    case T.item:
      return [m.t, m.id, m.body ?? null];
    case T.error:
      return [m.t, m.id, m.code, m.message];
    case T.end:
    case T.cancel:
      return [m.t, m.id];
    case T.credit:
      return [m.t, m.id, m.n];
    case T.ping:
    case T.pong:
      return [m.t, m.nonce];
  }
}

const MAX_METHOD = 64;
const MAX_ERROR_MESSAGE = 4096;

/** A decoded frame body as a message, or a ProtocolError saying what is wrong with it. */
export function parseMessage(v: unknown): Message {
  if (!Array.isArray(v) || v.length === 0) throw new ProtocolError(`a message is an array beginning with its type, not ${kindOf(v)}`);
  const t = v[0];
  const arity = (min: number, max = min) => {
    if (v.length < min || v.length > max) throw new ProtocolError(`a message of type ${String(t)} has ${min === max ? min : `${min} to ${max}`} elements, not ${v.length}`);
  };
  switch (t) {
    case T.hello: {
      arity(2);
      return { t, hello: parseHello(v[1]) };
    }
    case T.request: {
      arity(4, 5);
      const method = v[2];
      if (typeof method !== "string" || method.length === 0 || method.length > MAX_METHOD || !/^[a-z][A-Za-z0-9.-]*$/.test(method)) {
        throw new ProtocolError(`a request's method is a name like "status.report" (at most ${MAX_METHOD} characters), not ${kindOf(method)}`);
      }
      if (v.length === 5 && typeof v[4] !== "boolean") throw new ProtocolError(`a request's stream flag is true or false, not ${kindOf(v[4])}`);
      return { t, id: id(v[1]), method, body: v[3], stream: v[4] === true };
    }
    case T.response:
    case T.item:
      arity(3);
      return { t, id: id(v[1]), body: v[2] };
    case T.error: {
      arity(4);
      const code = v[2];
      if (typeof code !== "string" || !(ERROR_CODES as readonly string[]).includes(code)) throw new ProtocolError(`an error's code is one of ${ERROR_CODES.join(", ")}, not ${kindOf(code)}`);
      const message = v[3];
      if (typeof message !== "string" || message.length > MAX_ERROR_MESSAGE) throw new ProtocolError(`an error's message is a string of at most ${MAX_ERROR_MESSAGE} characters`);
      return { t, id: id(v[1]), code: code as ErrorCode, message };
    }
    case T.end:
    case T.cancel:
      arity(2);
      return { t, id: id(v[1]) };
    case T.credit: {
      arity(3);
      const n = v[2];
      if (!Number.isSafeInteger(n) || (n as number) < 1 || (n as number) > 65_536) throw new ProtocolError(`a credit is a whole number from 1 to 65536, not ${kindOf(n)}`);
      return { t, id: id(v[1]), n: n as number };
    }
    case T.ping:
    case T.pong:
      arity(2);
      return { t, nonce: id(v[1]) };
    default:
      throw new ProtocolError(`unknown message type ${kindOf(t)}`);
  }
}

function parseHello(h: unknown): Hello {
  if (h === null || typeof h !== "object" || Array.isArray(h)) throw new ProtocolError(`a hello is a map, not ${kindOf(h)}`);
  const o = h as Record<string, unknown>;
  const versions = o.versions;
  if (!Array.isArray(versions) || versions.length === 0 || versions.length > 16 || !versions.every((x) => Number.isSafeInteger(x) && x > 0)) {
    throw new ProtocolError("a hello lists the protocol versions it speaks (1 to 16 whole numbers)");
  }
  const hello: Hello = { versions: versions as number[] };
  for (const k of ["node", "cluster", "api", "gossip"] as const) {
    const s = o[k];
    if (s === undefined) continue;
    if (typeof s !== "string" || s.length > 253) throw new ProtocolError(`a hello's ${k} is a name of at most 253 characters`);
    hello[k] = s;
  }
  if (o.maxFrame !== undefined) {
    if (!Number.isSafeInteger(o.maxFrame) || (o.maxFrame as number) < 1024) throw new ProtocolError("a hello's maxFrame is a whole number of bytes, at least 1024");
    hello.maxFrame = o.maxFrame as number;
  }
  return hello;
}

function id(x: unknown): number {
  if (!Number.isSafeInteger(x) || (x as number) < 0) throw new ProtocolError(`an id is a whole number from 0 to 2^53, not ${kindOf(x)}`);
  return x as number;
}

/** What a value is, for an error message (never the value itself, which may be large). */
function kindOf(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return `an array of ${x.length}`;
  if (typeof x === "string") return x.length <= 40 && /^[\x20-\x7e]*$/.test(x) ? JSON.stringify(x) : `a string of ${x.length} characters`;
  if (typeof x === "number") return String(x);
  if (typeof x === "object") return "a map";
  return typeof x;
}
