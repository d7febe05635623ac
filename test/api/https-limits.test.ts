/**
 * The HTTPS API's share of the process's files: with the local listener it splits one budget
 * (half each), and one address holds at most HTTPS_PER_ADDRESS connections on it; the rest of
 * the world still gets in (found by the attack review: one address could hold them all).
 */
import assert from "node:assert/strict";
import { get } from "node:https";
import { Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { HTTPS_PER_ADDRESS, Router } from "../../src/api/router.js";
import { createCa, createCsr, signCsr } from "../../src/cluster/tls/ca.js";

const open = (port: number, localAddress = "127.0.0.1") =>
  new Promise<Socket>((resolve, reject) => {
    const s = new Socket();
    s.once("error", reject);
    s.connect({ port, host: "127.0.0.1", localAddress }, () => resolve(s));
  });
const closed = (s: Socket) => new Promise<boolean>((resolve) => (s.destroyed ? resolve(true) : (s.once("close", () => resolve(true)), setTimeout(() => resolve(false), 2000).unref())));

describe("the HTTPS API's connection limits", () => {
  const router = new Router({ bodyLimit: 1024, onError: (res) => res.end(), maxConnections: 400 });
  router.route("GET", "/v1/health", async () => ({ body: { ok: true } }));
  let https = 0;
  let http = 0;
  const held: Socket[] = [];
  before(async () => {
    const ca = await createCa("prod");
    const { csr, key } = await createCsr("ctl");
    const { cert } = await signCsr(ca, csr, { cluster: "prod", node: "ctl", role: "controller", addresses: ["127.0.0.1"] });
    http = Number(new URL(await router.listen(0, "127.0.0.1")).port);
    https = Number(new URL(await router.listen(0, "127.0.0.1", { cert, key, ca: ca.cert })).port);
  });
  after(async () => {
    for (const s of held) s.destroy();
    await router.close();
  });

  it("one address holds at most its share of the HTTPS port; another still connects", async () => {
    for (let i = 0; i < HTTPS_PER_ADDRESS; i++) held.push(await open(https));
    const over = await open(https);
    assert.equal(await closed(over), true, "the connection over the share is closed");
    const status = await new Promise<number>((resolve, reject) =>
      get({ host: "127.0.0.1", port: https, path: "/v1/health", localAddress: "127.0.0.2", rejectUnauthorized: false }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on("error", reject),
    );
    assert.equal(status, 200, "another address is served");
  });

  it("the local listener and the HTTPS one split the budget: each takes half", async () => {
    for (const s of held.splice(0)) s.destroy();
    // 400 in all: 200 each. From several addresses (the per-address share is smaller).
    const addresses = ["127.0.0.3", "127.0.0.4"];
    for (let i = 0; i < 200; i++) held.push(await open(http, addresses[i % 2]));
    const over = await open(http, "127.0.0.5");
    assert.equal(await closed(over), true, "the local listener takes half the budget");
    for (const s of held.splice(0)) s.destroy();
  });
});
