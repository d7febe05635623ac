/**
 * The reader helper's wire (helper.ts ↔ read-as.ts): one JSON object per line each way.
 * Requests carry an id and name a view (one per build); answers carry the request's id.
 * Identities travel with their bigints as decimal strings, file bytes as base64.
 */
import type { Identity, Input, ReadAnswer, Reader } from "../reader-view.js";

export type Request =
  | { id: number; op: "view"; view: number; reader: Reader; refuseUnder: string[] }
  | { id: number; op: "drop"; view: number }
  | { id: number; op: "real" | "readable"; view: number; path: string }
  | { id: number; op: "readFile"; view: number; path: string; max: number }
  | { id: number; op: "unchanged"; view: number; inputs: WireInput[]; skip: string }
  | { id: number; op: "identities"; view: number; paths: string[] };

export type Answer = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: "limit" | "budget" | "bad" };

export type WireIdentity = Record<keyof Identity, string>;
export type WireInput = WireIdentity & { path: string; watch?: boolean };
export type WireRead = { ok: true; source: string; real: string; id: WireIdentity } | Exclude<ReadAnswer, { ok: true }>;

const FIELDS = ["dev", "ino", "size", "mtimeNs", "ctimeNs"] as const;

export function toWire(id: Identity): WireIdentity {
  return Object.fromEntries(FIELDS.map((f) => [f, id[f].toString()])) as WireIdentity;
}

/** An identity from the wire; throws on anything but five decimal integers. */
export function fromWire(w: unknown): Identity {
  const o = w as Record<string, unknown> | null;
  if (o === null || typeof o !== "object") throw new Error("not an identity");
  const out = {} as Identity;
  for (const f of FIELDS) {
    const v = o[f];
    if (typeof v !== "string" || !/^\d{1,20}$/.test(v)) throw new Error("not an identity");
    out[f] = BigInt(v);
  }
  return out;
}

export const inputToWire = (i: Input): WireInput => ({ ...toWire(i), path: i.path, ...(i.watch ? { watch: true } : {}) });
export const inputFromWire = (w: WireInput): Input => ({ ...fromWire(w), path: String(w.path), ...(w.watch === true ? { watch: true } : {}) });
