/**
 * Opens the configured Store backend. The etcd client (gRPC) is loaded only when asked for,
 * so a single-node constellation on SQLite never pays for it at start-up.
 */
import { InvalidArgumentError } from "../model/errors.js";
import { SqliteStore, type SqliteStoreOptions } from "./sqlite/sqlite-store.js";
import type { Store } from "./types.js";

export type StoreConfig =
  | ({ backend: "sqlite" } & SqliteStoreOptions)
  | { backend: "etcd"; endpoints: string[]; dialTimeoutMs?: number; tls?: { ca: Buffer; cert?: Buffer; key?: Buffer } };

export async function openStore(config: StoreConfig): Promise<Store> {
  switch (config.backend) {
    case "sqlite":
      return new SqliteStore(config);
    case "etcd": {
      if (!Array.isArray(config.endpoints) || config.endpoints.length === 0) {
        throw new InvalidArgumentError("endpoints", "etcd needs at least one endpoint, e.g. http://127.0.0.1:2379");
      }
      const { openEtcdStore } = await import("./etcd/etcd-store.js");
      return openEtcdStore(config);
    }
    default:
      throw new InvalidArgumentError(
        "backend",
        `unknown store backend ${JSON.stringify((config as { backend: unknown }).backend)}: use "sqlite" or "etcd"`,
      );
  }
}
