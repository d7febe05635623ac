/**
 * Constraints and affinities compiled once per star into node predicates (issue 13):
 * `=`, `!=`, `in`, `not_in`, `regexp` and `version` (a semver range, e.g. ">=1.2 <2") over a
 * node's attributes. A bad constraint (unknown operator, a regexp that does not compile, a
 * range that is not one) is an InvalidArgumentError naming it, at create time.
 */
import semver from "semver";
import { InvalidArgumentError } from "../model/errors.js";
import { type Constraint, OPERATORS } from "./types.js";

/** A compiled constraint: whether a node's attributes satisfy it, and how a user reads it. */
export interface Check {
  test(attributes: Readonly<Record<string, string>>): boolean;
  /** e.g. `zone=a`, `zone in (a,b)`, `node.version version >=1.2`. */
  label: string;
}

const MAX_REGEXP = 200;

export function compileConstraint(c: Constraint, field = "constraints"): Check {
  if (typeof c !== "object" || c === null || typeof c.attribute !== "string" || c.attribute.length === 0 || c.attribute.length > 128) {
    throw new InvalidArgumentError(field, "each needs an attribute (a node label such as zone, or node.name, node.version)");
  }
  if (!(OPERATORS as readonly string[]).includes(c.operator)) {
    throw new InvalidArgumentError(field, `unknown operator "${String(c.operator)}" for ${c.attribute}: use one of ${OPERATORS.join(", ")}`);
  }
  const attr = c.attribute;
  const list = () => {
    const values = Array.isArray(c.value) ? c.value : String(c.value).split(",");
    const out = values.map((v) => String(v).trim()).filter((v) => v.length > 0);
    if (out.length === 0) throw new InvalidArgumentError(field, `${attr} ${c.operator} needs at least one value`);
    return out;
  };
  const one = () => {
    if (typeof c.value !== "string") throw new InvalidArgumentError(field, `${attr} ${c.operator} takes one value (a string), not a list`);
    return c.value;
  };
  switch (c.operator) {
    case "=": {
      const v = one();
      return { test: (a) => a[attr] === v, label: `${attr}=${v}` };
    }
    case "!=": {
      const v = one();
      return { test: (a) => a[attr] !== v, label: `${attr}!=${v}` };
    }
    case "in": {
      const vs = new Set(list());
      return { test: (a) => a[attr] !== undefined && vs.has(a[attr]), label: `${attr} in (${[...vs].join(",")})` };
    }
    case "not_in": {
      const vs = new Set(list());
      return { test: (a) => a[attr] === undefined || !vs.has(a[attr]), label: `${attr} not_in (${[...vs].join(",")})` };
    }
    case "regexp": {
      const v = one();
      if (v.length > MAX_REGEXP) throw new InvalidArgumentError(field, `the regexp for ${attr} is longer than ${MAX_REGEXP} characters`);
      let re: RegExp;
      try {
        re = new RegExp(v);
      } catch (err) {
        throw new InvalidArgumentError(field, `the regexp for ${attr} does not compile: ${(err as Error).message}`);
      }
      return { test: (a) => a[attr] !== undefined && re.test(a[attr]), label: `${attr}~/${v}/` };
    }
    case "version": {
      const v = one();
      const range = semver.validRange(v);
      if (range === null) throw new InvalidArgumentError(field, `"${v}" for ${attr} is not a version range (e.g. ">=1.2.0 <2")`);
      return { test: (a) => a[attr] !== undefined && semver.valid(semver.coerce(a[attr])) !== null && semver.satisfies(semver.coerce(a[attr])!, range), label: `${attr} version ${v}` };
    }
  }
}
