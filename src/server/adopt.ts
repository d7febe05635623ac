/**
 * `up --adopt`: the store was lost, but the node still has its stars (issue 9). Each star its
 * runtimes know is written back into the store — a record (its spec as it runs, desired state
 * from its state) and this node's report of it, with one uid, so the agent takes it as its own
 * and changes nothing — and the token a running star holds is known again, so its SDK goes on
 * working. What cannot be known is said: owners are gone (each star is an admin's top-level
 * star again, except that a star's child stays untrusted), and so are events and other tokens.
 */
import { randomUUID } from "node:crypto";
import { isTokenForm, lookupToken, saveToken } from "../controller/tokens.js";
import { EventLog } from "../controller/events.js";
import { type StarObserved, type StarRecord, starKey, statusKey } from "../controller/model.js";
import type { Runtime } from "../runtime/types.js";
import type { Store } from "../store/types.js";

/** What the agent puts into a star's env (agent.ts withIdentity): given anew at its next start. */
const IDENTITY = ["CONSTELLATION_ENDPOINT", "CONSTELLATION_TOKEN"];

export async function adoptStars(store: Store, node: string, runtimes: Runtime[]): Promise<number> {
  const events = new EventLog(store, `node-${node}`);
  let adopted = 0;
  for (const runtime of runtimes) {
    for (const status of runtime.list()) {
      const saved = runtime.saved?.(status.id);
      if (!saved) continue;
      const { env, ...rest } = saved.spec as { env?: Record<string, string> };
      const token = env?.CONSTELLATION_TOKEN;
      const userEnv = env ? Object.fromEntries(Object.entries(env).filter(([k]) => !IDENTITY.includes(k))) : undefined;
      const spec = { ...rest, ...(userEnv && Object.keys(userEnv).length > 0 ? { env: userEnv } : {}) };
      const active = ["running", "starting", "pending"].includes(status.state) || status.restartAt !== undefined;
      const record: StarRecord = {
        name: status.id,
        uid: randomUUID(),
        spec: spec as StarRecord["spec"],
        desired: active ? "running" : "stopped",
        node,
        createdAt: status.startedAt ?? Date.now(),
        generation: 1,
        ...(saved.trusted ? {} : { untrusted: true as const }),
      };
      const observed: StarObserved = { uid: record.uid, node, status, generation: 1, updatedAt: Date.now() };
      const res = await store.txn({
        compare: [{ key: starKey(record.name), target: "version", op: "=", value: 0 }],
        success: [
          { type: "put", key: starKey(record.name), value: JSON.stringify(record) },
          { type: "put", key: statusKey(record.name), value: JSON.stringify(observed) },
        ],
      });
      if (!res.succeeded) continue; // already there
      // The running star's own token (only if no token of that value exists: never an admin's).
      if (token && isTokenForm(token) && active && !(await lookupToken(store, token))) {
        await saveToken(store, token, "star", `star:${record.name}`, { star: { name: record.name, uid: record.uid } });
      }
      await events.record("star.adopted", `rebuilt from node ${node} after the store was lost (${status.state})`, { star: record.name, uid: record.uid, node });
      adopted++;
    }
  }
  return adopted;
}
