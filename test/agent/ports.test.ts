/** A node's choice of ports for its stars (src/agent/ports.ts). */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import { DYNAMIC_PORTS, choosePorts, portEnv, probePort } from "../../src/agent/ports.js";
import { PortInUseError } from "../../src/model/errors.js";

const none = new Set<number>();
const free = async () => true;

describe("ports", () => {
  it("a fixed port is taken as asked; 0 is any free port of the dynamic range, never one held or busy", async () => {
    const busy = new Set([DYNAMIC_PORTS.min + 1]);
    const held = new Set([DYNAMIC_PORTS.min]);
    const got = await choosePorts({ http: 0, admin: 9000, metrics: 0 }, { held, isFree: async (p) => !busy.has(p), start: 0, node: "n1" });
    assert.deepEqual(Object.keys(got), ["http", "admin", "metrics"], "in the star's order");
    assert.deepEqual(got, { http: DYNAMIC_PORTS.min + 2, admin: 9000, metrics: DYNAMIC_PORTS.min + 3 });
    // The search wraps around the range's end.
    assert.deepEqual(await choosePorts({ a: 0 }, { held: none, isFree: free, start: DYNAMIC_PORTS.max - DYNAMIC_PORTS.min - 1, node: "n1" }), { a: DYNAMIC_PORTS.max - 1 });
    assert.deepEqual(await choosePorts({ a: 0, b: 0 }, { held: none, isFree: free, start: DYNAMIC_PORTS.max - DYNAMIC_PORTS.min - 1, node: "n1" }), { a: DYNAMIC_PORTS.max - 1, b: DYNAMIC_PORTS.min });
    // A fixed port the star asks for is never given to its own 0.
    assert.deepEqual(await choosePorts({ a: 0, b: DYNAMIC_PORTS.min }, { held: none, isFree: free, start: 0, node: "n1" }), { a: DYNAMIC_PORTS.min + 1, b: DYNAMIC_PORTS.min });
  });

  it("a fixed port held by another star, or busy on the host, is a clear error; so is a full range", async () => {
    await assert.rejects(choosePorts({ http: 8080 }, { held: new Set([8080]), isFree: free, node: "n1" }), (e: unknown) => e instanceof PortInUseError && /port http=8080 is held by another star on node n1/.test(e.message));
    await assert.rejects(choosePorts({ http: 8080 }, { held: none, isFree: async () => false, node: "n1" }), /port http=8080 is in use on node n1 by a program outside this star: free it there, or ask for another port/);
    await assert.rejects(choosePorts({ http: 0 }, { held: none, isFree: async () => false, node: "n1" }), /no free port is left for http in node n1's dynamic range/);
  });

  it("the environment: PORT_<NAME> for each, PORT for the first", () => {
    assert.deepEqual(portEnv({ http: 20001, "admin-api": 9000 }), { PORT: "20001", PORT_HTTP: "20001", PORT_ADMIN_API: "9000" });
    assert.deepEqual(portEnv({}), {});
  });

  it("the probe: a port something listens on is not free; once closed it is", async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    const port = (s.address() as { port: number }).port;
    assert.equal(await probePort(port), false, "held on 127.0.0.1: not free on all addresses");
    await new Promise((r) => s.close(r));
    assert.equal(await probePort(port), true);
  });
});
