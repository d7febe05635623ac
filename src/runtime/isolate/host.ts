/**
 * The isolate host: a Node process started by the agent through the star launcher (its own
 * namespaces and cgroup, user nobody, no-new-privs) that runs isolate stars as worker threads.
 *
 * Control: JSON lines on fd 4 (a socket the agent holds).
 *   agent → host  {op:"start", id, file, argv, env, heapMb, stdout, stderr, logMax, hold}
 *                 {op:"go", id} (with hold: after "started", when the agent has placed the
 *                 thread in its cpu cgroup, run the star's code; without hold it runs at once)
 *                 {op:"stop", id}  {op:"kill", id}  {op:"stats", id, ref}
 *                 {op:"rotated", id, stream} (the files moved along: open the new one)
 *   host → agent  {ev:"started", id, tid}  {ev:"exited", id, code, oom}  {ev:"error", id, message}
 *                 {ev:"stats", ref, heapBytes}  {ev:"rotate", id, stream} (a log reached logMax)
 * When the agent goes away (EOF on fd 4), the host stops its isolates and exits.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { Socket } from "node:net";
import { Worker } from "node:worker_threads";

interface StartMsg {
  op: "start";
  id: string;
  file: string;
  argv: string[];
  env: Record<string, string>;
  /** What os.hostname() says in the star: its name, as a process star's uts namespace does. */
  hostname?: string;
  heapMb: number;
  stdout: string;
  stderr: string;
  logMax: number;
  /** Wait for "go" before running the star's code (the agent first limits the thread's CPU). */
  hold?: boolean;
}

type Msg = StartMsg | { op: "go" | "stop" | "kill"; id: string } | { op: "stats"; id: string; ref: number } | { op: "rotated"; id: string; stream: string };

/**
 * The code every isolate runs first. Workers are made ahead of time (warm, per heap size: a
 * Worker's bootstrap costs ~50 ms and its heap limit is fixed when it is made); a warm worker
 * waits for its star: then it takes the star's env and argv, reports its thread, and imports the
 * star's file. It also answers stop (the star's SIGTERM handlers run) and stats.
 */
const BOOTSTRAP = `
const { parentPort } = require("node:worker_threads");
const { readlinkSync } = require("node:fs");
const v8 = require("node:v8");
// Stack traces name the user's files and lines (the bundle carries its source map).
process.setSourceMapsEnabled(true);
// Warm the ES module loader too (its first use in a worker costs milliseconds).
import("data:text/javascript,").catch(() => {});
function go() {
  parentPort.unref();
  import(require("node:url").pathToFileURL(globalThis.__constellationFile).href).catch((err) => {
    console.error(err && err.stack ? err.stack : String(err));
    process.exit(1);
  });
}
parentPort.on("message", (m) => {
  if (m.t === "run") {
    for (const k of Object.keys(process.env)) delete process.env[k];
    Object.assign(process.env, m.env);
    process.argv.splice(1, process.argv.length - 1, m.file, ...m.argv);
    if (m.hostname) {
      // Isolates share the host's uts namespace: each star is told its own name (CJS and ESM).
      const name = m.hostname;
      require("node:os").hostname = () => name;
      require("node:module").syncBuiltinESMExports();
    }
    let tid = 0;
    try { tid = Number(readlinkSync("/proc/thread-self").split("/").pop()); } catch {}
    // The agent may place this thread in the star's cpu cgroup first; then the star runs on "go".
    parentPort.postMessage({ t: "tid", tid });
    globalThis.__constellationFile = m.file;
    if (!m.hold) go();
  } else if (m.t === "go") {
    go();
  } else if (m.t === "stop") {
    if (process.listenerCount("SIGTERM") > 0) process.emit("SIGTERM", "SIGTERM");
    else process.exit(143);
  } else if (m.t === "stats") {
    parentPort.postMessage({ t: "stats", ref: m.ref, heapBytes: v8.getHeapStatistics().used_heap_size });
  }
});
`;

/** Warm workers by heap size (MB). */
const warm = new Map<number, Worker[]>();
const WARM_PER_SIZE = 4;

function makeWorker(heapMb: number): Worker {
  const young = Math.max(1, Math.min(16, Math.floor(heapMb / 4)));
  return new Worker(BOOTSTRAP, {
    eval: true,
    env: {},
    stdout: true,
    stderr: true,
    resourceLimits: { maxYoungGenerationSizeMb: young, maxOldGenerationSizeMb: Math.max(1, heapMb - young) },
  });
}

function takeWorker(heapMb: number): Worker {
  const pool = warm.get(heapMb) ?? [];
  warm.set(heapMb, pool);
  const w = pool.shift() ?? makeWorker(heapMb);
  // Refill after this start has gone out, one worker per turn of the event loop.
  const refill = () => {
    if (pool.length >= WARM_PER_SIZE || closing) return;
    pool.push(makeWorker(heapMb));
    setImmediate(refill);
  };
  setImmediate(refill);
  return w;
}

let closing = false;

/**
 * Appends to a log file, each line begun with the time it was written (as the launcher does;
 * runtime/logs.ts reads them). At `max` bytes it asks the agent to rotate the files (the star's
 * directory is root's: the host may not rename in it), writes on meanwhile, and opens the new
 * file when the agent says it is done.
 */
