/**
 * `up --adopt` (issue 9): records rebuilt from the node's stars. What the node gave a star (its
 * endpoint and token) is told from what the user gave it; a token held by one star only is known
 * again, one seen in two stars' env for neither (review: a child passed its parent's token, and
 * adopt gave the parent's token to the child).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KEYS, type StarRecord } from "../../src/model/records.js";
import { lookupToken, newToken } from "../../src/controller/tokens.js";
import { FakeRuntime } from "../../src/runtime/fake/fake-runtime.js";
import { adoptStars } from "../../src/server/adopt.js";
import { openStore } from "../../src/store/open.js";

describe("adopt", () => {
  it("keeps the user's env, strips the node's identity, and registers a token only for the one star it was given to", async () => {
    const store = await openStore({ backend: "sqlite", path: ":memory:" });
    const rt = new FakeRuntime();
    try {
      const [parentToken, loneToken] = [newToken(), newToken()];
      const endpoint = "http://127.0.0.1:7070";
      const identity = ["CONSTELLATION_ENDPOINT", "CONSTELLATION_TOKEN"];
      await rt.start("parent", { name: "parent", command: ["sleep", "60"], env: { CONSTELLATION_ENDPOINT: endpoint, CONSTELLATION_TOKEN: parentToken } }, { trusted: true, identity });
      // A child whose user set CONSTELLATION_TOKEN to the parent's token (the node added only the endpoint).
      await rt.start("akid", { name: "akid", command: ["sleep", "60"], env: { CONSTELLATION_ENDPOINT: endpoint, CONSTELLATION_TOKEN: parentToken, MODE: "x" } }, { identity: ["CONSTELLATION_ENDPOINT"] });
      await rt.start("lone", { name: "lone", command: ["sleep", "60"], env: { CONSTELLATION_ENDPOINT: endpoint, CONSTELLATION_TOKEN: loneToken } }, { trusted: true, identity });
      assert.equal(await adoptStars(store, "n1", [rt]), 3);

      const records = new Map((await store.range({ prefix: KEYS.stars })).kvs.map((kv) => [kv.key.slice(KEYS.stars.length), JSON.parse(kv.value) as StarRecord]));
      assert.deepEqual(records.get("parent")!.spec.env, undefined, "the node's identity is not the user's spec");
      assert.deepEqual(records.get("akid")!.spec.env, { CONSTELLATION_TOKEN: parentToken, MODE: "x" }, "the user's own values are kept");
      assert.equal(records.get("akid")!.untrusted, true, "a star's child stays untrusted");
      assert.equal(records.get("parent")!.untrusted, undefined);
      assert.equal(await lookupToken(store, parentToken), undefined, "a token two stars hold is registered for neither");
      assert.deepEqual((await lookupToken(store, loneToken))?.star?.name, "lone");
    } finally {
      await rt.close();
      await store.close();
    }
  });
});
