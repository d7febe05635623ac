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
import { fileURLToPath } from "node:url";
import { type FileUser, type Identity, type Input, LookupLimitError, type ReadAnswer, type Reader, type StarFiles } from "../reader-view.js";
import { type Answer, type WireRead, fromWire, inputToWire } from "./wire.js";

const HELPER = fileURLToPath(new URL("./helper.js", import.meta.url));
/** A helper unused this long is ended. */
const IDLE_MS = 30_000;
/** The user "all" reads as: nobody, whose rights are those of every user. */
export const NOBODY: FileUser = { uid: 65534, gid: 65534 };

/** What tests may change: the helper's code (a hostile helper, say) and how long an answer may take. */
const settings: { code?: string; answerMs: number } = { answerMs: 20_000 };

/** For tests: run `code` as the helper instead of helper.ts, and wait `answerMs` for answers. */
export function configureReaderHelpers(o: { code?: string | undefined; answerMs?: number }): void {
  endReaderHelpers();
  if ("code" in o) {
    if (o.code === undefined) delete settings.code;
    else settings.code = o.code;
  }
  if (o.answerMs !== undefined) settings.answerMs = o.answerMs;
}

let code: Promise<string> | undefined;
/** The helper as one module (it and what it imports), built once per process. */
function helperCode(): Promise<string> {
  if (settings.code !== undefined) return Promise.resolve(settings.code);
  code ??= import("esbuild").then(async (esbuild) => {
    const out = await esbuild.build({ entryPoints: [HELPER], bundle: true, write: false, format: "esm", platform: "node", target: `node${process.versions.node.split(".")[0]}`, logLevel: "silent" });
    return out.outputFiles[0]!.text;
  });
  code.catch(() => (code = undefined));
  return code;
}

/** The helper ended, or was ended (it took too long, or answered too much), with questions unanswered. */
export class HelperGoneError extends Error {}

/** A build asked for more bytes of files than any bundle takes in. */
export class ReadBudgetError extends Error {
  constructor() {
    super("the bundle asks for more than 80 MiB of files: import less (or load large files at run time)");
  }
}

/** Longest answer line: a file of MAX_READ bytes in base64, and room for the rest. */
export const MAX_READ = 16 * 2 ** 20;
const MAX_LINE = Math.ceil((MAX_READ * 4) / 3) + 2 ** 16;

/** One helper process and the questions put to it. */
interface Conn {
  child: ChildProcess;
  waiting: Map<number, { ok: (v: unknown) => void; fail: (e: Error) => void; timer: NodeJS.Timeout }>;
  /** Why it was ended, when the node ended it. */
  ended?: string;
}

/** One helper process at a time, for one user. */
class Helper {
  private conn: Conn | undefined;
  private nextId = 1;
  private idle: NodeJS.Timeout | undefined;
  private nextView = 1;
  /** The views open (by id: what made them), made again in a helper started anew. */
  private readonly views = new Map<number, Record<string, unknown>>();
  lastUsed = 0;

  constructor(readonly user: FileUser) {}

  get running(): boolean {
    return this.conn !== undefined;
  }

  get busy(): boolean {
    return (this.conn?.waiting.size ?? 0) > 0;
  }

  async ask(req: Record<string, unknown>): Promise<unknown> {
    return this.send(await this.started(), req);
  }

