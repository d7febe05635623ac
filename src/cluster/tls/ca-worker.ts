/**
 * The worker thread that makes certificates (signer.ts): it alone loads the X.509 library.
 * Each message is { id, fn, args }; the answer { id, result } or { id, error, certificate }.
 */
import { parentPort } from "node:worker_threads";
import { CertificateError, createCa, createCsr, signCsr } from "./ca.js";

const fns = { createCa, createCsr, signCsr } as Record<string, (...args: unknown[]) => Promise<unknown>>;

parentPort!.on("message", (m: { id: number; fn: string; args: unknown[] }) => {
  const fn = fns[m.fn];
  void (fn ? fn(...m.args) : Promise.reject(new Error(`no such function: ${m.fn}`))).then(
    (result) => parentPort!.postMessage({ id: m.id, result }),
    (err: Error) => parentPort!.postMessage({ id: m.id, error: err.message, certificate: err instanceof CertificateError }),
  );
});
