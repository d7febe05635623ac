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
import { type StarObserved, type StarRecord, starKey, statusKey } from "../model/records.js";
import type { Runtime } from "../runtime/types.js";
import type { Store } from "../store/types.js";

/** What the agent puts into a star's env (agent.ts withIdentity): given anew at its next start. */
const IDENTITY = ["CONSTELLATION_ENDPOINT", "CONSTELLATION_TOKEN", "CONSTELLATION_CA"];

export async function adoptStars(store: Store, node: string, runtimes: Runtime[]): Promise<number> {
  const events = new EventLog(store, `node-${node}`);
  let adopted = 0;
  const stars = runtimes.flatMap((runtime) => runtime.list().map((status) => ({ status, saved: runtime.saved?.(status.id) })));
  // The identity the node gave each star (older rows do not say: then both names were the node's).
  const given = (saved: { identity?: string[] }) => saved.identity ?? IDENTITY;
  // A token the node gave one star only is known again; one seen in two stars' env (a user
  // passed a star's token to another) is registered for neither.
  const holders = new Map<string, number>();
  for (const { saved } of stars) {
    const token = saved && given(saved).includes("CONSTELLATION_TOKEN") ? (saved.spec as { env?: Record<string, string> }).env?.CONSTELLATION_TOKEN : undefined;
    if (token) holders.set(token, (holders.get(token) ?? 0) + 1);
  }
  for (const { saved } of stars) {
    for (const [k, v] of Object.entries((saved?.spec as { env?: Record<string, string> } | undefined)?.env ?? {})) {
      if (k === "CONSTELLATION_TOKEN" && saved && !given(saved).includes(k) && holders.has(v)) holders.set(v, 2); // a user's copy of it
    }
  }
  for (const { status, saved } of stars) {
    if (!saved) continue;
    const { env, ...rest } = saved.spec as { env?: Record<string, string> };
    const mine = given(saved);
    const token = mine.includes("CONSTELLATION_TOKEN") ? env?.CONSTELLATION_TOKEN : undefined;
    const userEnv = env ? Object.fromEntries(Object.entries(env).filter(([k]) => !mine.includes(k))) : undefined;
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
    if (token && holders.get(token) === 1 && isTokenForm(token) && active && !(await lookupToken(store, token))) {
      await saveToken(store, token, "star", `star:${record.name}`, { star: { name: record.name, uid: record.uid } });
    }
    await events.record("star.adopted", `rebuilt from node ${node} after the store was lost (${status.state})`, { star: record.name, uid: record.uid, node });
    adopted++;
  }
  return adopted;
}
