import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import { conformance } from "./conformance.js";

conformance("sqlite", async () => {
  const dir = await mkdtemp(join(tmpdir(), "constellation-store-"));
  const path = join(dir, "state.db");
  return {
    open: async () => new SqliteStore({ path, leaseCheckIntervalMs: 100, pollIntervalMs: 10 }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});
