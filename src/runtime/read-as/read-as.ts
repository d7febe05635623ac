/**
 * A star's files as its user finds them, looked up and read by a helper process running as
 * that user (helper.ts): the kernel decides what the user may see (modes, ACLs, every directory
 * on the way), and the node, root, opens none of the star's files itself. One helper per user,
 * started on first use (its code bundled once and given on its command line: it needs no file
 * the user may not read), ended after a while unused; each build has a view of its own in it.
 * What a helper answers is checked as untrusted (the star's user could tamper with it) and
 * never used beyond that star's own bundle.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type FileUser, type Identity, type Input, LookupLimitError, type ReadAnswer, type Reader, type StarFiles } from "../reader-view.js";
import { type Answer, type WireRead, fromWire, inputToWire } from "./wire.js";

const HELPER = fileURLToPath(new URL("./helper.js", import.meta.url));
/** A helper unused this long is ended. */
const IDLE_MS = 30_000;
/** The user "all" reads as: nobody, whose rights are those of every user. */
export const NOBODY: FileUser = { uid: 65534, gid: 65534 };

let code: Promise<string> | undefined;
/** The helper as one module (it and what it imports), built once per process. */
function helperCode(): Promise<string> {
  code ??= import("esbuild").then(async (esbuild) => {
    const out = await esbuild.build({ entryPoints: [HELPER], bundle: true, write: false, format: "esm", platform: "node", target: `node${process.versions.node.split(".")[0]}`, logLevel: "silent" });
    return out.outputFiles[0]!.text;
  });
  code.catch(() => (code = undefined));
  return code;
}

export class HelperGoneError extends Error {
  constructor() {
    super("the reader helper ended");
  }
}

/** One helper process, for one user. */
class Helper {
  private child: ChildProcess | undefined;
  private readonly waiting = new Map<number, { ok: (v: unknown) => void; fail: (e: Error) => void }>();
  private nextId = 1;
  private idle: NodeJS.Timeout | undefined;
  private nextView = 1;
  /** The views open (by id: what made them), made again in a helper started anew. */
  private readonly views = new Map<number, Record<string, unknown>>();

  constructor(readonly user: FileUser) {}

  async ask(req: Record<string, unknown>): Promise<unknown> {
    return this.send(await this.started(), req);
  }

  /** Written at once, in order (answers come back in any order). */
  private send(child: ChildProcess, req: Record<string, unknown>): Promise<unknown> {
    clearTimeout(this.idle);
    this.hold(child, true);
    const id = this.nextId++;
    return new Promise((ok, fail) => {
      this.waiting.set(id, { ok, fail });
      child.stdin!.write(`${JSON.stringify({ ...req, id })}\n`);
    });
  }

  /** Sent without waiting for its answer. */
  private tell(child: ChildProcess, req: Record<string, unknown>): void {
    void this.send(child, req).catch(() => undefined);
  }

  openView(reader: Reader, refuseUnder: readonly string[]): number {
    const view = this.nextView++;
    const req = { op: "view", view, reader, refuseUnder };
    this.views.set(view, req);
    if (this.child) this.tell(this.child, req); // else made as the helper starts
    return view;
  }

  dropView(view: number): void {
    if (this.views.delete(view) && this.child) this.tell(this.child, { op: "drop", view });
  }

  end(): void {
    clearTimeout(this.idle);
    this.child?.stdin?.end();
    this.child = undefined;
  }

  private settle(line: string): void {
    let a: Answer;
    try {
      a = JSON.parse(line) as Answer;
    } catch {
      return;
    }
    const w = this.waiting.get(a.id);
    if (!w) return;
    this.waiting.delete(a.id);
    if (a.ok) w.ok(a.value);
    else w.fail(a.error === "limit" ? new LookupLimitError() : new Error("the reader helper refused the request"));
    if (this.waiting.size === 0 && this.child) {
      this.hold(this.child, false);
      this.idle = setTimeout(() => this.end(), IDLE_MS);
      this.idle.unref();
    }
  }

