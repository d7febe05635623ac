import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import type { Store } from "../../src/store/types.js";
import { conformance } from "./conformance.js";

// Default mode: one process owns the file; every "client" of the suite shares one connection.
conformance("sqlite (exclusive, the default)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "constellation-store-"));
  const store = new SqliteStore({ path: join(dir, "state.db"), leaseCheckIntervalMs: 100 });
  // Every client is the same store; closing a client leaves it open for the others.
  const client = new Proxy(store, {
    get: (target, prop) => {
      if (prop === "close") return async () => undefined;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Store;
  return {
    open: async () => client,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

// Shared mode: every client is its own connection to the file, as separate processes would be.
conformance("sqlite (shared, one connection per client)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "constellation-store-"));
  const path = join(dir, "state.db");
  return {
    open: async () => new SqliteStore({ path, shared: true, leaseCheckIntervalMs: 100, pollIntervalMs: 10 }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});
