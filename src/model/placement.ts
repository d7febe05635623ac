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
  }
  if (c.operator === "version" && semver.validRange(c.value as string) === null) return `"${String(c.value)}" for ${c.attribute} is not a version range (e.g. ">=1.2.0 <2")`;
  return undefined;
}