class RotatingLog {
  private fd: number;
  private size: number;
  /** The last byte written was not a line's end. */
  private midLine = false;
  /** A rotation was asked for and is not done yet (none is asked twice: the second would move the new file over the first). */
  private asked = false;
  constructor(
    private readonly path: string,
    private readonly max: number,
    private readonly ask: () => void,
  ) {
    this.fd = openSync(path, "a", 0o640);
    this.size = fstatSync(this.fd).size;
    // An earlier run's last line without its end is ended here: this run's lines begin anew.
    if (this.size > 0) {
      const last = Buffer.alloc(1);
      const r = openSync(path, "r");
      try {
        if (readSync(r, last, 0, 1, this.size - 1) === 1 && last[0] !== 0x0a) this.put(Buffer.from("\n"));
      } finally {
        closeSync(r);
      }
    }
  }
  write(chunk: Buffer): void {
    if (this.max > 0 && this.size > 0 && this.size + chunk.length > this.max) {
      if (!this.asked) {
        this.asked = true;
        this.ask(); // which also pauses the stream until the agent is done: the star waits, nothing is lost
      }
    }
    const stamp = Buffer.from(`${new Date().toISOString()} `);
    for (let at = 0; at < chunk.length; ) {
      if (!this.midLine && !this.put(stamp)) return;
      const nl = chunk.indexOf(0x0a, at);
      const end = nl < 0 ? chunk.length : nl + 1;
      if (!this.put(chunk.subarray(at, end))) return;
      this.midLine = nl < 0;
      at = end;
    }
  }
  /** The agent moved the file along: the new one is opened (a line cut here goes on unstamped). */
  rotated(): void {
    try {
      const fd = openSync(this.path, "a", 0o640);
      closeSync(this.fd);
      this.fd = fd;
      this.size = fstatSync(fd).size;
    } catch {
      // not there (no room): go on in the old one
    }
    this.asked = false;
  }
  /** Writes it all; false on a full disk (the rest is dropped rather than stop the star). */
  private put(b: Buffer): boolean {
    try {
      for (let off = 0; off < b.length; ) off += writeSync(this.fd, b, off);
    } catch {
      return false;
    }
    this.size += b.length;
    return true;
  }
  close(): void {
    closeSync(this.fd);
  }
}

const control = new Socket({ fd: 4, readable: true, writable: true });
const send = (o: object) => control.write(`${JSON.stringify(o)}\n`);
const isolates = new Map<string, Worker>();
/** A star's logs and its worker, kept past the worker's end until what it wrote is in the files. */
const logsOf = new Map<string, { stdout: RotatingLog; stderr: RotatingLog; worker: Worker }>();

/** Resolves once the stream has given all it holds (or was destroyed). */
const drained = (s: NodeJS.ReadableStream & { readableEnded: boolean; destroyed: boolean }) =>
  new Promise<void>((done) => {
    if (s.readableEnded || s.destroyed) return done();
    s.once("end", done);
    s.once("close", done);
  });

function start(m: StartMsg): void {
  let out: RotatingLog;
  let err: RotatingLog;
  try {
    // At its size limit a log asks the agent to move the files and its stream waits meanwhile
    // (the worker's writes back up into the star's own memory, as a full pipe would block it).
    const ask = (stream: "stdout" | "stderr") => () => {
      send({ ev: "rotate", id: m.id, stream });
      logsOf.get(m.id)?.worker[stream].pause();
    };
    out = new RotatingLog(m.stdout, m.logMax, ask("stdout"));
    err = new RotatingLog(m.stderr, m.logMax, ask("stderr"));
  } catch (e) {
    send({ ev: "error", id: m.id, message: `cannot open the star's logs: ${(e as Error).message}` });
    return;
  }
  const w = takeWorker(m.heapMb);
  isolates.set(m.id, w);
  logsOf.set(m.id, { stdout: out, stderr: err, worker: w });
  w.postMessage({ t: "run", file: m.file, argv: m.argv, env: m.env, hostname: m.hostname, hold: m.hold === true });
  w.stdout.on("data", (d: Buffer) => out.write(d));
  w.stderr.on("data", (d: Buffer) => err.write(d));
  let oom = false;
  w.on("message", (msg: { t: string; tid?: number; ref?: number; heapBytes?: number }) => {
    if (msg.t === "tid") send({ ev: "started", id: m.id, tid: msg.tid });
    else if (msg.t === "stats") send({ ev: "stats", ref: msg.ref, heapBytes: msg.heapBytes });
  });
  w.on("error", (e: Error & { code?: string }) => {
    if (e.code === "ERR_WORKER_OUT_OF_MEMORY") oom = true;
    else err.write(Buffer.from(`${e.stack ?? String(e)}\n`));
  });
  w.on("exit", (code) => {
    isolates.delete(m.id);
    // What it wrote last goes into the files, through any rotation asked for and not yet done
    // (its streams stay paused until the agent has moved the files), before the end is reported.
    void Promise.all([drained(w.stdout), drained(w.stderr)]).then(() => {
      logsOf.delete(m.id);
      out.close();
      err.close();
      send({ ev: "exited", id: m.id, code, oom });
    });
  });
}

let buf = "";
control.setEncoding("utf8");
control.on("data", (d: string) => {
  buf += d;
  for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    let m: Msg;
    try {
      m = JSON.parse(line) as Msg;
    } catch {
      continue;
    }
    const w = isolates.get(m.id);
    if (m.op === "start") start(m);
    else if (m.op === "go") w?.postMessage({ t: "go" });
    else if (m.op === "stop") w?.postMessage({ t: "stop" });
    else if (m.op === "kill") void w?.terminate();
    else if (m.op === "stats") w?.postMessage({ t: "stats", ref: m.ref });
    else if (m.op === "rotated") {
      const stream = m.stream === "stderr" ? "stderr" : "stdout";
      const logs = logsOf.get(m.id);
      logs?.[stream].rotated();
      logs?.worker[stream].resume();
    }
  }
});
control.on("close", () => {
  closing = true;
  for (const w of isolates.values()) void w.terminate();
  for (const pool of warm.values()) for (const w of pool) void w.terminate();
  setTimeout(() => process.exit(0), 1000).unref();
});
send({ ev: "ready" });
