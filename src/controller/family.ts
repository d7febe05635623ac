/**
 * Stars and the stars they made (StarRecord.owner, by name and uid). A star's token sees and
 * manages only its own star and its descendants; removing a star removes its descendants; a star
 * whose owner is gone (its creation raced the owner's removal) is removed too. Pure functions
 * over a list of records.
 */
import type { StarRecord, StarRef } from "../model/records.js";

/**
 * The star `root` (if that very creation still exists) and every star below it, each parent
 * before its children; empty if `root` is gone.
 */
export function subtree(records: Iterable<StarRecord>, root: StarRef): StarRecord[] {
  const children = new Map<string, StarRecord[]>();
  let top: StarRecord | undefined;
  for (const r of records) {
    if (r.name === root.name && r.uid === root.uid) top = r;
    if (r.owner) children.set(r.owner.uid, [...(children.get(r.owner.uid) ?? []), r]);
  }
  if (!top) return [];
  const out = [top];
  const seen = new Set([top.uid]);
  for (let i = 0; i < out.length; i++) {
    for (const c of children.get(out[i]!.uid) ?? []) {
      if (seen.has(c.uid)) continue;
      seen.add(c.uid);
      out.push(c);
    }
  }
  return out;
}

/** Stars whose owner no longer exists, with everything below them. */
export function orphans(records: StarRecord[]): StarRecord[] {
  const uids = new Set(records.map((r) => r.uid));
  const out: StarRecord[] = [];
  for (const r of records) {
    if (r.owner && !uids.has(r.owner.uid)) out.push(...subtree(records, r));
  }
  return out;
}
