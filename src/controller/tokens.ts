/**
 * API tokens. A token is 32 random bytes (base64url, prefixed "cst_" so it is recognisable in a
 * leak scan); the store keeps only its SHA-256 with its record (see TokenRecord). A token's id is
 * the first 12 hex digits of that hash: enough to name it, useless to use it.
 */
import { createHash, randomBytes } from "node:crypto";
import { InvalidArgumentError, TokenNotFoundError } from "../model/errors.js";
import type { Store } from "../store/types.js";
import { KEYS, type StarRef, type TokenInfo, type TokenRecord, type TokenScope } from "../model/records.js";

/** Hex digits of a token's hash shown as its id. */
export const TOKEN_ID_LENGTH = 12;

/** A token as `GET /v1/tokens` lists it: never the token, nor its whole hash. */

export function newToken(): string {
  return `cst_${randomBytes(32).toString("base64url")}`;
}

export function tokenKey(token: string): string {
  return `${KEYS.tokens}${createHash("sha256").update(token).digest("hex")}`;
}

export async function saveToken(
  store: Store,
  token: string,
  scope: TokenScope,
  name: string,
  options: { star?: StarRef; ttlSeconds?: number; namespace?: string } = {},
): Promise<TokenRecord> {
  const now = Date.now();
  const record: TokenRecord = { scope, name, createdAt: now };
  if (options.namespace !== undefined) record.namespace = options.namespace;
  if (options.ttlSeconds !== undefined) record.expiresAt = now + options.ttlSeconds * 1000;
  if (options.star) record.star = { name: options.star.name, uid: options.star.uid };
  const key = tokenKey(token);
  // A star's token is indexed under its star's name too: dropping a star's tokens reads those alone.
  await store.txn({
    success: [{ type: "put", key, value: JSON.stringify(record) }, ...(options.star ? [{ type: "put" as const, key: starTokenKey(options.star.name, key), value: "" }] : [])],
  });
  return record;
}

function starTokenKey(star: string, key: string): string {
  return `${KEYS.starTokens}${star}/${key.slice(KEYS.tokens.length)}`;
}


/**
 * Deletes every token of star `name` (when the star is removed, or gets a new token): those its
 * index names (a start of a star used to read every token of the cluster: 92 ms at 10,000).
 */
export async function dropStarTokens(store: Store, name: string): Promise<void> {
  const { kvs } = await store.range({ prefix: `${KEYS.starTokens}${name}/` }, { keysOnly: true });
  for (let i = 0; i < kvs.length; i += 32) {
    const ops = kvs.slice(i, i + 32).flatMap((kv) => [
      { type: "delete" as const, range: { key: kv.key } },
      { type: "delete" as const, range: { key: `${KEYS.tokens}${kv.key.slice(`${KEYS.starTokens}${name}/`.length)}` } },
    ]);
    await store.txn({ success: ops });
  }
}

/**
 * Indexes star tokens saved before the index existed (once, as a controller starts): each token
 * record of a star gets its index key.
 */
export async function indexStarTokens(store: Store): Promise<void> {
  const { kvs } = await store.range({ prefix: KEYS.tokens });
  const { kvs: indexed } = await store.range({ prefix: KEYS.starTokens }, { keysOnly: true });
  const known = new Set(indexed.map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1)));
  for (const kv of kvs) {
    const r = JSON.parse(kv.value) as TokenRecord;
    const star = r.star?.name ?? (r.scope === "star" && r.name.startsWith("star:") ? r.name.slice(5) : undefined);
    if (star === undefined || known.has(kv.key.slice(KEYS.tokens.length))) continue;
    await store.put(starTokenKey(star, kv.key), "");
  }
}

/** The token's record, or undefined if it is not one of ours. */
/** Whether a string has the form of a token (newToken's). */
export function isTokenForm(token: string): boolean {
  return /^cst_[A-Za-z0-9_-]{20,100}$/.test(token);
}

export async function lookupToken(store: Store, token: string): Promise<TokenRecord | undefined> {
  if (!isTokenForm(token)) return undefined;
  const kv = await store.get(tokenKey(token));
  return kv ? (JSON.parse(kv.value) as TokenRecord) : undefined;
}

/** Every token, by id (oldest first). */
export async function listTokens(store: Store): Promise<TokenInfo[]> {
  const { kvs } = await store.range({ prefix: KEYS.tokens });
  return kvs
    .map((kv) => {
      const r = JSON.parse(kv.value) as TokenRecord;
      const info: TokenInfo = { id: kv.key.slice(KEYS.tokens.length, KEYS.tokens.length + TOKEN_ID_LENGTH), scope: r.scope, name: r.name, createdAt: r.createdAt };
      if (r.star) info.star = r.star.name;
      if (r.namespace !== undefined) info.namespace = r.namespace;
      if (r.expiresAt !== undefined) info.expiresAt = r.expiresAt;
      return info;
    })
    .sort((a, b) => a.createdAt - b.createdAt);
}

/** Revokes the one token whose id starts with `id` (hex, 4+ digits); returns its id. */
export async function revokeToken(store: Store, id: string): Promise<string> {
  const prefix = id.toLowerCase();
  if (!/^[0-9a-f]{4,64}$/.test(prefix)) {
    throw new InvalidArgumentError("id", `a token id is 4 to 64 hex digits (the ID column of \`constellation token ls\`), got ${JSON.stringify(id.slice(0, 70))}`);
  }
  const { kvs } = await store.range({ prefix: `${KEYS.tokens}${prefix}` }, { keysOnly: true });
  if (kvs.length === 0) throw new TokenNotFoundError(id);
  if (kvs.length > 1) throw new InvalidArgumentError("id", `${kvs.length} tokens have ids starting with ${id}: give more of the id`);
  await store.delete({ key: kvs[0]!.key });
  return kvs[0]!.key.slice(KEYS.tokens.length, KEYS.tokens.length + TOKEN_ID_LENGTH);
}
