import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CapacityExceededError, InvalidSpecError } from "../../src/model/errors.js";
import { DEFAULT_NODE_LIMITS, MAX_ISSUES, SPEC_SIZES, limitsOf, parseStarSpec, withLimitsAtTop } from "../../src/model/spec.js";

const base = { name: "web-1", command: ["true"] };
const issues = (input: unknown) => {
  try {
    parseStarSpec(input);
  } catch (err) {
    assert.ok(err instanceof InvalidSpecError, `InvalidSpecError, got ${String(err)}`);
    return err.issues.map((i) => `${i.field}: ${i.message}`);
  }
  assert.fail("expected the spec to be refused");
};

describe("star spec", () => {
  it("fills defaults and converts limits to kernel units", () => {
    const spec = parseStarSpec({ ...base, cpu_percent: 25, ram_mb: 512, disk_mb: 100 });
    assert.equal(spec.restart, "never");
    assert.equal(spec.seccomp, "default");
    assert.deepEqual(spec.mounts, []);
    assert.deepEqual(limitsOf(spec), { pids: 256, nofile: 1024, cpuMillis: 250, memoryBytes: 512 * 2 ** 20, diskBytes: 100 * 2 ** 20 });
    assert.deepEqual(limitsOf(parseStarSpec({ ...base, cpu_cores: 2, ram_gb: 1.5, pids: 10, nofile: 64 })), {
      pids: 10,
      nofile: 64,
      cpuMillis: 2000,
      memoryBytes: 1.5 * 2 ** 30,
    });
  });

  it("limits in either of the seed's spellings: at the top, or in resources (once each)", () => {
    const spec = parseStarSpec({ ...base, resources: { cpu_cores: 8, ram_gb: 16, disk_mb: 100, pids: 20 } });
    assert.deepEqual([spec.cpu_cores, spec.ram_gb, spec.disk_mb, spec.pids], [8, 16, 100, 20]);
    assert.equal("resources" in spec, false, "one spelling after parsing");
    assert.deepEqual(limitsOf(spec), limitsOf(parseStarSpec({ ...base, cpu_cores: 8, ram_gb: 16, disk_mb: 100, pids: 20 })));
    assert.deepEqual(withLimitsAtTop({ ...base, env: { A: "1" }, resources: { ram_mb: 64 } }), { ...base, env: { A: "1" }, ram_mb: 64 });
    assert.deepEqual(issues({ ...base, ram_gb: 1, resources: { ram_gb: 2 } }), ["resources.ram_gb: ram_gb is given twice: at the top and in resources; give it once"]);
    assert.deepEqual(issues({ ...base, cpu_percent: 50, resources: { cpu_cores: 2 } }), ["cpu_cores: give cpu_percent or cpu_cores, not both"]);
    assert.deepEqual(issues({ ...base, resources: { ram_gb: 0.001, gpus: 1 } }), ["resources.ram_gb: ram_gb must be at least 0.00390625 (4 MB)", "resources.gpus: unknown field gpus"]);
  });

  it("placement: strategy, spread_by, constraints and affinities, each checked", () => {
    const spec = parseStarSpec({ ...base, placement: { strategy: "spread", spread_by: "zone", constraints: [{ attribute: "zone", operator: "in", value: ["a", "b"] }], affinities: [{ attribute: "disk", operator: "=", value: "ssd", weight: 40 }] } });
    assert.deepEqual(spec.placement?.constraints, [{ attribute: "zone", operator: "in", value: ["a", "b"] }]);
    assert.equal(parseStarSpec({ ...base, placement: {} }).placement?.strategy, "spread", "spread by default");
    assert.deepEqual(
      issues({
        ...base,
        placement: {
          strategy: "binpack",
          spread_by: "zone",
          constraints: [
            { attribute: "zone", operator: "~", value: "a" },
            { attribute: "disk", operator: "regexp", value: "(" },
            { attribute: "node.version", operator: "version", value: "banana" },
            { attribute: "zone", operator: "=", value: ["a"] },
          ],
          affinities: [{ attribute: "zone", operator: "=", value: "a", weight: 0 }],
        },
      }),
      [
        "placement.constraints.0.operator: operator must be one of =, !=, in, not_in, regexp, version",
        "placement.affinities.0.weight: weight must not be 0",
      ],
    );
    assert.deepEqual(
      issues({ ...base, placement: { strategy: "binpack", spread_by: "zone", constraints: [{ attribute: "disk", operator: "regexp", value: "(" }, { attribute: "v", operator: "version", value: "banana" }, { attribute: "zone", operator: "=", value: ["a"] }] } }),
      [
        "placement.constraints.0.value: the regexp for disk does not compile: Invalid regular expression: /(/: Unterminated group",
        'placement.constraints.1.value: "banana" for v is not a version range (e.g. ">=1.2.0 <2")',
        "placement.constraints.2.value: zone = takes one value (a string), not a list",
        "placement.spread_by: spread_by goes with strategy spread",
      ],
    );
  });

  it("a regexp that could take exponential time, or an empty version range, is refused", () => {
    for (const re of ["^(\\w+)+$", "(a|aa)+", "(a+)*b", "(x)\\1"]) {
      assert.match(issues({ ...base, placement: { constraints: [{ attribute: "node.name", operator: "regexp", value: re }] } })[0]!, /can take exponential time to match/, re);
    }
    assert.equal(parseStarSpec({ ...base, placement: { constraints: [{ attribute: "zone", operator: "regexp", value: "^eu-(west|east)-[0-9]+$" }] } }).placement?.constraints.length, 1);
    assert.match(issues({ ...base, placement: { constraints: [{ attribute: "v", operator: "version", value: " " }] } })[0]!, /is not a version range/);
  });

  it("fills what the spec leaves out from the node's defaults: memory is always limited", () => {
    const node = { ...DEFAULT_NODE_LIMITS, defaultRamMb: 128, defaultPids: 50, defaultNofile: 200 };
    const limits = limitsOf(parseStarSpec(base), { cpuCores: 2, memoryBytes: 2 ** 30, limits: node });
    assert.deepEqual(limits, { pids: 50, nofile: 200, memoryBytes: 128 * 2 ** 20 });
    assert.equal(limitsOf(parseStarSpec(base)).memoryBytes, DEFAULT_NODE_LIMITS.defaultRamMb * 2 ** 20);
  });

  it("refuses what is over a node ceiling, naming the field", () => {
    const refused = (spec: object, field: string) =>
      assert.throws(
        () => limitsOf(parseStarSpec({ ...base, ...spec })),
        (e: unknown) => e instanceof CapacityExceededError && e.field === field && /ceiling/.test(e.message),
      );
    refused({ pids: 4_194_304 }, "pids");
    refused({ nofile: 1_000_000 }, "nofile");
    refused({ log_max_mb: 102_400, log_max_files: 100 }, "log_max_mb");
    assert.doesNotThrow(() => limitsOf(parseStarSpec({ ...base, pids: DEFAULT_NODE_LIMITS.maxPids })));
  });

  it("checks mounts, root and seccomp", () => {
    assert.match(issues({ ...base, mounts: [{ host: "data" }] }).join(), /mounts.0.host: host must be an absolute path/);
    assert.match(issues({ ...base, mounts: [{ host: "/srv", path: "rel" }] }).join(), /mounts.0.path: path must be an absolute path/);
    assert.match(issues({ ...base, mounts: [{ host: "/srv", extra: 1 }] }).join(), /mounts.0.extra: unknown field/);
    assert.match(issues({ ...base, root: "jail" }).join(), /root: root must be an absolute path/);
    assert.match(issues({ ...base, seccomp: "off" }).join(), /seccomp:/);
    assert.deepEqual(parseStarSpec({ ...base, mounts: [{ host: "/srv" }] }).mounts, [{ host: "/srv", readonly: true }]);
  });

  it("refuses bad input with every problem named by its field", () => {
    assert.match(issues({ ...base, name: "Web_1" }).join(), /^name: name must be a DNS label/);
    assert.match(issues({ ...base, name: "-a" }).join(), /^name:/);
    assert.match(issues({ ...base, name: "a".repeat(64) }).join(), /^name:/);
    assert.match(issues({ ...base, ram_mb: 0 }).join(), /ram_mb: ram_mb must be greater than 0/);
    assert.match(issues({ ...base, cpu_percent: -5 }).join(), /cpu_percent: /);
    assert.match(issues({ ...base, ram_mb: "512" }).join(), /ram_mb: ram_mb must be a number/);
    assert.match(issues({ ...base, colour: "blue" }).join(), /colour: unknown field colour/);
    assert.match(issues({ name: "x" }).join(), /script: give exactly one of script/);
    assert.match(issues({ ...base, script: "a.js" }).join(), /script: give exactly one of script/);
    assert.match(issues({ ...base, cpu_percent: 10, cpu_cores: 1 }).join(), /cpu_cores: give cpu_percent or cpu_cores, not both/);
    assert.match(issues({ ...base, ram_mb: 10, ram_gb: 1 }).join(), /ram_gb: /);
    assert.match(issues({ ...base, env: { "1BAD": "x" } }).join(), /env/);
    assert.match(issues({ ...base, restart: "sometimes" }).join(), /restart:/);
    assert.equal(issues({ name: "BAD", ram_mb: -1, extra: 1 }).length >= 3, true, "all problems at once");
    assert.match(issues(null).join(), /expected object/i);
  });

  it("ports: named, 1..65535 or 0 for any, each fixed one once, and only with network host; priority 0..100", () => {
    assert.deepEqual(parseStarSpec({ ...base, ports: { http: 0, admin: 9000 } }).ports, { http: 0, admin: 9000 });
    assert.match(issues({ ...base, ports: { http: 70000 } }).join(), /ports\.http: a port is 1\.\.65535, or 0 for any free port/);
    assert.match(issues({ ...base, ports: { http: -1 } }).join(), /a port is 1\.\.65535/);
    assert.match(issues({ ...base, ports: { http: 80.5 } }).join(), /a port is a whole number/);
    assert.match(issues({ ...base, ports: { HTTP: 80 } }).join(), /a port's name is lowercase letters/);
    assert.match(issues({ ...base, ports: { a: 80, b: 80 } }).join(), /ports\.b: port 80 is given twice \(a and b\)/);
    assert.match(issues({ ...base, ports: { http: 0 }, network: "none" }).join(), /ports: ports need network host/);
    assert.equal(parseStarSpec({ ...base, ports: { http: 0 }, health: { type: "http", port: "http" } }).health?.type, "http");
    assert.match(issues({ ...base, ports: { http: 0 }, health: { type: "tcp", port: "admin" } }).join(), /health\.port: the health check's port admin is none of the star's ports: name one of ports \(http\)/);
    assert.match(issues({ ...base, priority: 101 }).join(), /priority: priority is 0\.\.100/);
    assert.match(issues(JSON.parse('{"name":"a","command":["x"],"ports":{"__proto__":{"x":1}}}')).join(), /ports\.__proto__: __proto__ is not a port name/);
    assert.match(issues(JSON.parse('{"name":"a","command":["x"],"env":{"__proto__":"x"}}')).join(), /env\.__proto__: __proto__ is not a variable name/);
    assert.match(issues({ ...base, priority: 1.5 }).join(), /priority: priority must be a whole number/);
  });

  it("refuses limits above the node's capacity", () => {
    const capacity = { cpuCores: 2, memoryBytes: 4 * 2 ** 30 };
    assert.throws(() => limitsOf(parseStarSpec({ ...base, cpu_cores: 3 }), capacity), CapacityExceededError);
    assert.throws(() => limitsOf(parseStarSpec({ ...base, cpu_percent: 250 }), capacity), /cpu_percent asks for 250/);
    assert.throws(() => limitsOf(parseStarSpec({ ...base, ram_gb: 5 }), capacity), /ram_gb asks for 5120 MB, but this node has 4096 MB/);
    assert.deepEqual(limitsOf(parseStarSpec({ ...base, cpu_cores: 2, ram_gb: 4 }), capacity).cpuMillis, 2000);
  });

  it("bounds sizes: strings, paths, list lengths, argv+env together; a huge bad list is one issue, found fast", () => {
    const big = "x".repeat(SPEC_SIZES.string + 1);
    assert.match(issues({ ...base, args: [big] }).join(), /args\.0: args must be at most 131072 bytes/);
    assert.match(issues({ ...base, env: { A: big } }).join(), /env\.A: env values must be at most/);
    assert.match(issues({ ...base, cwd: `/${"d".repeat(SPEC_SIZES.path)}` }).join(), /cwd: cwd must be at most 4096 bytes/);
    const many = Array.from({ length: SPEC_SIZES.items + 1 }, () => "a");
    assert.deepEqual(issues({ ...base, args: many }), ["args: args must have at most 16384 items"]);
    const env = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`V${i}`, "1"]));
    assert.deepEqual(issues({ ...base, env: env(SPEC_SIZES.envEntries + 1) }), ["env: env must have at most 1000 entries"]);
    assert.equal(Object.keys(parseStarSpec({ ...base, env: env(SPEC_SIZES.envEntries) }).env).length, 1000);
    assert.deepEqual(issues({ ...base, health: { type: "exec", command: many } }), ["health.command: health.command must have at most 16384 items"]);
    // Under every per-string and per-list bound, over the total.
    const chunk = "y".repeat(100 * 1024);
    assert.match(issues({ ...base, args: [chunk, chunk, chunk, chunk, chunk, chunk] }).join(), /args: command, args, env and the health check's command take \d+ bytes together; at most 524288/);
    assert.match(
      issues({ ...base, args: [chunk, chunk, chunk], health: { type: "exec", command: [chunk, chunk, chunk] } }).join(),
      /args: command, args, env and the health check's command take/,
      "the health check's argv counts too",
    );
    // Unknown keys are named, a few and short: the error does not grow with what was sent.
    const keys = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`k${i}${"x".repeat(i === 0 ? 900_000 : 0)}`, 1]));
    const unknown = issues({ ...base, ...keys });
    assert.equal(unknown.length, 1);
    assert.ok(unknown[0]!.length < 600, `${unknown[0]!.length} characters`);
    assert.match(unknown[0]!, /unknown fields k0x+\.\.\., k1, k2, k3, k4 and 19995 more/);
    assert.equal(parseStarSpec({ ...base, args: [chunk, chunk, chunk, chunk], env: { BIG: chunk } }).args.length, 4, "just under is fine");
    // 500,000 bad arguments (what fits in a 1 MB body): one issue, at once.
    const t0 = performance.now();
    assert.deepEqual(issues({ ...base, args: Array.from({ length: 500_000 }, () => 1) }), ["args: args must have at most 16384 items"]);
    assert.ok(performance.now() - t0 < 500, `took ${performance.now() - t0} ms`);
    const t1 = performance.now();
    assert.deepEqual(issues({ ...base, args: ["ok", ...Array.from({ length: 16_000 }, () => 1)] }), ["args.1: args must be strings (16000 items are not right)"]);
    assert.ok(performance.now() - t1 < 100, `took ${performance.now() - t1} ms`);
    // Many bad fields within the bounds: at most MAX_ISSUES, and a count of the rest.
    const bad = issues({ ...base, env: Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`${i}x`, "1"])) });
    assert.equal(bad.length, MAX_ISSUES + 1);
    assert.equal(bad.at(-1), ": and 10 more problems");
    const t2 = performance.now();
    assert.deepEqual(issues({ ...base, args: Array.from({ length: 16_000 }, () => "\0") }), ["args.0: args must not contain NUL bytes (16000 items are not right)"]);
    assert.deepEqual(issues({ ...base, env: { A: "\0", B: "ok", C: "\0" } }), ["env.A: env values must not contain NUL bytes (2 items are not right)"]);
    assert.ok(performance.now() - t2 < 100, `took ${performance.now() - t2} ms`);
  });

  it("a node's default disk_mb applies to a star that asks for none; its own disk_mb wins", () => {
    const node = { ...DEFAULT_NODE_LIMITS, defaultDiskMb: 100 };
    const capacity = { cpuCores: 2, memoryBytes: 2 ** 30, limits: node };
    assert.equal(limitsOf(parseStarSpec(base), capacity).diskBytes, 100 * 2 ** 20);
    assert.equal(limitsOf(parseStarSpec({ ...base, disk_mb: 50 }), capacity).diskBytes, 50 * 2 ** 20);
    assert.equal(limitsOf(parseStarSpec(base)).diskBytes, undefined, "no default: none");
  });

  it("limits below what a kernel can enforce are refused, naming the least", () => {
    assert.match(issues({ ...base, ram_mb: 1e-300 }).join(), /ram_mb: ram_mb must be at least 4/);
    assert.match(issues({ ...base, ram_gb: 0.001 }).join(), /ram_gb: ram_gb must be at least 0\.00390625 \(4 MB\)/);
    assert.match(issues({ ...base, cpu_percent: 0.5 }).join(), /cpu_percent must be at least 1/);
    assert.match(issues({ ...base, cpu_cores: 1e-9 }).join(), /cpu_cores must be at least 0\.01/);
    assert.match(issues({ ...base, disk_mb: 1 }).join(), /disk_mb must be at least 8/);
    assert.equal(parseStarSpec({ ...base, ram_mb: 4, cpu_percent: 1, disk_mb: 8 }).ram_mb, 4);
  });
});
