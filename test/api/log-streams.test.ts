/**
 * Log streams read files a star wrote: a token other than an admin's may hold only a few open
 * at once (issue 8: a star opened hundreds and took the control plane down); admins are not
 * counted, so stars cannot lock the operator out.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { MAX_WAIT_MS, OPEN_REQUESTS } from "../../src/api/server.js";
import { type ApiHarness, startApi } from "../helpers/api.js";
import { waitFor } from "../helpers/wait.js";

describe("log streams per token", () => {
  let api: ApiHarness;
  before(async () => {
    api = await startApi();
  });
  after(async () => api?.close());

  it("a read token gets 429 past its limit, and its streams back when it closes one; an admin is not counted", async () => {
    await api.request("POST", "/v1/stars", { body: { spec: { name: "chatty", command: ["sleep", "60"] } } });
    const read = (await api.request("POST", "/v1/tokens", { body: { scope: "read", name: "viewer" } })).json<{ token: string }>().token;
    const follow = (token: string) => {
      const abort = new AbortController();
      const res = fetch(`${api.url}/v1/stars/chatty/logs?follow=1`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
      return { res, abort };
    };
    const open = Array.from({ length: OPEN_REQUESTS.perToken }, () => follow(read));
    for (const o of open) assert.equal((await o.res).status, 200);
    const refused = await api.request("GET", "/v1/stars/chatty/logs?follow=1", { token: read });
    assert.equal(refused.status, 429);
    assert.equal(refused.error().code, "API_TOO_MANY");
    assert.match(refused.error().message, /at most 8/);
    // The admin is not counted.
    const admin = follow(api.admin);
    assert.equal((await admin.res).status, 200);
    admin.abort.abort();
    // Closing one gives it back.
    open[0]!.abort.abort();
    await waitFor("a stream to be free again", async () => {
      const again = follow(read);
      const res = await again.res;
      if (res.status !== 200) return undefined;
      again.abort.abort();
      return true;
    });
    for (const o of open.slice(1)) o.abort.abort();
  });

  it("a tree of stars shares one share over logs, events and waits, whichever of its tokens asks; read tokens count by token, not by name", async () => {
    assert.equal((await api.request("POST", "/v1/stars", { body: { spec: { name: "tree", command: ["sleep", "60"] } } })).status, 201);
    const parent = await api.starToken("tree");
    assert.equal((await api.request("POST", "/v1/stars", { token: parent, body: { spec: { name: "tree-kid", command: ["sleep", "60"] } } })).status, 201);
    const kid = await api.starToken("tree-kid");
    const aborts: AbortController[] = [];
    const open = async (token: string, path: string) => {
      const abort = new AbortController();
      aborts.push(abort);
      return (await fetch(`${api.url}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal })).status;
    };
    try {
      const half = OPEN_REQUESTS.perToken / 2;
      for (let i = 0; i < half; i++) assert.equal(await open(parent, "/v1/stars/tree/logs?follow=1"), 200);
      for (let i = 0; i < half; i++) assert.equal(await open(kid, "/v1/events?follow=1"), 200);
      // A wait is held open too: the tree's share is used up.
      const wait = await api.request("GET", "/v1/stars/tree-kid/wait?for=ended&timeout_ms=5000", { token: kid });
      assert.equal(wait.status, 429, wait.text);
      assert.match(wait.error().message, /the stars made from tree have 8 streams and waits at once \(at most 8\)/);
      // Two read tokens of one name each have their own share.
      const reads = [];
      for (let i = 0; i < 2; i++) reads.push((await api.request("POST", "/v1/tokens", { body: { scope: "read", name: "same-name" } })).json<{ token: string }>().token);
      for (let i = 0; i < OPEN_REQUESTS.perToken; i++) assert.equal(await open(reads[0]!, "/v1/events?follow=1"), 200);
      assert.equal(await open(reads[1]!, "/v1/events?follow=1"), 200, "another token of the same name is not the first one");
    } finally {
      for (const a of aborts) a.abort();
    }
    // A caller other than an admin may not wait for ever.
    const long = await api.request("GET", `/v1/stars/tree/wait?timeout_ms=${MAX_WAIT_MS + 1}`, { token: parent });
    assert.equal(long.status, 400);
    assert.match(long.error().message, /timeout_ms may be at most 120000/);
    assert.equal((await api.request("GET", `/v1/stars/tree/wait?timeout_ms=${MAX_WAIT_MS + 1}`)).status, 200, "an admin may");
  });

  it("a stream ends soon after its token stops being valid: revoked, or its star removed", async () => {
    const made = (await api.request("POST", "/v1/tokens", { body: { scope: "read", name: "short-lived" } })).json<{ token: string; id: string }>();
    assert.equal((await api.request("POST", "/v1/stars", { body: { spec: { name: "doomed", command: ["sleep", "60"] } } })).status, 201);
    const star = await api.starToken("doomed");
    /** Opens a stream; resolves once it is open, with a promise of how long it lasted. */
    const stream = (token: string, path: string) =>
      new Promise<{ closed: Promise<number> }>((opened, reject) => {
        http
          .get(`${api.url}${path}`, { headers: { authorization: `Bearer ${token}` } }, (res) => {
            assert.equal(res.statusCode, 200);
            const t0 = Date.now();
            res.resume();
            opened({ closed: new Promise((closed) => res.on("close", () => closed(Date.now() - t0))) });
          })
          .on("error", reject);
      });
    const readEnds = await stream(made.token, "/v1/events?follow=1");
    const starEnds = await stream(star, "/v1/stars/doomed/logs?follow=1");
    assert.equal((await api.request("DELETE", `/v1/tokens/${made.id}`)).status, 204);
    assert.equal((await api.request("DELETE", "/v1/stars/doomed?force=1")).status, 204);
    for (const took of await Promise.all([readEnds.closed, starEnds.closed])) assert.ok(took < 10_000, `ended after ${took} ms`);
  });
});
