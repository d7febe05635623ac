/**
 * Making certificates (the CA, a node's request, signing one) in a worker thread that ends when
 * idle: the X.509 library it needs is ~15 MB of memory that a controller or node would otherwise
 * keep for good after its first join. The same functions as ca.ts, by message.
 */
import { Worker } from "node:worker_threads";
import { type CertAndKey, CertificateError, type NodeIdentity } from "./identity.js";

/** How long the worker stays after its last answer (joins often come in a burst). */
const IDLE_MS = 5000;

let worker: Worker | undefined;
let idle: NodeJS.Timeout | undefined;
let nextId = 1;
const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

function call<T>(fn: string, ...args: unknown[]): Promise<T> {
  clearTimeout(idle);
  if (!worker) {
    const w = new Worker(new URL("./ca-worker.js", import.meta.url));
    w.unref();
    w.on("message", (m: { id: number; result?: unknown; error?: string; certificate?: boolean }) => {
      const p = waiting.get(m.id);
      waiting.delete(m.id);
      if (m.error === undefined) p?.resolve(m.result);
      else p?.reject(m.certificate ? new CertificateError(m.error) : new Error(m.error));
      if (waiting.size === 0) {
        idle = setTimeout(() => void end(w), IDLE_MS);
        idle.unref();
      }
    });
    const fail = (err: Error) => {
      if (worker === w) worker = undefined;
      for (const p of waiting.values()) p.reject(new Error(`the certificate worker failed: ${err.message}`));
      waiting.clear();
    };
    w.on("error", fail);
    w.on("exit", (code) => fail(new Error(`it ended (${code})`)));
    worker = w;
  }
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
    worker!.postMessage({ id, fn, args });
  });
}

async function end(w: Worker): Promise<void> {
  if (worker !== w || waiting.size > 0) return;
  worker = undefined;
  await w.terminate();
}

/** A new cluster CA (ca.ts createCa). */
export const createCa = (cluster: string): Promise<CertAndKey> => call("createCa", cluster);

/** A node's key and its certificate request (ca.ts createCsr). */
export const createCsr = (node: string): Promise<{ csr: string; key: string }> => call("createCsr", node);

/** Signs a node's request with the CA (ca.ts signCsr). */
export const signCsr = (ca: CertAndKey, csrPem: string, id: NodeIdentity & { addresses: string[]; validDays?: number }): Promise<{ cert: string; serial: string; notAfter: number }> =>
  call("signCsr", ca, csrPem, id);
