/** Output for people (tables, colours on a TTY) and for machines (--json). */

const useColor = () => process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (code: number) => (s: string) => (useColor() ? `\x1b[${code}m${s}\x1b[0m` : s);
export const color = { red: paint(31), green: paint(32), yellow: paint(33), dim: paint(2), bold: paint(1) };

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Aligned columns; widths from the plain text (colour codes do not count). */
export function table(headers: string[], rows: string[][]): string {
  const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => plain(r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat(widths[i]! - plain(c).length)))
      .join("  ")
      .trimEnd();
  return [line(headers.map((h) => color.bold(h))), ...rows.map(line)].join("\n");
}

export function bytes(n: number | undefined): string {
  if (n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 10 || u === 0 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

export function age(since: number | undefined, now = Date.now()): string {
  if (since === undefined) return "-";
  const s = Math.max(0, Math.round((now - since) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function stateText(state: string | undefined): string {
  const s = state ?? "pending";
  if (s === "running") return color.green(s);
  if (s === "failed" || s === "oom_killed") return color.red(s);
  if (s === "starting" || s === "pending") return color.yellow(s);
  return s;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A point in time as a user writes it (`logs --since`): a duration back from now (`90s`, `10m`,
 * `2h`, `1d`, `1h30m`), an ISO 8601 date or time (`2026-11-28T19:40:00Z`), or ms since the epoch.
 * Returns ms since the epoch, or undefined if it is none of these.
 */
export function parseSince(text: string, now = Date.now()): number | undefined {
  const t = text.trim();
  if (/^\d{12,}$/.test(t)) return Number(t);
  if (/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(t)) {
    let back = 0;
    for (const [, n, unit] of t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) back += Number(n) * UNITS[unit!]!;
    return now - back;
  }
  if (!/^\d{4}-\d\d-\d\d/.test(t)) return undefined;
  const at = Date.parse(t);
  return Number.isNaN(at) ? undefined : at;
}
