/** `--store etcd://…`: the etcd an HA cluster's controllers share (server/ha.ts). */
import { InvalidArgumentError } from "./errors.js";

/** What `--store` gives: etcd's client URLs. */
export interface EtcdStoreConfig {
  backend: "etcd";
  endpoints: string[];
}

/**
 * `etcd://h1:2379,h2:2379` (or `etcd://http://h1:2379,...`) → the endpoints as URLs; anything
 * else is a clear error.
 */
export function parseStoreUrl(url: string): EtcdStoreConfig {
  const m = /^etcd:\/\/(.+)$/.exec(url.trim());
  if (!m) throw new InvalidArgumentError("store", `--store takes etcd://HOST:PORT[,HOST:PORT...] (the etcd members' client addresses), got "${url}"`);
  const endpoints = m[1]!.split(",").map((e) => e.trim());
  for (const e of endpoints) {
    const hostPort = e.replace(/^https?:\/\//, "");
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(hostPort) || Number(hostPort.split(":").at(-1)) > 65535) {
      throw new InvalidArgumentError("store", `--store: "${e}" is not HOST:PORT (e.g. etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379)`);
    }
  }
  return { backend: "etcd", endpoints: endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`)) };
}
