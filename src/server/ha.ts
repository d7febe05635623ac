/**
 * A highly-available control plane (issue 12, docs/ha.md): several controllers on one etcd.
 *
 *   init --store etcd://h1:2379,h2:2379,h3:2379 --server     (on each controller machine)
 *
 *   the first to start makes the cluster's CA and keeps it in the store (once: a txn); the
 *   others find it there and sign their own controller certificates with it. Every controller
 *   serves the API and takes agents; each registers itself under KEYS.controllers on a lease
 *   (gone when it dies), and agents learn the list from their heartbeats' answers so they can
 *   fail over. The control loops run on one of them: the leader of the "controller" election
 *   (store/election.ts), whose fence guards every write of the loops.
 *
 *   campaign ─▶ leader ─▶ controller.start(fence) ─▶ … lease lost / key gone ─▶ controller.stop() ─▶ campaign
 */
import { type KeyObject, X509Certificate, createPrivateKey } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { z } from "zod";
import type { Controller } from "../controller/controller.js";
import { StoreCorruptError } from "../model/errors.js";
import { DNS_LABEL } from "../model/spec.js";
import { type ControllerRecord, KEYS } from "../model/records.js";
import { Election } from "../store/election.js";
import { LeaseKeeper } from "../store/lease-keeper.js";
import type { KeyValue, Store } from "../store/types.js";

/** The loops' election: its lease's TTL (s) is how long a dead leader holds them. */
export const LEADER_TTL_S = 2;
/** A controller's registration lasts this long after it stops renewing it. */
export const CONTROLLER_TTL_S = 10;

/** The cluster's CA as kept in the store (an HA cluster's controllers share it). */
export interface StoredCa {
  name: string;
  cert: string;
  key: string;
}

/**
 * The cluster's CA from the store, or `make()`'s kept there if the store has none (once: of two
 * controllers starting together, one makes it and the other takes it).
 */
export async function sharedCa(store: Store, make: () => Promise<StoredCa>): Promise<{ ca: StoredCa; made: boolean }> {
  const kv = await store.get(KEYS.clusterCa);
  if (kv) return { ca: checkStoredCa(kv.value), made: false };
  const ca = await make();
  const r = await store.txn({
    compare: [{ key: KEYS.clusterCa, target: "version", op: "=", value: 0 }],
    success: [{ type: "put", key: KEYS.clusterCa, value: JSON.stringify(ca) }],
  });
  if (r.succeeded) return { ca, made: true };
  return { ca: checkStoredCa((await store.get(KEYS.clusterCa))!.value), made: false };
}

/**
 * The CA kept in the store, checked before anything is signed with it: a cluster name, a CA
 * certificate, and its own private key. Anything else (written by hand, damaged) is refused
 * with where to find a good copy, before this controller takes a name or writes a file.
 */
export function checkStoredCa(value: string): StoredCa {
  const bad = (why: string) =>
    new StoreCorruptError(`the cluster's CA in the store (${KEYS.clusterCa}) is not one: ${why}. It was written by hand or damaged: put back the one a controller of this cluster keeps (its data dir's cluster files), or use another store`);
  let ca: Partial<StoredCa>;
  try {
    ca = JSON.parse(value) as Partial<StoredCa>;
  } catch {
    throw bad("not JSON");
  }
  if (typeof ca !== "object" || ca === null || typeof ca.name !== "string" || typeof ca.cert !== "string" || typeof ca.key !== "string") throw bad("it lacks its name, cert or key");
  if (!DNS_LABEL.test(ca.name)) throw bad("its cluster name is not a DNS label");
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(ca.cert);
  } catch {
    throw bad("its cert is not a PEM certificate");
  }
  if (!cert.ca) throw bad("its cert is not a CA's");
  let key: KeyObject;
  try {
    key = createPrivateKey(ca.key);
  } catch {
    throw bad("its key is not a PEM private key");
  }
  if (!cert.checkPrivateKey(key)) throw bad("its key is not the cert's");
  return { name: ca.name, cert: ca.cert, key: ca.key };
}

