/**
 * A running controller prunes its event log to the newest EVENTS_KEPT events now and then, not
 * only when its control loop starts: a storm of creates once left 120,000 events, and every list
 * of them (each star's view reads them) held the process for seconds.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Controller } from "../../src/controller/controller.js";
import { EVENTS_KEPT } from "../../src/controller/events.js";
import { KEYS } from "../../src/model/records.js";
import { openStore } from "../../src/store/open.js";
import { waitFor } from "../helpers/wait.js";

test("a running controller prunes the event log past EVENTS_KEPT (not only when it starts)", async () => {
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  const controller = new Controller({ store, pruneEveryMs: 100 });
  try {
    controller.start();
    const count = async () => (await store.range({ prefix: KEYS.events }, { countOnly: true })).count;
    // The loop has started (and pruned an empty log) before the events come.
    await controller.create({ name: "first", command: ["true"] });
    await waitFor("the first events", async () => ((await count()) > 0 ? true : undefined));
    for (let i = 0; i < EVENTS_KEPT + 1000; i += 100) {
      await store.txn({
        success: Array.from({ length: 100 }, (_, j) => ({
          type: "put" as const,
          key: `${KEYS.events}${String(Date.now()).padStart(15, "0")}-t-${String(i + j).padStart(8, "0")}`,
          value: JSON.stringify({ at: Date.now(), kind: "star.assigned", message: "x" }),
        })),
      });
    }
    assert.ok((await count()) > EVENTS_KEPT);
    await waitFor("the log pruned to EVENTS_KEPT", async () => ((await count()) <= EVENTS_KEPT ? true : undefined));
  } finally {
    await controller.stop();
    await store.close();
  }
});
