/** Small helpers every benchmark shares: percentiles, a markdown table, the machine it ran on. */
import { existsSync, readFileSync, watch } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { join } from "node:path";

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface LatencySummary {
  n: number;
  p50: number;
  p99: number;
  /** Operations per second over the whole run (sequential: one at a time). */
  opsPerSec: number;
}

/** Runs `op` n times one after another; latencies in microseconds. */
export async function timeSequential(n: number, op: (i: number) => Promise<unknown>): Promise<LatencySummary> {
  const lat: number[] = new Array(n);
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await op(i);
    lat[i] = (performance.now() - t) * 1000;
  }
  const elapsed = performance.now() - start;
  lat.sort((a, b) => a - b);
  return { n, p50: percentile(lat, 50), p99: percentile(lat, 99), opsPerSec: (n / elapsed) * 1000 };
}

export function markdownTable(header: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

export function machine(): string {
  const c = cpus();
  return `${c.length} × ${c[0]?.model ?? "unknown CPU"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}`;
}

export const us = (v: number) => `${v.toFixed(1)} µs`;
export const perSec = (v: number) => `${Math.round(v).toLocaleString("en-US")}/s`;

/** Resolves (with performance.now()) when `file` in `dir` holds a complete first line (inotify). */
export function firstLine(dir: string, file = "stdout.log"): Promise<number> {
  return new Promise((resolve) => {
    const path = join(dir, file);
    const check = () => {
      if (existsSync(path) && readFileSync(path, "utf8").includes("\n")) {
        w.close();
        resolve(performance.now());
      }
    };
    const w = watch(dir, check);
    check();
  });
}
