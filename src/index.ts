/**
 * The public entry of the `constellation` package: the SDK. Everything a program needs is named
 * here; nothing else is reached by deep imports.
 *
 * ```ts
 * import { constellation } from "constellation";   // configured from the environment
 * const star = await constellation.create({ name: "web-worker-1", cpu_percent: 25, ram_mb: 512, script: "worker.ts" });
 * await star.wait();
 * ```
 */
import { type ConnectOptions, Constellation, resolveConnection } from "./sdk/client.js";
import { type Transport, httpTransport } from "./sdk/http.js";

export { Constellation, Deployment, Star, connect, resolveConnection } from "./sdk/client.js";
export type { ClusterSummary, ConnectOptions, DeploySpecInput, DeploymentInfo, Event, InitOptions, InitResult, JoinTokenInfo, LogLine, NewJoinToken, NewToken, StarInfo, StarSpecInput, StarStatus, TokenInfo } from "./sdk/client.js";
export { ApiError } from "./sdk/http.js";
export { ConstellationError } from "./model/errors.js";
export type { ErrorCode } from "./model/errors.js";

/** Connects on first use (CONSTELLATION_ENDPOINT + CONSTELLATION_TOKEN, CONSTELLATION_DATA, or ~/.constellation). */
function lazyTransport(options: ConnectOptions = {}): Transport {
  let real: Transport | undefined;
  const get = () => {
    if (!real) {
      const { endpoint, token, ca } = resolveConnection(options);
      real = httpTransport(endpoint, token, ca === undefined ? {} : { ca });
    }
    return real;
  };
  return {
    request: (method, path, body) => get().request(method, path, body),
    stream: (path, signal) => get().stream(path, signal),
    close: () => real?.close(),
  };
}

/**
 * The constellation this program runs in or next to, configured from the environment.
 * @example
 * const star = await constellation.create({ name: "hello", command: ["echo", "hi"] });
 */
export const constellation: Constellation = new Constellation(lazyTransport());

