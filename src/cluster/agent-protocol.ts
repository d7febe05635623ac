/**
 * The agent link over RNP (docs/rnp.md, "Agent methods"): the controller serves each
 * connected node an AgentService for the node its certificate names, and an agent on another
 * machine uses RnpAgentLink, an AgentLink made of calls on its connection. Every request body
 * is checked against its schema before the service sees it; a bad one is answered
 * `bad-request` with what was wrong.
 */
import { z } from "zod";
import { LABEL_KEY, LABEL_VALUE } from "../model/version.js";
import { type AgentLink, type ArtifactChunk, type AssignmentBatch, AssignmentsCompactedError, type NodeLink, type StarUsage } from "../model/agent-link.js";
import type { EventKind, GossipKeyring, NodeRecord, StarObserved, StarRecord, StarRef } from "../model/records.js";
import { type Handler, RnpError } from "./rnp/peer.js";

const NAME = z.string().min(1).max(253);
const status = z.looseObject({
  id: NAME,
  name: NAME,
  state: z.enum(["pending", "starting", "running", "exited", "failed", "oom_killed", "stopped"]),
  restarts: z.number().int().min(0),
  ready: z.boolean(),
  limitsEnforced: z.boolean(),
  limits: z.looseObject({}),
});
const observed = z.strictObject({
  uid: z.string().max(64),
  node: NAME,
  status,
  generation: z.number().int().min(0),
  updatedAt: z.number().int().min(0),
});
const positive = (max: number) => z.number().positive().max(max);
/** A node's record, whole and bounded (a node that sent `limits: {}` once stopped every create). */
const nodeRecord = z.strictObject({
  name: NAME,
  cpuCores: positive(100_000),
  memoryBytes: z.number().int().positive().max(2 ** 60),
  runtimes: z.array(z.enum(["process", "isolate", "fake"])).max(8),
  limitsEnforced: z.boolean(),
  startedAt: z.number().int().min(0),
  limits: z.strictObject({
    defaultRamMb: positive(2 ** 30),
    defaultDiskMb: positive(2 ** 30).optional(),
    defaultPids: z.number().int().positive().max(4_194_304),
    maxPids: z.number().int().positive().max(4_194_304),
    defaultNofile: z.number().int().positive().max(1_048_576),
    maxNofile: z.number().int().positive().max(1_048_576),
    maxLogMb: positive(2 ** 30),
    memoryOvercommit: positive(100),
  }),
  degraded: z.strictObject({ reason: z.string().max(1024), since: z.number().int().min(0) }).optional(),
  address: z.string().max(255).optional(),
  version: z.string().max(64).optional(),
  labels: z
    .record(z.string().regex(LABEL_KEY), z.string().regex(LABEL_VALUE))
    .refine((l) => Object.keys(l).length <= 64, "at most 64 labels")
    .optional(),
});
const EVENT_KINDS = [
  "star.state",
  "star.start-failed",
  "star.start-delayed",
  "star.remove-failed",
  "star.reattached",
  "node.orphans-ended",
  "node.up",
] as const satisfies readonly EventKind[];

export const AGENT_METHODS = {
  reports: z.null(),
  assignments: z.null(),
  watch: z.strictObject({ from: z.number().int().min(0), held: z.array(NAME).max(100_000).optional() }),
  putNode: nodeRecord,
  report: z.strictObject({ name: NAME, observed }),
  lastReport: z.strictObject({ name: NAME }),
  dropReport: z.strictObject({ name: NAME, uid: z.string().max(64) }),
  event: z.strictObject({ kind: z.enum(EVENT_KINDS), message: z.string().max(4096), star: NAME.optional(), uid: z.string().max(64).optional() }),
  starToken: z.strictObject({ name: NAME, uid: z.string().max(64), keepOld: z.boolean() }),
  dropStarTokens: z.strictObject({ name: NAME }),
  artifactChunk: z.strictObject({ name: NAME, uid: z.string().max(64), index: z.number().int().min(0).max(100_000) }),
  heartbeat: z.null(),
  gossipKeys: z.null(),
  usage: z.strictObject({
    stars: z.array(z.strictObject({ name: NAME, uid: z.string().max(64), cpuPercent: z.number().min(0), memoryBytes: z.number().min(0), at: z.number().int().min(0) })).max(100_000),
  }),
} as const;

/** What the controller asks a node (the agent serves these on the same connection). */
export const NODE_METHODS = {
  logs: z.strictObject({
    name: NAME,
    uid: z.string().max(64),
    tail: z.number().int().min(0).optional(),
    since: z.number().int().min(0).optional(),
    follow: z.boolean().optional(),
  }),
} as const;

