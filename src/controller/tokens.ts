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
  options: { star?: StarRef; ttlSeconds?: number } = {},
): Promise<TokenRecord> {
  const now = Date.now();
  const record: TokenRecord = { scope, name, createdAt: now };
  if (options.ttlSeconds !== undefined) record.expiresAt = now + options.ttlSeconds * 1000;
  if (options.star) record.star = { name: options.star.name, uid: options.star.uid };
  await store.put(tokenKey(token), JSON.stringify(record));
  return record;
}

/** Whether a token record is a token of star `name` (of any creation of that name). */
const belongsTo = (r: TokenRecord, name: string) => r.star?.name === name || (r.scope === "star" && r.name === `star:${name}`);

/** Deletes every token of star `name` (when the star is removed, or gets a new token). */
export async function dropStarTokens(store: Store, name: string): Promise<void> {
  const { kvs } = await store.range({ prefix: KEYS.tokens });
  for (const kv of kvs) {
    if (belongsTo(JSON.parse(kv.value) as TokenRecord, name)) await store.delete({ key: kv.key });
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
