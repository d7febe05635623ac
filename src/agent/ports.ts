/**
 * A node's ports for its stars (issue 13): a star names its ports (`{ http: 0, admin: 9000 }`),
 * and the node gives it each one — a fixed one if it is free, otherwise any free port of the
 * dynamic range — at each start, as PORT_<NAME> (and PORT: the first) in its environment.
 * The choice is a pure function over what is held and a probe of the host (`isFree`), so it is
 * tested without sockets; `probePort` is the real probe.
 */
import { createServer } from "node:net";
import { PortInUseError } from "../model/errors.js";
import { portEnvName } from "../model/names.js";

/** Where ports asked as 0 come from (Nomad's default dynamic range). */
export const DYNAMIC_PORTS = { min: 20_000, max: 32_000 } as const;

export interface PortChoice {
  /** Ports this node's other stars hold (or are about to). */
  held: ReadonlySet<number>;
  /** Whether nothing on the host listens on `port`. */
  isFree: (port: number) => Promise<boolean>;
  /** Where the search of the dynamic range starts (a random number; tests fix it). */
  start?: number;
  /** For messages. */
  node: string;
}

/**
 * The ports for a star that asks for `asked` (fixed ones first, so a dynamic choice never takes
 * one the star itself needs). Throws PortInUseError for a fixed port something holds.
 */
export async function choosePorts(asked: Readonly<Record<string, number>>, c: PortChoice): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const taken = new Set(c.held);
  for (const [name, port] of Object.entries(asked)) {
    if (port === 0) continue;
    if (taken.has(port)) throw new PortInUseError(name, port, c.node, true);
    if (!(await c.isFree(port))) throw new PortInUseError(name, port, c.node);
    taken.add(port);
    out[name] = port;
  }
  const span = DYNAMIC_PORTS.max - DYNAMIC_PORTS.min;
  let at = Math.abs(Math.trunc(c.start ?? Math.random() * span)) % span;
  for (const [name, port] of Object.entries(asked)) {
    if (port !== 0) continue;
    let found: number | undefined;
    for (let tried = 0; tried < span && found === undefined; tried++, at = (at + 1) % span) {
      const p = DYNAMIC_PORTS.min + at;
      if (!taken.has(p) && (await c.isFree(p))) found = p;
    }
    if (found === undefined) throw new PortInUseError(name, 0, c.node);
    taken.add(found);
    out[name] = found;
  }
  // In the order the star named them (PORT is the first).
  return Object.fromEntries(Object.keys(asked).map((k) => [k, out[k]!]));
}

/** The environment a star's ports give it: PORT_<NAME> for each, PORT for the first. */
export function portEnv(ports: Readonly<Record<string, number>>): Record<string, string> {
  const entries = Object.entries(ports);
  if (entries.length === 0) return {};
  return { PORT: String(entries[0]![1]), ...Object.fromEntries(entries.map(([k, v]) => [portEnvName(k), String(v)])) };
}

/** Whether a TCP port can be listened on, on every address (nothing holds it on any). */
export function probePort(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen({ port, host: "0.0.0.0", exclusive: true }, () => server.close(() => resolve(true)));
  });
}