/** The agent's handlers of the controller's questions about its stars (node.logs). */
export function nodeHandlers(node: NodeLink): Record<string, Handler> {
  return {
    "node.logs": (b, ctx) => {
      const r = NODE_METHODS.logs.safeParse(b);
      if (!r.success) throw new RnpError("bad-request", `node.logs: ${r.error.issues[0]!.path.join(".") || "body"}: ${r.error.issues[0]!.message}`);
      const { name, uid, tail, since, follow } = r.data;
      return node.logs({ name, uid }, { ...(tail === undefined ? {} : { tail }), ...(since === undefined ? {} : { since }), follow: follow === true, signal: ctx.signal });
    },
  };
}

type Method = keyof typeof AGENT_METHODS;

function body<M extends Method>(method: M, value: unknown): z.output<(typeof AGENT_METHODS)[M]> {
  const r = AGENT_METHODS[method].safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new RnpError("bad-request", `agent.${method}: ${issue.path.join(".") || "body"}: ${issue.message}`);
  }
  return r.data as z.output<(typeof AGENT_METHODS)[M]>;
}

/** Errors of the service as RNP errors: a refusal says why; nothing else of the controller leaks. */
function answer<T>(p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    if (err instanceof RnpError) throw err;
    if (err instanceof AssignmentsCompactedError) throw new RnpError("gone", err.message);
    const code = (err as { code?: string }).code;
    if (code === "STAR_NOT_FOUND" || code === "ARTIFACT_NOT_FOUND") throw new RnpError("not-found", (err as Error).message);
    if (/may not/.test((err as Error).message)) throw new RnpError("forbidden", (err as Error).message);
    throw new RnpError("unavailable", `the controller could not do it: ${(err as Error).message}`);
  });
}

/** The RNP handlers of the agent methods, for the node `link` speaks for. */
export function agentHandlers(link: AgentLink): Record<string, Handler> {
  return {
    "agent.reports": (b) => answer((async () => (body("reports", b), [...(await link.reports()).entries()]))()),
    "agent.assignments": (b) => answer((async () => (body("assignments", b), link.assignments()))()),
    "agent.watch": (b, ctx) => {
      const { from, held } = body("watch", b);
      const source = link.watchAssignments(from, ctx.signal, held);
      return (async function* () {
        try {
          yield* source;
        } catch (err) {
          await answer(Promise.reject(err));
        }
      })();
    },
    "agent.putNode": (b) => answer(link.putNode(body("putNode", b) as unknown as NodeRecord)),
    "agent.report": (b) => {
      const { name, observed: o } = body("report", b);
      return answer(link.report(name, o as unknown as StarObserved));
    },
    "agent.lastReport": (b) => answer(link.lastReport(body("lastReport", b).name).then((o) => o ?? null)),
    "agent.dropReport": (b) => {
      const { name, uid } = body("dropReport", b);
      return answer(link.dropReport(name, uid));
    },
    "agent.event": (b) => {
      const { kind, message, star, uid } = body("event", b);
      return answer(link.event(kind, message, { ...(star ? { star } : {}), ...(uid ? { uid } : {}) }));
    },
    "agent.starToken": (b) => {
      const { name, uid, keepOld } = body("starToken", b);
      return answer(link.starToken({ name, uid }, { keepOld }));
    },
    "agent.dropStarTokens": (b) => answer(link.dropStarTokens(body("dropStarTokens", b).name)),
    "agent.artifactChunk": (b) => {
      const { name, uid, index } = body("artifactChunk", b);
      if (!link.artifactChunk) throw new RnpError("not-found", "this controller keeps no artifacts");
      return answer(link.artifactChunk({ name, uid }, index));
    },
    "agent.usage": (b) => answer((async () => link.usage?.(body("usage", b).stars))()),
    "agent.heartbeat": (b) => answer((async () => (body("heartbeat", b), (await link.heartbeat?.()) ?? null))()),
    "agent.gossipKeys": (b) =>
      answer(
        (async () => {
          body("gossipKeys", b);
          if (!link.gossipKeys) throw new RnpError("not-found", "this controller has no gossip keyring");
          return link.gossipKeys();
        })(),
      ),
  };
}