  /** Written at once, in order (answers come back in any order), each with a deadline. */
  private send(conn: Conn, req: Record<string, unknown>): Promise<unknown> {
    clearTimeout(this.idle);
    this.lastUsed = Date.now();
    hold(conn.child, true);
    const id = this.nextId++;
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => this.kill(conn, `did not answer within ${settings.answerMs / 1000} s`), settings.answerMs);
      conn.waiting.set(id, { ok, fail, timer });
      conn.child.stdin!.write(`${JSON.stringify({ ...req, id })}\n`);
    });
  }

  /** Sent without waiting for its answer. */
  private tell(conn: Conn, req: Record<string, unknown>): void {
    void this.send(conn, req).catch(() => undefined);
  }

  openView(reader: Reader, refuseUnder: readonly string[]): number {
    const view = this.nextView++;
    const req = { op: "view", view, reader, refuseUnder };
    this.views.set(view, req);
    if (this.conn) this.tell(this.conn, req); // else made as the helper starts
    return view;
  }

  dropView(view: number): void {
    if (this.views.delete(view) && this.conn) this.tell(this.conn, { op: "drop", view });
  }

  /** Ends the helper once its questions are answered (at once if there are none). */
  end(): void {
    clearTimeout(this.idle);
    const conn = this.conn;
    this.conn = undefined;
    conn?.child.stdin?.end();
  }

  /** Ends the helper now: its questions fail with `why`. */
  private kill(conn: Conn, why: string): void {
    conn.ended ??= why;
    if (this.conn === conn) this.conn = undefined;
    conn.child.kill("SIGKILL");
    this.fail(conn);
  }

  private fail(conn: Conn): void {
    const why = conn.ended ?? "ended";
    for (const w of conn.waiting.values()) {
      clearTimeout(w.timer);
      w.fail(new HelperGoneError(`the reader helper (uid ${this.user.uid}) ${why}`));
    }
    conn.waiting.clear();
  }

  private settle(conn: Conn, line: string): void {
    let a: Answer;
    try {
      a = JSON.parse(line) as Answer;
    } catch {
      return this.kill(conn, "answered what is not JSON");
    }
    const w = conn.waiting.get(a?.id);
    if (!w) return;
    conn.waiting.delete(a.id);
    clearTimeout(w.timer);
    if (a.ok) w.ok(a.value);
    else w.fail(a.error === "limit" ? new LookupLimitError() : a.error === "budget" ? new ReadBudgetError() : new Error("the reader helper refused the request"));
    if (conn.waiting.size === 0 && this.conn === conn) {
      hold(conn.child, false);
      this.idle = setTimeout(() => this.end(), IDLE_MS);
      this.idle.unref();
    }
  }

  private starting: Promise<Conn> | undefined;
  private started(): Promise<Conn> {
    if (this.conn) return Promise.resolve(this.conn);
    this.starting ??= helperCode()
      .then((src) => this.spawn(src))
      .finally(() => (this.starting = undefined));
    return this.starting;
  }

  private spawn(src: string): Conn {
    // As the user, with its one group (libuv drops root's other groups), nothing of the
    // node's environment, from /.
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, ["--input-type=module", "-e", src], { uid: this.user.uid, gid: this.user.gid, env: {}, cwd: "/", stdio: ["pipe", "pipe", "ignore"] });
    } catch (err) {
      throw new HelperGoneError(`the reader helper (uid ${this.user.uid}) could not start: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const conn: Conn = { child, waiting: new Map() };
    child.on("error", (err: NodeJS.ErrnoException) => {
      conn.ended ??= `could not start or was lost: ${err.code ?? err.message}`;
      this.kill(conn, conn.ended);
    });
    if (!child.stdin || !child.stdout) {
      this.kill(conn, "could not start (no pipes: out of file descriptors?)");
      throw new HelperGoneError(`the reader helper (uid ${this.user.uid}) ${conn.ended}`);
    }
    child.stdin.on("error", () => undefined); // a helper gone: its questions fail on close
    // Answers, one per line, each at most MAX_LINE bytes: a helper that says more is ended.
    let parts: Buffer[] = [];
    let size = 0;
    child.stdout.on("data", (chunk: Buffer) => {
      for (let at = 0; at < chunk.length; ) {
        const nl = chunk.indexOf(0x0a, at);
        const end = nl < 0 ? chunk.length : nl;
        size += end - at;
        if (size > MAX_LINE) return this.kill(conn, `answered more than ${MAX_LINE} bytes at once`);
        parts.push(chunk.subarray(at, end));
        if (nl < 0) break;
        const line = Buffer.concat(parts).toString("utf8");
        parts = [];
        size = 0;
        this.settle(conn, line);
        at = nl + 1;
      }
    });
    // Closed once its output is all read: every answer it gave is settled before the rest fail.
    child.on("close", () => {
      if (this.conn === conn) this.conn = undefined;
      this.fail(conn);
    });
    this.conn = conn;
    for (const req of this.views.values()) this.tell(conn, req);
    return conn;
  }
}

/** The helper keeps the node's event loop alive only while it has questions to answer. */
function hold(child: ChildProcess, on: boolean): void {
  for (const h of [child, child.stdin, child.stdout] as Array<{ ref?: () => void; unref?: () => void } | null>) {
    if (on) h?.ref?.();
    else h?.unref?.();
  }
}

const helpers = new Map<string, Helper>();

/** Helpers kept at once (each is a Node process): past this, idle ones are ended, least recently used first. */
const MAX_IDLE_HELPERS = 8;

function helperFor(user: FileUser): Helper {
  const key = `${user.uid}:${user.gid}`;
  let h = helpers.get(key);
  if (!h) {
    helpers.set(key, (h = new Helper(user)));
    const running = [...helpers.values()].filter((x) => x.running);
    const idle = running.filter((x) => !x.busy).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const x of idle.slice(0, Math.max(0, running.length + 1 - MAX_IDLE_HELPERS))) x.end();
  }
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
