/**
 * What a node owns on its host is named by that node (issue 9, break 5): two constellations on
 * one machine (a dev node beside `npm test`, several agents of a test) used to share cgroups by
 * star name and uids from one range, so one's `rm -f web` killed the other's `web` and their
 * stars read each other's files.
 *
 * A node's data dir holds its claim, `node.json`: {"id": 12 hex digits, "uidBase", "uidCount"}.
 * Its cgroups live under constellation/<id>/<runtime>; its stars' users come from [uidBase, uidBase +
 * uidCount). Uid ranges are handed out by the host's registry, one file per range
 * (<registry>/<slot>.json: {"id", "dataDir"}), written under a lock directory, so no two nodes
 * of one host get the same range. A range is taken back from a node whose data dir no longer
 * claims it (deleted, or reset) and that has nothing running in its cgroups.
 */
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmdirSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { RuntimeUnavailableError } from "../model/errors.js";

/** Users per node: room for 65,536 stars (Kubernetes gives each pod's user namespace as many). */
export const UIDS_PER_NODE = 65_536;
/** The first uid of the first range: far above any system or login user. */
export const FIRST_UID = 2_000_000;
/** Ranges below 2^31 (some tools take uids as signed 32-bit numbers). */
const SLOTS = Math.floor((2 ** 31 - FIRST_UID) / UIDS_PER_NODE);
/** The host's registry of uid ranges. */
export const HOST_REGISTRY = "/var/lib/constellation/nodes";
const LOCK_STALE_MS = 10_000;

export interface NodeClaim {
  /** 12 hex digits, made once per data dir. */
  id: string;
  uidBase: number;
  uidCount: number;
}

export interface ClaimOptions {
  /** The host's registry of uid ranges (default HOST_REGISTRY); null: none (no uids are used, dev mode). */
  registry?: string | null;
  /** Whether a node of this id still runs something on the host (its range is then kept). */
  busy?: (id: string) => boolean;
}

const ID = /^[0-9a-f]{12}$/;

/**
 * The cgroup parent of a node's stars of one runtime: constellation/<node>/<runtime>, so that
 * every group under it is a star of that runtime (the isolate runtime's host group is not a
 * process star's, whatever the star is called).
 */
export function nodeCgroupParent(claim: Pick<NodeClaim, "id">, runtime: "process" | "isolate"): string {
  return `constellation/${claim.id}/${runtime}`;
}

function readClaim(dataDir: string): NodeClaim | undefined {
  try {
    const c = JSON.parse(readFileSync(join(dataDir, "node.json"), "utf8")) as Partial<NodeClaim>;
    if (typeof c.id !== "string" || !ID.test(c.id)) return undefined;
    if (!Number.isInteger(c.uidBase) || !Number.isInteger(c.uidCount)) return undefined;
    return c as NodeClaim;
  } catch {
    return undefined;
  }
}

function writeClaim(dataDir: string, claim: NodeClaim): void {
  const file = join(dataDir, "node.json");
  writeFileSync(`${file}.tmp`, `${JSON.stringify(claim)}\n`, { mode: 0o644 });
  renameSync(`${file}.tmp`, file);
}

interface Entry {
  id: string;
  dataDir: string;
}

function readEntry(file: string): Entry | undefined {
  try {
    const e = JSON.parse(readFileSync(file, "utf8")) as Partial<Entry>;
    return typeof e.id === "string" && typeof e.dataDir === "string" ? (e as Entry) : undefined;
  } catch {
    return undefined;
  }
}