  /** The helper keeps the node's event loop alive only while it has questions to answer. */
  private hold(child: ChildProcess, on: boolean): void {
    for (const h of [child, child.stdin, child.stdout] as Array<{ ref?: () => void; unref?: () => void } | null>) {
      if (on) h?.ref?.();
      else h?.unref?.();
    }
  }

  private starting: Promise<ChildProcess> | undefined;
  private started(): Promise<ChildProcess> {
    if (this.child) return Promise.resolve(this.child);
    this.starting ??= helperCode()
      .then((src) => {
        // As the user, with its one group (libuv drops root's other groups), nothing of the
        // node's environment, from /.
        const child = spawn(process.execPath, ["--input-type=module", "-e", src], { uid: this.user.uid, gid: this.user.gid, env: {}, cwd: "/", stdio: ["pipe", "pipe", "ignore"] });
        createInterface({ input: child.stdout! }).on("line", (line) => this.settle(line));
        const gone = () => {
          if (this.child === child) this.child = undefined;
          for (const w of this.waiting.values()) w.fail(new HelperGoneError());
          this.waiting.clear();
        };
        child.on("exit", gone);
        child.on("error", gone);
        child.stdin!.on("error", () => undefined); // a helper gone: its pending questions fail above
        this.child = child;
        for (const req of this.views.values()) this.tell(child, req);
        return child;
      })
      .finally(() => (this.starting = undefined));
    return this.starting;
  }
}

const helpers = new Map<string, Helper>();

function helperFor(user: FileUser): Helper {
  const key = `${user.uid}:${user.gid}`;
  let h = helpers.get(key);
  if (!h) helpers.set(key, (h = new Helper(user)));
  return h;
}

/** Ends every helper (the node is stopping). */
export function endReaderHelpers(): void {
  for (const h of helpers.values()) h.end();
  helpers.clear();
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v.startsWith("/") ? v : undefined);

/** A view of a star's files in its user's helper: the same questions as a ReaderView, asked there. */
export class RemoteView implements StarFiles {
  private readonly helper: Helper;
  private readonly view: number;

  constructor(reader: Reader, refuseUnder: readonly string[] = []) {
    this.helper = helperFor(reader === "all" ? NOBODY : reader);
    this.view = this.helper.openView(reader, refuseUnder);
  }

  async real(path: string): Promise<string | undefined> {
    return str(await this.helper.ask({ op: "real", view: this.view, path }));
  }

  async readable(path: string): Promise<string | undefined> {
    return str(await this.helper.ask({ op: "readable", view: this.view, path }));
  }

  async readFile(path: string, max: number): Promise<ReadAnswer> {
    const a = (await this.helper.ask({ op: "readFile", view: this.view, path, max })) as WireRead;
    if (a?.ok === true) {
      const source = Buffer.from(String(a.source), "base64");
      const real = str(a.real);
      if (real === undefined || source.length > max) throw new Error("the reader helper answered nonsense");
      return { ok: true, source, real, id: fromWire(a.id) };
    }
    if (a?.ok === false && a.why === "too-big") return { ok: false, why: "too-big", size: Number(a.size) };
    if (a?.ok === false && a.why === "not-file") return { ok: false, why: "not-file" };
    return { ok: false, why: "refused" };
  }

  async unchanged(inputs: readonly Input[], skip: string): Promise<boolean> {
    return (await this.helper.ask({ op: "unchanged", view: this.view, inputs: inputs.map(inputToWire), skip })) === true;
  }

  async identities(paths: readonly string[]): Promise<Array<Identity | undefined>> {
    const ids = await this.helper.ask({ op: "identities", view: this.view, paths });
    if (!Array.isArray(ids) || ids.length !== paths.length) throw new Error("the reader helper answered nonsense");
    return ids.map((w) => (w === null ? undefined : fromWire(w)));
  }

  close(): void {
    this.helper.dropView(this.view);
  }
}
