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

const views = new Map<number, ReaderView>();

async function answer(req: Request): Promise<unknown> {
  if (req.op === "view") {
    // For one user the kernel decides (this process is that user); for "all", nobody's rights
    // and the mode bits for every user besides.
    views.set(req.view, new ReaderView(req.reader as Reader, req.refuseUnder, req.reader !== "all"));
    return true;
  }
  if (req.op === "drop") return views.delete(req.view);
  const view = views.get(req.view);
  if (!view) throw new Error("no such view");
  switch (req.op) {
    case "real":
      return (await view.real(req.path)) ?? null;
    case "readable":
      return (await view.readable(req.path)) ?? null;
    case "readFile": {
      const a = await view.readFile(req.path, req.max);
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
    (err): Answer => ({ id: req.id, ok: false, error: err instanceof LookupLimitError ? "limit" : "bad" }),
  ).then((a) => process.stdout.write(`${JSON.stringify(a)}\n`));
});
lines.on("close", () => process.exit(0));
