/**
 * The HTTP API in one process, as `up` wires it (controller, agent, API on an in-memory store),
 * with the fake runtime: tests talk to it over real HTTP. The agent gives each star it starts a
 * token of its own, as in production; `starToken(name)` reads it from what the runtime was given.
 */
import { Agent } from "../../src/agent/agent.js";
import { AgentService } from "../../src/controller/agent-service.js";
import { type Api, buildApi } from "../../src/api/server.js";
import { Controller, type TreeQuotas } from "../../src/controller/controller.js";
import { newToken, saveToken } from "../../src/controller/tokens.js";
import { FakeRuntime } from "../../src/runtime/fake/fake-runtime.js";
import { DEFAULT_NODE_LIMITS, type NodeLimits, type StarSpecInput } from "../../src/model/spec.js";
import type { StartOptions } from "../../src/runtime/types.js";
import type { StarStatus } from "../../src/model/status.js";
import { openStore } from "../../src/store/open.js";
import type { Store } from "../../src/store/types.js";
import { waitFor } from "./wait.js";

/** The fake runtime, keeping the environment and options each star was started with. */
export class RecordingRuntime extends FakeRuntime {
  readonly started = new Map<string, { env: Record<string, string>; options: StartOptions }>();
  /** While set, removals wait for it (a slow removal: files still there). */
  removeGate: Promise<void> | undefined;
  override async remove(id: string): Promise<void> {
    await this.removeGate;
    return super.remove(id);
  }
  /** While set, starts wait for it (a slow start: the agent's queue for the star is busy). */
  startGate: Promise<void> | undefined;
  override async start(id: string, input: StarSpecInput, options: StartOptions = {}): Promise<StarStatus> {
    await this.startGate;
    this.started.set(id, { env: { ...(input.env ?? {}) }, options });
    return super.start(id, input, options);
  }
}

export interface Reply {
  status: number;
  text: string;
  json: <T = Record<string, unknown>>() => T;
  /** The error body of a 4xx/5xx. */
  error: () => { code: string; message: string; field?: string };
}

export interface ApiHarness {
  url: string;
  admin: string;
  store: Store;
  controller: Controller;
  runtime: RecordingRuntime;
  /** A request over HTTP with `token` (default: the admin token); objects are sent as JSON. */
  request(method: string, path: string, options?: { token?: string; body?: unknown }): Promise<Reply>;
  /** The API listens on this unix socket too. */
  listenUnix(path: string): Promise<void>;
  /** The token the agent gave star `name` when it last started it. */
  starToken(name: string): Promise<string>;
  close(): Promise<void>;
}

export async function startApi(
  node: {
    cpuCores?: number;
    memoryBytes?: number;
    limits?: Partial<NodeLimits>;
    connections?: { max?: number; headersTimeoutMs?: number };
    quotas?: Partial<TreeQuotas>;
  } = {},
): Promise<ApiHarness> {
  const store = await openStore({ backend: "sqlite", path: ":memory:" });
  const capacity = { cpuCores: node.cpuCores ?? 4, memoryBytes: node.memoryBytes ?? 8 * 2 ** 30, limits: { ...DEFAULT_NODE_LIMITS, ...node.limits } };
  const controller = new Controller({ store, ...(node.quotas ? { quotas: node.quotas } : {}) });
  const runtime = new RecordingRuntime(capacity);
  const served: { url?: string } = {};
  const agent = new Agent({
    link: new AgentService(store, "n1"),
    node: { name: "n1", ...capacity, runtimes: ["process"], limitsEnforced: true, startedAt: Date.now() },
    runtimes: { process: runtime },
    endpoint: () => served.url,
  });
  const app: Api = await buildApi({ store, controller, node: agent, ...(node.connections ? { connections: node.connections } : {}) });
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  served.url = url;
  await agent.start();
  controller.start();
  const admin = newToken();
  await saveToken(store, admin, "admin", "test");
  return {
    url,
    admin,
    store,
    controller,
    runtime,
    async request(method, path, options = {}) {
      const body = options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body);
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${options.token ?? admin}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        ...(body === undefined ? {} : { body }),
      });
      const text = await res.text();
      const json = <T>() => JSON.parse(text) as T;
      return { status: res.status, text, json, error: () => json<{ error: { code: string; message: string; field?: string } }>().error };
    },
    listenUnix: (path) => app.listenUnix(path),
    starToken: (name) => waitFor(`star ${name}'s token`, () => runtime.started.get(name)?.env.CONSTELLATION_TOKEN),
    async close() {
      await app.close();
      await agent.stop();
      await controller.stop();
      await runtime.close();
      await store.close();
    },
  };
}
