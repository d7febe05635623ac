/**
 * Log streams read files a star wrote: a token other than an admin's may hold only a few open
 * at once (issue 8: a star opened hundreds and took the control plane down); admins are not
 * counted, so stars cannot lock the operator out.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { LOG_STREAMS } from "../../src/api/server.js";
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
    const open = Array.from({ length: LOG_STREAMS.perToken }, () => follow(read));
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
});