/** This data dir's node: its claim, made (and its uid range registered) on first use. */
export function claimNode(dataDir: string, options: ClaimOptions = {}): NodeClaim {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  let known = readClaim(dir);
  const registry = options.registry === undefined ? HOST_REGISTRY : options.registry;
  if (registry === null) {
    const claim = known ?? { id: randomBytes(6).toString("hex"), uidBase: FIRST_UID, uidCount: UIDS_PER_NODE };
    if (!known) writeClaim(dir, claim);
    return claim;
  }
  mkdirSync(registry, { recursive: true, mode: 0o755 });
  return withLock(registry, () => {
    const slotFile = (slot: number) => join(registry, `${slot}.json`);
    // node.json lost or garbled: the registry still knows this data dir's node (a new id would
    // orphan its stars, running on in the old node's groups and users).
    if (!known) {
      known = recoverClaim(registry, dir);
      if (known) writeClaim(dir, known);
    }
    if (known) {
      const slot = (known.uidBase - FIRST_UID) / UIDS_PER_NODE;
      const entry = Number.isInteger(slot) && slot >= 0 && slot < SLOTS ? readEntry(slotFile(slot)) : undefined;
      if (entry?.id === known.id && resolve(entry.dataDir) === dir) return known;
      if (!entry && Number.isInteger(slot) && slot >= 0 && slot < SLOTS) {
        // The registry lost it (the host's /var/lib was wiped) or it cannot be read: ours again
        // (no other node takes a range whose entry it cannot read).
        writeEntry(slotFile(slot), { id: known.id, dataDir: dir });
        return known;
      }
      if (entry?.id === known.id) {
        // The data dir moved: the range follows it.
        writeEntry(slotFile(slot), { id: known.id, dataDir: dir });
        return known;
      }
      // Another node holds the range now: this one takes a new range (its stars' users change
      // at their next start).
    }
    const id = known?.id ?? randomBytes(6).toString("hex");
    for (let slot = 0; slot < SLOTS; slot++) {
      const file = slotFile(slot);
      const entry = readEntry(file);
      // An entry that cannot be read is not a free range: whose it is cannot be known.
      if (!entry && existsSync(file)) continue;
      if (entry && !stale(entry, options.busy)) continue;
      const claim: NodeClaim = { id, uidBase: FIRST_UID + slot * UIDS_PER_NODE, uidCount: UIDS_PER_NODE };
      // The data dir first: from the moment the registry names it, it must say so itself.
      writeClaim(dir, claim);
      writeEntry(file, { id, dataDir: dir });
      return claim;
    }
    throw new RuntimeUnavailableError(`every uid range of this host (${SLOTS}) is taken by a node (see ${registry}): remove unused data dirs`);
  });
}

/** A registry entry, written whole or not at all (a crash or a full disk leaves no empty entry). */
function writeEntry(file: string, entry: Entry): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, "w", 0o644);
  try {
    writeSync(fd, JSON.stringify(entry));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/** The claim the registry holds for `dir` (its node.json was lost), if any. */
function recoverClaim(registry: string, dir: string): NodeClaim | undefined {
  let names: string[];
  try {
    names = readdirSync(registry);
  } catch {
    return undefined;
  }
  for (const name of names) {
    const m = /^(\d+)\.json$/.exec(name);
    if (!m) continue;
    const entry = readEntry(join(registry, name));
    if (entry && resolve(entry.dataDir) === dir && ID.test(entry.id)) {
      return { id: entry.id, uidBase: FIRST_UID + Number(m[1]) * UIDS_PER_NODE, uidCount: UIDS_PER_NODE };
    }
  }
  return undefined;
}

/** A registered node that is gone: its data dir no longer claims it, and nothing of it runs. */
function stale(entry: Entry, busy: ClaimOptions["busy"]): boolean {
  if (readClaim(entry.dataDir)?.id === entry.id) return false;
  return !busy?.(entry.id);
}

/** Runs `fn` holding the registry's lock (a directory: mkdir is atomic); a lock older than 10 s is broken. */
function withLock<T>(registry: string, fn: () => T): T {
  const lock = join(registry, ".lock");
  const deadline = Date.now() + 3 * LOCK_STALE_MS;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      try {
        if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS) rmdirSync(lock);
      } catch {
        // released meanwhile
      }
      if (Date.now() > deadline) throw new RuntimeUnavailableError(`the host's node registry ${registry} stays locked (${lock}): remove that directory if no constellation is starting`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
  try {
    return fn();
  } finally {
    try {
      rmdirSync(lock);
    } catch {
      // broken by another after 10 s
    }
  }
}
