/**
 * Constraints and affinities compiled once per star into node predicates (issue 13):
 * `=`, `!=`, `in`, `not_in`, `regexp` and `version` (a semver range, e.g. ">=1.2 <2") over a
 * node's attributes. A bad constraint (unknown operator, a regexp that does not compile, a
 * range that is not one) is an InvalidArgumentError naming it, at create time.
 */
import semver from "semver";
import { InvalidArgumentError } from "../model/errors.js";
import { OPERATORS, constraintProblem } from "../model/placement.js";
import type { Constraint } from "./types.js";

/** A compiled constraint: whether a node's attributes satisfy it, and how a user reads it. */
export interface Check {
  test(attributes: Readonly<Record<string, string>>): boolean;
  /** e.g. `zone=a`, `zone in (a,b)`, `node.version version >=1.2`. */
  label: string;
}

export function compileConstraint(c: Constraint, field = "constraints"): Check {
  if (typeof c !== "object" || c === null || typeof c.attribute !== "string" || c.attribute.length === 0 || c.attribute.length > 128) {
    throw new InvalidArgumentError(field, "each needs an attribute (a node label such as zone, or node.name, node.version)");
  }
  if (!(OPERATORS as readonly string[]).includes(c.operator)) {
    throw new InvalidArgumentError(field, `unknown operator "${String(c.operator)}" for ${c.attribute}: use one of ${OPERATORS.join(", ")}`);
  }
  const problem = constraintProblem(c);
  if (problem) throw new InvalidArgumentError(field, problem);
  const attr = c.attribute;
  const list = () => (Array.isArray(c.value) ? c.value : String(c.value).split(",")).map((v) => String(v).trim()).filter((v) => v.length > 0);
  const v = c.value as string;
  switch (c.operator) {
    case "=":
      return { test: (a) => a[attr] === v, label: `${attr}=${v}` };
    case "!=":
      return { test: (a) => a[attr] !== v, label: `${attr}!=${v}` };
    case "in": {
      const vs = new Set(list());
      return { test: (a) => a[attr] !== undefined && vs.has(a[attr]), label: `${attr} in (${[...vs].join(",")})` };
    }
    case "not_in": {
      const vs = new Set(list());
      return { test: (a) => a[attr] === undefined || !vs.has(a[attr]), label: `${attr} not_in (${[...vs].join(",")})` };
    }
    case "regexp": {
      const re = new RegExp(v);
      // (Attributes are short; a long one is not matched at all rather than matched slowly.)
      return { test: (a) => a[attr] !== undefined && a[attr].length <= 256 && re.test(a[attr]), label: `${attr}~/${v}/` };
    }
    case "version": {
      const range = semver.validRange(v)!;
      // A node's own version as it is (pre-releases kept: 0.1.0-dev is before 0.1.0), else coerced ("1.4" → 1.4.0).
      const satisfied = (x: string | undefined) => {
        const got = x === undefined ? null : (semver.valid(x) ?? semver.coerce(x));
        return got !== null && semver.satisfies(got, range, { includePrerelease: true });
      };
      return { test: (a) => satisfied(a[attr]), label: `${attr} version ${v}` };
    }
  }
}
