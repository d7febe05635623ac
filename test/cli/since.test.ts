import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseSince } from "../../src/cli/output.js";

describe("logs --since", () => {
  const now = Date.parse("2026-11-28T12:00:00Z");
  it("takes a duration back from now, a date, or ms since the epoch", () => {
    assert.equal(parseSince("90s", now), now - 90_000);
    assert.equal(parseSince("10m", now), now - 600_000);
    assert.equal(parseSince("1h30m", now), now - 5_400_000);
    assert.equal(parseSince("2d", now), now - 2 * 86_400_000);
    assert.equal(parseSince("250ms", now), now - 250);
    assert.equal(parseSince("2026-11-28T11:00:00Z", now), now - 3_600_000);
    assert.equal(parseSince("2026-11-28", now), Date.parse("2026-11-28"));
    assert.equal(parseSince(String(now - 5), now), now - 5);
  });
  it("refuses what is none of these", () => {
    for (const bad of ["", "yesterday", "10", "10x", "m10", "-5m", "2026-13-45T99:00:00Z", "1h 30m"]) assert.equal(parseSince(bad, now), undefined, bad);
  });
});
