/**
 * Health checks. The rules are pure (`nextHealth`): consecutive failures and successes decide
 * readiness and, optionally, killing the run. The probes are thin I/O: an HTTP GET (2xx/3xx is
 * healthy), a TCP connect, or a command run by the runtime inside the star (exit 0 is healthy).
 */
import { request } from "node:http";
import { connect } from "node:net";
import type { HealthCheck } from "../model/spec.js";

export interface HealthState {
  ready: boolean;
  failures: number;
  successes: number;
  lastError?: string;
}

export const initialHealth: HealthState = { ready: false, failures: 0, successes: 0 };

export function nextHealth(
  state: HealthState,
  result: { ok: true } | { ok: false; error: string },
  check: Pick<HealthCheck, "failure_threshold" | "success_threshold" | "kill_after">,
): { state: HealthState; kill: boolean } {
  if (result.ok) {
    const successes = state.successes + 1;
    return { state: { ready: state.ready || successes >= check.success_threshold, failures: 0, successes }, kill: false };
  }
  const failures = state.failures + 1;
  return {
    state: { ready: state.ready && failures < check.failure_threshold, failures, successes: 0, lastError: result.error },
    kill: check.kill_after > 0 && failures >= check.kill_after,
  };
}

export type ProbeResult = { ok: true } | { ok: false; error: string };

/**
 * One probe with one deadline: `start` begins it and returns how to drop what it holds; its
 * `finish` settles the probe once (later calls do nothing), and the deadline finishes it with
 * `late`. What it held is dropped either way.
 */
export function probeWithin(timeoutMs: number, late: string, start: (finish: (r: ProbeResult) => void) => () => void): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const held: { drop?: () => void } = {}; // (set once `start` returns; it may finish before)
    let settled = false;
    const finish = (r: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      held.drop?.();
      resolve(r);
    };
    const deadline = setTimeout(() => finish({ ok: false, error: `${late}: no answer within ${timeoutMs} ms` }), timeoutMs);
    held.drop = start(finish);
    if (settled) held.drop();
  });
}

/**
 * GET `path`: healthy on a 2xx/3xx status. The answer's body is never read: the connection is
 * closed as soon as the status is known, and the whole probe (connect, headers) has one deadline,
 * so a server that trickles bytes holds nothing of the node's (issue 9: one socket per probe was
 * kept open, and the node ran out of files).
 */
export function probeHttp(host: string, port: number, path: string, timeoutMs: number): Promise<ProbeResult> {
  return probeWithin(timeoutMs, `GET ${path}`, (finish) => {
    const req = request({ host, port, path, method: "GET", agent: false, headers: { connection: "close" } }, (res) => {
      const code = res.statusCode ?? 0;
      res.destroy();
      finish(code >= 200 && code < 400 ? { ok: true } : { ok: false, error: `GET ${path} answered ${code}` });
    });
    req.on("error", (err) => finish({ ok: false, error: `GET ${path}: ${err.message}` }));
    req.end();
    return () => req.destroy();
  });
}

export function probeTcp(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return probeWithin(timeoutMs, `connect to port ${port}`, (finish) => {
    const socket = connect({ host, port });
    socket.once("connect", () => finish({ ok: true }));
    socket.once("error", (err) => finish({ ok: false, error: `connect to port ${port}: ${err.message}` }));
    return () => socket.destroy();
  });
}
