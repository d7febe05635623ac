/**
 * A star's tokens are found by its name alone (src/controller/tokens.ts): dropping them reads the
 * star's index, not every token of the cluster (a star's start did that: 92 ms at 10,000 tokens,
 * most of a storm of creates); tokens saved before the index existed are indexed once.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { dropStarTokens, indexStarTokens, lookupToken, newToken, saveToken, tokenKey } from "../../src/controller/tokens.js";
import { KEYS, type TokenRecord } from "../../src/model/records.js";
import { openStore } from "../../src/store/open.js";

test("a star's tokens are dropped through its index, others' untouched, without reading every token", async () => {
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  try {
    const admin = newToken();
    await saveToken(store, admin, "admin", "admin");
    const mine = [newToken(), newToken()];
    for (const t of mine) await saveToken(store, t, "star", "star:web", { star: { name: "web", uid: "u1" } });
    const other = newToken();
    await saveToken(store, other, "star", "star:web2", { star: { name: "web2", uid: "u2" } });
    // A token of an older version: no index key.
    const legacy = newToken();
    await store.put(tokenKey(legacy), JSON.stringify({ scope: "star", name: "star:web", createdAt: 0, star: { name: "web", uid: "u0" } } satisfies TokenRecord));
    await indexStarTokens(store);
    const ranged: string[] = [];
    const range = store.range.bind(store);
    store.range = (r, o) => {
      ranged.push("prefix" in r && r.prefix ? r.prefix : "key" in r ? r.key : "?");
      return range(r, o);
    };
    await dropStarTokens(store, "web");
    assert.deepEqual(ranged, [`${KEYS.starTokens}web/`], "only the star's index was read");
    for (const t of [...mine, legacy]) assert.equal(await lookupToken(store, t), undefined);
    assert.ok(await lookupToken(store, admin));
    assert.ok(await lookupToken(store, other), "another star's token (web2, a name that starts with web) stays");
    store.range = range;
    const { kvs } = await store.range({ prefix: `${KEYS.starTokens}web/` });
    assert.deepEqual(kvs, [], "its index is gone too");
  } finally {
    await store.close();
  }
});
