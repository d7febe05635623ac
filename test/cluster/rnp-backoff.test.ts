/**
 * Reconnecting (src/cluster/rnp/client.ts): the wait before each attempt is drawn below a cap
 * that doubles from the least to the most ("full jitter"), and a client whose controller is
 * away keeps trying, at that pace, until it is back.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Duplex } from "node:stream";
import { RnpClient, backoffDelay } from "../../src/cluster/rnp/client.js";
import { waitFor } from "../helpers/wait.js";

test("the cap doubles from the least to the most; the delay is drawn evenly below it", () => {
  const bounds = { min: 100, max: 10_000 };
  const caps = Array.from({ length: 10 }, (_, attempt) => backoffDelay(attempt, bounds, () => 0.999999));
  assert.deepEqual(caps.map((c) => Math.round(c)), [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
  assert.equal(backoffDelay(5, bounds, () => 0), 0);
  assert.equal(backoffDelay(5, bounds, () => 0.5), 1600);
  assert.equal(backoffDelay(10_000, bounds, () => 0.5), 5000, "a long outage stays at the most");
  // Drawn with Math.random: spread over [0, cap), not all the same (agents do not come back in step).
  const draws = Array.from({ length: 200 }, () => backoffDelay(3, bounds));
  assert.ok(draws.every((d) => d >= 0 && d < 800));
  assert.ok(new Set(draws.map((d) => Math.floor(d / 100))).size >= 6, "spread over the range");
});

test("a client whose dial fails keeps trying, no faster than the backoff allows", async () => {
  const at: number[] = [];
  const client = new RnpClient({
    dial: () => {
      at.push(performance.now());
      return Promise.reject(new Error("connection refused")) as Promise<Duplex>;
    },
    backoffMs: { min: 10, max: 40 },
  });
  try {
    await waitFor("eight attempts", () => at.length >= 8, { timeoutMs: 10_000 });
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    // Each wait is below its cap (10, 20, 40, 40 … ms) plus timer slack.
    const caps = [10, 20, 40, 40, 40, 40, 40];
    gaps.slice(0, caps.length).forEach((g, i) => assert.ok(g < caps[i]! + 50, `wait ${i + 1}: ${g.toFixed(1)} ms, cap ${caps[i]} ms`));
    await assert.rejects(client.call("x", null, { timeoutMs: 50 }), /no connection to the controller within 50 ms \(connection refused\)/);
  } finally {
    client.close();
  }
});
