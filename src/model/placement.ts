/**
 * Where a star may and would rather run (issue 13): `placement: { strategy, spread_by,
 * constraints, affinities }` in its spec. The constraint's words are checked here, once, for the
 * spec and the scheduler alike: an operator of `=`, `!=`, `in`, `not_in`, `regexp`, `version`; a
 * regexp that compiles; a version range that is one.
 */
import semver from "semver";
import { z } from "zod";

export const OPERATORS = ["=", "!=", "in", "not_in", "regexp", "version"] as const;
export type Operator = (typeof OPERATORS)[number];

/** The most characters a regexp of a constraint may have (a long one could take long to match). */
export const MAX_REGEXP = 200;

const constraintFields = {
  attribute: z.string().min(1, "attribute must name a node label (zone) or node.name, node.version").max(128),
  operator: z.enum(OPERATORS, { error: `operator must be one of ${OPERATORS.join(", ")}` }),
  value: z.union([z.string().max(256), z.array(z.string().max(256)).max(64)]),
};

export const placementSchema = z.strictObject({
  /** binpack: the fullest node that fits; spread (default): the node with fewest stars (of its deployment). */
  strategy: z.enum(["binpack", "spread"]).default("spread"),
  /** With spread: spread over this label's values (e.g. zone) rather than over nodes. */
  spread_by: z.string().min(1).max(128).optional(),
  /** Node attributes the star requires: `{ attribute: "zone", operator: "=", value: "a" }`. */
  constraints: z.array(z.strictObject(constraintFields)).max(16, "at most 16 constraints").default([]),
  /** Node attributes the star prefers (weight 1..100) or avoids (−100..−1). */
  affinities: z
    .array(z.strictObject({ ...constraintFields, weight: z.number().int().min(-100).max(100).refine((w) => w !== 0, "weight must not be 0") }))
    .max(16, "at most 16 affinities")
    .default([]),
});
export type Placement = z.output<typeof placementSchema>;

/** What is wrong with a constraint's value for its operator, if anything. */
export function constraintProblem(c: { attribute: string; operator: Operator; value: string | readonly string[] }): string | undefined {
  const many = c.operator === "in" || c.operator === "not_in";
  if (!many && typeof c.value !== "string") return `${c.attribute} ${c.operator} takes one value (a string), not a list`;
  if (many) {
    const values = Array.isArray(c.value) ? c.value : String(c.value).split(",");
    if (values.map((v) => String(v).trim()).filter(Boolean).length === 0) return `${c.attribute} ${c.operator} needs at least one value`;
  }
  if (c.operator === "regexp") {
    const v = c.value as string;
    if (v.length > MAX_REGEXP) return `the regexp for ${c.attribute} is longer than ${MAX_REGEXP} characters`;
    try {
      new RegExp(v);
    } catch (err) {
      return `the regexp for ${c.attribute} does not compile: ${(err as Error).message}`;
    }
    const slow = backtrackingRisk(v);
    if (slow) return `the regexp for ${c.attribute} ${slow}, which can take exponential time to match: write it without (the scheduler matches it on every node, every pass)`;
  }
  if (c.operator === "version" && (String(c.value).trim() === "" || semver.validRange(c.value as string) === null)) {
    return `"${String(c.value)}" for ${c.attribute} is not a version range (e.g. ">=1.2.0 <2")`;
  }
  return undefined;
}

/**
 * What in a regexp could make a backtracking engine (V8's) take exponential time, if anything:
 * a backreference, or a repeated group that holds a repetition or an alternation — `(a+)+`,
 * `(\w+)*`, `(a|aa)+` — the shapes of catastrophic backtracking. Plain patterns (`^ssd`,
 * `^eu-(west|east)-[0-9]+$`) pass.
 */
export function backtrackingRisk(re: string): string | undefined {
  // Each open group: whether it holds a repetition or an alternation so far.
  const groups: Array<{ repeats: boolean; alternates: boolean }> = [];
  let inClass = false;
  for (let i = 0; i < re.length; i++) {
    const ch = re[i]!;
    if (ch === "\\") {
      if (!inClass && /[1-9k]/.test(re[i + 1] ?? "")) return "has a backreference";
      i++;
      continue;
    }
    if (inClass) {
      if (ch === "]") inClass = false;
      continue;
    }
    if (ch === "[") inClass = true;
    else if (ch === "(") groups.push({ repeats: false, alternates: false });
    else if (ch === "|" && groups.length > 0) groups.at(-1)!.alternates = true;
    else if (ch === ")") {
      const g = groups.pop();
      const next = re[i + 1];
      const repeated = next === "*" || next === "+" || next === "{" || next === "?";
      if (g && repeated && next !== "?" && (g.repeats || g.alternates)) return g.repeats ? "repeats a group that repeats" : "repeats a group of alternatives";
      // What a group holds, its enclosing group holds too.
      if (g && groups.length > 0) {
        groups.at(-1)!.repeats ||= g.repeats || repeated;
        groups.at(-1)!.alternates ||= g.alternates;
      }
    } else if ((ch === "*" || ch === "+" || ch === "{" || (ch === "?" && re[i - 1] !== "(")) && groups.length > 0) groups.at(-1)!.repeats = true;
  }
  return undefined;
}
