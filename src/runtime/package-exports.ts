/**
 * Node's rules for a package.json `exports` or `imports` field, as a pure function (the
 * resolver that reads files as a star's user applies them; see script.ts). Follows Node's
 * PACKAGE_EXPORTS_RESOLVE / PACKAGE_IMPORTS_RESOLVE: an exact key first, else the pattern whose
 * part before `*` is longest; conditions in the order the object lists them, the first that
 * applies and resolves wins; `null` blocks; a target of `exports` must stay inside its package.
 */

/** What a field gives: a path inside the package ("./x"), a package to resolve (imports only), or nothing. */
export type PackageTarget = { path: string } | { bare: string } | undefined;

/**
 * The target `field` gives for `key` ("." or "./sub" for exports, "#name" for imports) under
 * `conditions` (e.g. node, import, default), or undefined if it gives none or blocks it.
 */
export function packageTarget(field: unknown, key: string, conditions: readonly string[], kind: "exports" | "imports"): PackageTarget {
  if (field === undefined || field === null) return undefined;
  let map: Record<string, unknown>;
  if (kind === "exports" && (typeof field === "string" || Array.isArray(field) || (typeof field === "object" && !Object.keys(field).some((k) => k.startsWith("."))))) {
    map = { ".": field }; // sugar: the package's main export only
  } else if (typeof field === "object" && !Array.isArray(field)) {
    map = field as Record<string, unknown>;
  } else {
    return undefined;
  }
  if (Object.hasOwn(map, key) && !key.includes("*")) return target(map[key], undefined, conditions, kind) ?? undefined;
  let best: string | undefined;
  for (const k of Object.keys(map)) {
    const star = k.indexOf("*");
    if (star < 0 || k.indexOf("*", star + 1) >= 0) continue;
    const prefix = k.slice(0, star);
    const trailer = k.slice(star + 1);
    if (!key.startsWith(prefix) || key === prefix || key.length < k.length || !key.endsWith(trailer)) continue;
    if (best === undefined || patternKeyCompare(best, k) > 0) best = k;
  }
  if (best === undefined) return undefined;
  const star = best.indexOf("*");
  const match = key.slice(star, key.length - (best.length - star - 1));
  return target(map[best], match, conditions, kind) ?? undefined;
}

/** Node's PATTERN_KEY_COMPARE: the longer part before `*` first, then the longer key. */
function patternKeyCompare(a: string, b: string): number {
  const aBase = a.indexOf("*");
  const bBase = b.indexOf("*");
  if (aBase !== bBase) return bBase - aBase;
  return b.length - a.length;
}

/** A target's value resolved: null where `null` blocks it (no later condition is tried). */
function target(value: unknown, match: string | undefined, conditions: readonly string[], kind: "exports" | "imports"): PackageTarget | null {
  if (typeof value === "string") {
    const filled = match === undefined ? value : value.replaceAll("*", match);
    if (!value.startsWith("./")) {
      // imports may name another package ("#db": "pg"); never a path outside the package
      if (kind === "imports" && !value.startsWith("../") && !value.startsWith("/") && !/^[a-z][a-z0-9+.-]*:/i.test(value)) return { bare: filled };
      return undefined;
    }
    const segments = filled.slice(2).split(/[/\\]/);
    if (segments.some((s) => s === "." || s === ".." || s.toLowerCase() === "node_modules")) return undefined;
    return { path: filled };
  }
  if (Array.isArray(value)) {
    for (const v of value) {
      const t = target(v, match, conditions, kind);
      if (t !== undefined) return t; // an invalid or unmatched entry is skipped
    }
    return undefined;
  }
  if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (k !== "default" && !conditions.includes(k)) continue;
      const t = target(v, match, conditions, kind);
      if (t !== undefined) return t;
    }
    return undefined;
  }
  return value === null ? null : undefined;
}
