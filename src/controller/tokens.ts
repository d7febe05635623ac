/**
 * API tokens. A token is 32 random bytes (base64url, prefixed "cst_" so it is recognisable in a
 * leak scan); the store keeps only its SHA-256 with its scope (see TokenScope).
 */
import { createHash, randomBytes } from "node:crypto";
import type { Store } from "../store/types.js";
import { KEYS, type TokenRecord, type TokenScope } from "./model.js";

export function newToken(): string {
  return `cst_${randomBytes(32).toString("base64url")}`;
}

export function tokenKey(token: string): string {
  return `${KEYS.tokens}${createHash("sha256").update(token).digest("hex")}`;
}

export async function saveToken(store: Store, token: string, scope: TokenScope, name: string): Promise<void> {
  const record: TokenRecord = { scope, name, createdAt: Date.now() };
  await store.put(tokenKey(token), JSON.stringify(record));
}

/** Deletes every token made for `name` (a star's, when the star is removed). */
export async function dropTokensOf(store: Store, name: string): Promise<void> {
  const { kvs } = await store.range({ prefix: KEYS.tokens });
  for (const kv of kvs) {
    if ((JSON.parse(kv.value) as TokenRecord).name === name) await store.delete({ key: kv.key });
  }
}

/** The token's record, or undefined if it is not one of ours. */
export async function lookupToken(store: Store, token: string): Promise<TokenRecord | undefined> {
  if (!/^cst_[A-Za-z0-9_-]{20,100}$/.test(token)) return undefined;
  const kv = await store.get(tokenKey(token));
  return kv ? (JSON.parse(kv.value) as TokenRecord) : undefined;
}
