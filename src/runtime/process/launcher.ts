/**
 * The node's launcher: one resident `star-shim -Z` process that clones each star's init (pid 1
 * of the star's new namespaces). A clone of that tiny process costs well under a millisecond;
 * the agent's own spawn() is a fork of the whole agent and blocks its event loop for
 * milliseconds (measured ~4 ms here). At most one start per CPU is under way at a time (the
 * rest queue in the launcher, in order), so a burst's starts finish one after another rather
 * than all late together. The launcher also tells us when each init ends.
 *
 * If the launcher dies (or the agent restarts), running stars carry on by themselves: their
 * inits are in their own sessions and write each star's end to its `end` file; the runtime then
 * follows them by that file, as it does after a recovery.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:os";
import { StartFailedError } from "../../model/errors.js";

export interface Launched {
  /** The process the launcher made: the star's init (so the same as initPid). */
  shimPid: number;
  pid: number;
  initPid: number;
  /** How the init ended (its exit code is the program's); `lost` if the launcher died first. */
  exited: Promise<ShimEnd>;
}

export interface ShimEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  lost: boolean;
}

interface Pending {
  started?: (l: { shimPid: number; pid: number; initPid: number }) => void;
  failed?: (error: string) => void;
  exit: (e: ShimEnd) => void;
  exited: Promise<ShimEnd>;
}

const START_TIMEOUT_MS = 10_000;

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

export class Launcher {
  private child: ChildProcess | undefined;
  private readonly pending = new Map<string, Pending>();
  private seq = 0;
  private buf = "";
  private closed = false;

  constructor(private readonly shimPath: string) {}

  private ensure(): ChildProcess {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.child;
    const child = spawn(this.shimPath, ["-Z"], { stdio: ["pipe", "pipe", "ignore"], detached: true });
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (d: string) => this.onData(d));
    child.stdin!.on("error", () => undefined);
    child.once("exit", () => this.onLauncherGone(child));
    child.once("error", () => this.onLauncherGone(child));
    this.child = child;
    return child;
  }

  /** Starts a star with these arguments; resolves when its init reports the program running. */
  launch(star: string, args: string[]): Promise<Launched> {
    if (this.closed) return Promise.reject(new StartFailedError(star, "the launcher is closed"));
    // Arguments travel NUL-separated: one with a NUL in it could smuggle in options.
    if (args.some((a) => a.includes("\0"))) return Promise.reject(new StartFailedError(star, "an argument contains a NUL byte"));
    const id = `r${++this.seq}`;
    const child = this.ensure();
    let exit!: Pending["exit"];
    const exited = new Promise<ShimEnd>((resolve) => (exit = resolve));
    return new Promise<Launched>((resolve, reject) => {
      const timer = setTimeout(() => {
        p.failed?.(`the launcher did not report within ${START_TIMEOUT_MS / 1000} s`);
        // If it starts after all, nobody wants it any more.
        p.started = (l) => signal(l.initPid || l.shimPid, "SIGKILL");
      }, START_TIMEOUT_MS);
      const p: Pending = {
        exit,
        exited,
        started: (l) => {
          clearTimeout(timer);
          resolve({ ...l, exited });
        },
        failed: (error) => {
          clearTimeout(timer);
          p.started = undefined;
          reject(new StartFailedError(star, error));
        },
      };
      this.pending.set(id, p);
      const payload = Buffer.from([id, ...args].map((a) => `${a}\0`).join(""), "utf8");
      child.stdin!.write(`${payload.length}\n`);
      child.stdin!.write(payload);
    });
  }

  private onData(d: string): void {
    this.buf += d;
    for (let nl = this.buf.indexOf("\n"); nl >= 0; nl = this.buf.indexOf("\n")) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const [kind, id, ...rest] = line.split(" ");
      const p = this.pending.get(id ?? "");
      if (!p) continue;
      if (kind === "started") {
        const [shimPid, pid, initPid] = rest.map(Number);
        const started = p.started;
        p.started = p.failed = undefined;
        started?.({ shimPid: shimPid!, pid: pid!, initPid: initPid! });
      } else if (kind === "error") {
        const failed = p.failed;
        p.started = p.failed = undefined;
        failed?.(rest.join(" "));
      } else if (kind === "exit") {
        this.pending.delete(id!);
        const n = Number(rest[2]);
        p.exit(rest[1] === "signal" ? { code: null, signal: signalName(n), lost: false } : { code: n, signal: null, lost: false });
      }
    }
  }

  private onLauncherGone(child: ChildProcess): void {
    if (this.child !== child) return;
    this.child = undefined;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.failed?.("the launcher process ended");
      p.exit({ code: null, signal: null, lost: true });
    }
  }

  /** Stops the launcher (running stars carry on; their ends are followed by file). */
  close(): void {
    this.closed = true;
    const child = this.child;
    if (!child) return;
    child.stdin!.end();
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
  }
}

export function signalName(n: number): NodeJS.Signals {
  for (const [name, num] of Object.entries(constants.signals)) if (num === n) return name as NodeJS.Signals;
  return `SIG${n}` as NodeJS.Signals;
}