/** Keeps this controller in the store's list (on a lease) until closed. */
export async function registerController(store: Store, record: () => ControllerRecord, log: (line: string) => void): Promise<{ close(): Promise<void> }> {
  let closed = false;
  let keeper: LeaseKeeper | undefined;
  const put = async () => {
    const { id, ttl } = await store.grantLease(CONTROLLER_TTL_S);
    await store.put(`${KEYS.controllers}${record().node}`, JSON.stringify(record()), { lease: id });
    keeper = new LeaseKeeper(store, id, ttl);
    // Lost (the store was away longer than the TTL): registered again.
    keeper.onLost(() => void again());
  };
  const again = async () => {
    for (let wait = 200; !closed; wait = Math.min(5000, wait * 2)) {
      try {
        await put();
        return;
      } catch (err) {
        log(`controller: registering in the store failed (${(err as Error).message}); trying again`);
        await delay(wait);
      }
    }
  };
  await put();
  return {
    close: async () => {
      closed = true;
      keeper?.stop();
      await store.delete({ key: `${KEYS.controllers}${record().node}` }).catch(() => undefined);
    },
  };
}

const controllerRecord = z.object({
  node: z.string().min(1).max(253),
  address: z.string().min(1).max(300),
  api: z.string().max(300).optional(),
  gossip: z.string().max(300).optional(),
});
/** Keys already said to be bad (at the revision they were seen): each said once. */
const saidBad = new Set<string>();

/**
 * The controllers in these registrations (KEYS.controllers). One that is not a registration (a
 * key written by hand: not JSON, fields missing, another node than its key names) is skipped
 * and said once: one bad key must not hide the others from nodes and `status`.
 */
export function controllersOf(kvs: KeyValue[], log: (line: string) => void): ControllerRecord[] {
  const list: ControllerRecord[] = [];
  for (const kv of kvs) {
    let parsed: ReturnType<typeof controllerRecord.safeParse> | undefined;
    try {
      parsed = controllerRecord.safeParse(JSON.parse(kv.value));
    } catch {
      parsed = undefined;
    }
    // A registration is on a lease (registerController): one without lasts for ever, and is not one.
    if (parsed?.success && kv.lease !== undefined && kv.key === `${KEYS.controllers}${parsed.data.node}`) list.push(parsed.data as ControllerRecord);
    else if (!saidBad.has(`${kv.key}@${kv.modRevision}`)) {
      saidBad.add(`${kv.key}@${kv.modRevision}`);
      log(`controller: ignoring ${kv.key} in the store: not a controller's registration (written by hand? delete it)`);
    }
  }
  return list;
}

/** The controllers registered now. */
export async function listControllers(store: Store, log: (line: string) => void): Promise<ControllerRecord[]> {
  const { kvs } = await store.range({ prefix: KEYS.controllers });
  return controllersOf(kvs, log);
}

export interface LoopsLeader {
  /** Stops campaigning; if it leads, hands over at once (resigns). */
  close(): Promise<void>;
}

/**
 * Campaigns for the control loops for as long as it runs: while this controller leads, its
 * loops run, fenced by its leadership; when it loses office, they stop and it queues again.
 */
export function leadLoops(store: Store, node: string, controller: Controller, log: (line: string) => void, ttlSeconds = LEADER_TTL_S): LoopsLeader {
  const election = new Election(store, "controller", { ttl: ttlSeconds, prefix: KEYS.elections, log });
  const abort = new AbortController();
  const run = async () => {
    let failures = 0;
    while (!abort.signal.aborted) {
      try {
        const leadership = await election.campaign(node, { signal: abort.signal });
        failures = 0;
        if (abort.signal.aborted) {
          await leadership.resign();
          return;
        }
        controller.start(leadership.fence());
        log(`controller ${node}: leads the control loops (token ${leadership.token})`);
        const closed = new Promise<void>((r) => abort.signal.addEventListener("abort", () => r(), { once: true }));
        await Promise.race([leadership.lost, closed]);
        await controller.stop();
        if (abort.signal.aborted) {
          await leadership.resign().catch(() => undefined);
          return;
        }
        // Its claim withdrawn if still there (the lease may live on in etcd): the next leads now.
        await leadership.resign().catch(() => undefined);
        log(`controller ${node}: lost the lead of the control loops (its lease lapsed); queueing again`);
      } catch (err) {
        if (abort.signal.aborted) return;
        if (failures++ === 0) log(`controller ${node}: campaigning for the control loops failed (${(err as Error).message}); trying again`);
        await delay(Math.min(2000, 100 * 2 ** failures));
      }
    }
  };
  const running = run();
  return {
    close: async () => {
      abort.abort();
      await running;
    },
  };
}