/** What RnpAgentLink needs of a connection: calls and streams (a reconnecting client gives them). */
export interface RnpCaller {
  call(method: string, body: unknown, opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<unknown>;
  stream(method: string, body: unknown, opts?: { signal?: AbortSignal }): AsyncIterable<unknown>;
}

/** A heartbeat's answer: the lease's TTL, the gossip keyring's version, the controllers running. */
export interface HeartbeatAnswer {
  ttlMs: number;
  gossipKeys?: number;
  controllers?: string[];
}

/** An AgentLink whose every call goes to the controller over RNP. */
export class RnpAgentLink implements AgentLink {
  /** `onHeartbeat` sees each heartbeat's answer (the keyring's version, the controllers running). */
  constructor(
    private readonly rnp: RnpCaller,
    private readonly timeoutMs = 10_000,
    private readonly onHeartbeat?: (answer: HeartbeatAnswer) => void,
  ) {}

  private call(method: Method, b: unknown): Promise<unknown> {
    return this.rnp.call(`agent.${method}`, b, { timeoutMs: this.timeoutMs });
  }

  async reports(): Promise<Map<string, StarObserved>> {
    return new Map((await this.call("reports", null)) as Array<[string, StarObserved]>);
  }

  async assignments(): Promise<{ records: StarRecord[]; revision: number }> {
    return (await this.call("assignments", null)) as { records: StarRecord[]; revision: number };
  }

  async *watchAssignments(fromRevision: number, signal: AbortSignal, held?: Iterable<string>): AsyncIterable<AssignmentBatch> {
    try {
      const ask = held === undefined ? { from: fromRevision } : { from: fromRevision, held: [...held] };
      for await (const batch of this.rnp.stream("agent.watch", ask, { signal })) yield batch as AssignmentBatch;
    } catch (err) {
      if (err instanceof RnpError && err.code === "gone") throw new AssignmentsCompactedError(fromRevision);
      throw err;
    }
  }

  async putNode(node: NodeRecord): Promise<void> {
    await this.call("putNode", node);
  }

  async report(name: string, o: StarObserved): Promise<void> {
    await this.call("report", { name, observed: o });
  }

  async lastReport(name: string): Promise<StarObserved | undefined> {
    return ((await this.call("lastReport", { name })) as StarObserved | null) ?? undefined;
  }

  async dropReport(name: string, uid: string): Promise<void> {
    await this.call("dropReport", { name, uid });
  }

  async event(kind: EventKind, message: string, about: { star?: string; uid?: string }): Promise<void> {
    await this.call("event", { kind, message, ...about });
  }

  async starToken(star: StarRef, options: { keepOld?: boolean } = {}): Promise<string> {
    return (await this.call("starToken", { name: star.name, uid: star.uid, keepOld: options.keepOld === true })) as string;
  }

  async dropStarTokens(name: string): Promise<void> {
    await this.call("dropStarTokens", { name });
  }

  async artifactChunk(star: StarRef, index: number): Promise<ArtifactChunk> {
    const r = (await this.call("artifactChunk", { name: star.name, uid: star.uid, index })) as ArtifactChunk;
    if (!(r?.data instanceof Uint8Array) || !Number.isInteger(r.chunks) || !Number.isInteger(r.size)) throw new RnpError("bad-request", "agent.artifactChunk: the controller's answer is not a chunk");
    return r;
  }

  async usage(stars: StarUsage[]): Promise<void> {
    await this.call("usage", { stars });
  }

  async heartbeat(): Promise<HeartbeatAnswer> {
    const a = (await this.call("heartbeat", null)) as { ttlMs?: unknown; gossipKeys?: unknown; controllers?: unknown } | null;
    const ttlMs = typeof a?.ttlMs === "number" && a.ttlMs >= 1000 ? a.ttlMs : 10_000;
    const list = a?.controllers;
    const controllers = Array.isArray(list) && list.length <= 16 && list.every((c) => typeof c === "string" && c.length <= 300) ? (list as string[]) : undefined;
    const answer = { ttlMs, ...(Number.isSafeInteger(a?.gossipKeys) ? { gossipKeys: a!.gossipKeys as number } : {}), ...(controllers ? { controllers } : {}) };
    this.onHeartbeat?.(answer);
    return answer;
  }

  async gossipKeys(): Promise<GossipKeyring> {
    const r = (await this.call("gossipKeys", null)) as GossipKeyring | null;
    if (!r || !Number.isSafeInteger(r.version) || typeof r.primary !== "string" || !Array.isArray(r.keys) || !r.keys.every((k) => typeof k === "string")) {
      throw new RnpError("bad-request", "the controller's gossip keyring is not one");
    }
    return { version: r.version, primary: r.primary, keys: r.keys };
  }
}
