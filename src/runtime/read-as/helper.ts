/**
 * The reader helper: a process the node starts as a star's user (its uid and its one group),
 * in which a star's files are looked up and read for its bundle (a ReaderView, as root would
 * use, but here every lookup, link and open is the user's own): the kernel decides what that
 * user may see — modes, POSIX ACLs, security modules, every directory on the way — so nothing
 * swapped between two lookups can tell the star what it could not find out itself. Requests
 * and answers are JSON lines (wire.ts); the node trusts nothing it answers beyond the star's
 * own bundle.
 */
import { createInterface } from "node:readline";
import { LookupLimitError, type Reader, ReaderView } from "../reader-view.js";
import { type Answer, type Request, type WireRead, inputFromWire, toWire } from "./wire.js";

/** Each view (one build), and the bytes of files it was given. */
const views = new Map<number, { view: ReaderView; bytes: number }>();
/** Most bytes of files one view is given (a bundle takes in at most 64 MiB: this leaves room for what it refuses). */
const VIEW_BYTES = 80 * 2 ** 20;
/** Files read at once, in all views (each up to 16 MiB, held twice while it is encoded). */
const READS_AT_ONCE = 2;
let reading = 0;
const queue: Array<() => void> = [];

async function oneRead<T>(fn: () => Promise<T>): Promise<T> {
  if (reading >= READS_AT_ONCE) await new Promise<void>((go) => queue.push(go));
  reading++;
  try {
    return await fn();
  } finally {
    reading--;
    queue.shift()?.();
  }
}

/** A view's budget is spent: the build is refused (not this file: one answer per bundle). */
class BudgetError extends Error {}

// The node alone talks to this process (its stdin); no debugger may be started by a signal.
process.on("SIGUSR1", () => undefined);

async function answer(req: Request): Promise<unknown> {
  if (req.op === "view") {
    // For one user the kernel decides (this process is that user); for "all", nobody's rights
    // and the mode bits for every user besides.
    views.set(req.view, { view: new ReaderView(req.reader as Reader, req.refuseUnder, req.reader !== "all"), bytes: 0 });
    return true;
  }
  if (req.op === "drop") return views.delete(req.view);
  const held = views.get(req.view);
  if (!held) throw new Error("no such view");
  const view = held.view;
  switch (req.op) {
    case "real":
      return (await view.real(req.path)) ?? null;
    case "readable":
      return (await view.readable(req.path)) ?? null;
    case "readFile": {
      const a = await oneRead(async () => {
        // What this read may take is set aside first (reads run side by side).
        const allowed = Math.min(req.max, VIEW_BYTES - held.bytes);
        if (allowed <= 0) throw new BudgetError();
        held.bytes += allowed;
        const r = await view.readFile(req.path, allowed).catch((err: unknown) => {
          held.bytes -= allowed;
          throw err;
        });
        held.bytes -= allowed - (r.ok ? r.source.length : 0);
        return r;
      });
      const wire: WireRead = a.ok ? { ok: true, source: a.source.toString("base64"), real: a.real, id: toWire(a.id) } : a;
      return wire;
    }
    case "unchanged":
      return view.unchanged(req.inputs.map(inputFromWire), req.skip);
    case "identities":
      return (await view.identities(req.paths)).map((id) => (id ? toWire(id) : null));
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on("line", (line) => {
  let req: Request;
  try {
    req = JSON.parse(line) as Request;
  } catch {
    return;
  }
  void answer(req).then(
    (value): Answer => ({ id: req.id, ok: true, value }),
    (err): Answer => ({ id: req.id, ok: false, error: err instanceof LookupLimitError ? "limit" : err instanceof BudgetError ? "budget" : "bad" }),
  ).then((a) => process.stdout.write(`${JSON.stringify(a)}\n`));
});
lines.on("close", () => process.exit(0));
