/**
 * Deployments as a user runs them (issue 13), on a real node (`up`): `deploy app.ts` (the seed's
 * form) with ports and a health check, replicas answering on their own ports, a rolling update,
 * a broken version rolled back by itself, `rollout status|history|undo`, `scale`, `deployments`,
 * `apply infra.ts` (and the files it refuses, naming the file and line), and the seed's SDK
 * examples (deploy with `resources`, create with `resources` and with limits at the top).
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { cli, upWithClient } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";

const APP = `import { createServer } from "node:http";
const v: string = process.env.V ?? "1";
if (process.env.CRASH) { console.error("crashing on purpose"); process.exit(1); }
createServer((req, res) => res.end(\`v\${v}\`)).listen(Number(process.env.PORT_HTTP), "127.0.0.1");
`;

interface Star {
  name: string;
  deployment?: { name: string; revision: number };
  status?: { state: string; ports?: Record<string, number> };
}

describe("deploy, apply, rollout, scale", { skip: process.platform !== "linux" }, () => {
  it("the seed's deploy app.ts, a rolling update, a broken version rolled back, apply and its bad files, the seed's SDK examples", async () => {
    const f = await upWithClient("constellation-deploy-", process.getuid?.() === 0 ? [] : ["--dev"]);
    try {
      const proj = join(f.dir, "proj");
      mkdirSync(proj, { recursive: true, mode: 0o755 });
      const write = (name: string, text: string) => writeFileSync(join(proj, name), text, { mode: 0o644 });
      write("app.ts", APP);
      const run = (args: string[]) => cli(f.node.dataDir, args, {}, proj);
      const app = join(proj, "app.ts");
      const deploy = (...extra: string[]) => run(["deploy", app, "--instances", "3", "--port", "http", "--health", "http:http/", "--ram-mb", "64", ...extra]);
      const stars = async () => (JSON.parse((await run(["list", "--json"])).stdout) as Star[]).filter((s) => s.deployment?.name === "app");
      const answers = async () => {
        const out: string[] = [];
        for (const s of await stars()) out.push(await fetch(`http://127.0.0.1:${s.status!.ports!.http}/`).then((r) => r.text()));
        return out.sort();
      };

      // deploy app.ts: the deployment "app", three replicas, each on its own port.
      const first = await deploy();
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /^app: revision 1 rolled out \(3 of 3 available\)\n$/);
      assert.deepEqual(await answers(), ["v1", "v1", "v1"]);
      assert.equal(new Set((await stars()).map((s) => s.status!.ports!.http)).size, 3, "three ports");
      assert.match((await run(["deployments"])).stdout, /\napp\s+default\s+3\/3\s+3\s+1\s+complete\s+/);
      // The same again: nothing changes.
      const same = await deploy();
      assert.equal(same.code, 0, same.stderr);
      assert.match(same.stderr, /app: unchanged \(revision 1\)/);

      // A new version: rolled out; every star answers with it.
      const v2 = await deploy("--env", "V=2");
      assert.equal(v2.code, 0, v2.stderr);
      assert.match(v2.stdout, /app: revision 2 rolled out/);
      assert.deepEqual(await answers(), ["v2", "v2", "v2"]);

      // A broken version: rolled back by itself; exit code 1 saying so; v2 still answers.
      const broken = await deploy("--env", "V=3", "--env", "CRASH=1");
      assert.equal(broken.code, 1, broken.stdout);
      assert.match(broken.stderr, /error: deployment app revision 3 failed and was rolled back \(rollback to 2: star app-\w+ of revision 3 restarted 3 times/);
      await waitFor("revision 4 complete", async () => ((await run(["rollout", "status", "app", "--no-follow"])).stdout.includes("revision 4 complete") ? true : undefined));
      assert.deepEqual(await answers(), ["v2", "v2", "v2"]);
      const history = (await run(["rollout", "history", "app"])).stdout;
      assert.match(history, /^REVISION\s+TEMPLATE\s+AGE\s+CAUSE\n1\s+\w+\s+\S+\s+deploy\n2\s+\w+\s+\S+\s+deploy\n3\s+\w+\s+\S+\s+deploy\n4 \(current\)\s+\w+\s+\S+\s+rollback to 2: /);

      // undo to revision 1, scale, rollout status.
      const undo = await run(["rollout", "undo", "app", "--to-revision", "1"]);
      assert.equal(undo.code, 0, undo.stderr);
      assert.match(undo.stdout, /app: undo to 1 \(revision 5\)\napp: revision 5 rolled out/);
      assert.deepEqual(await answers(), ["v1", "v1", "v1"]);
      assert.equal((await run(["scale", "app", "5"])).stdout, "app: scaled to 5\n");
      await waitFor("five answer", async () => ((await stars()).filter((s) => s.status?.state === "running").length === 5 ? true : undefined));
      const status = await run(["rollout", "status", "app"]);
      assert.equal(status.code, 0, status.stderr);

      // apply: a file that deploys two services, checked whole first.
      write("infra.ts", `import { constellation } from "constellation";\nawait constellation.deploy("api", { instances: 2, script: "app.ts", ports: { http: 0 }, ram_mb: 64 });\nawait constellation.deploy("worker", { command: ["sleep", "600"], ram_mb: 32 });\n`);
      const applied = await cli(f.node.dataDir, ["apply", join(proj, "infra.ts")], {}, proj);
      assert.equal(applied.code, 0, applied.stderr);
      assert.match(applied.stdout, /api: revision 1 deployed\nworker: revision 1 deployed\napi: revision 1 rolled out \(2 of 2 available\)\nworker: revision 1 rolled out/);
      // Files it refuses: a clear error naming the file (and line), nothing deployed.
      write("throws.ts", `import { constellation } from "constellation";\nawait constellation.deploy("half", { command: ["sleep", "600"] });\nthrow new Error("boom");\n`);
      write("nocompile.ts", "const x: number = ;\n");
      write("nothing.ts", "export const n = 1;\n");
      write("exits.ts", `import { constellation } from "constellation";\nawait constellation.deploy("gone", { command: ["true"] });\nprocess.exit(0);\n`);
      write("badspec.ts", `import { constellation } from "constellation";\nawait constellation.deploy("fine", { command: ["true"] });\nawait constellation.deploy("bad", { instances: -2, command: ["true"] });\n`);
      for (const [file, said] of [
        ["throws.ts", /throws\.ts:3: threw: boom; nothing deployed/],
        ["nocompile.ts", /nocompile\.ts:1:18: does not compile: Unexpected ";"; nothing deployed/],
        ["nothing.ts", /nothing\.ts deploys nothing: call constellation\.deploy\(name, spec\) in it/],
        ["exits.ts", /exits\.ts called process\.exit\(0\): nothing deployed/],
        ["badspec.ts", /deployment bad: invalid deploy spec: instances: instances must be 0 or more; nothing deployed/],
      ] as const) {
        const r = await cli(f.node.dataDir, ["apply", join(proj, file)], {}, proj);
        assert.equal(r.code, 1, `${file}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, said);
      }
      const names = (JSON.parse((await run(["deployments", "--json"])).stdout) as Array<{ name: string }>).map((d) => d.name).sort();
      assert.deepEqual(names, ["api", "app", "worker"], "nothing of the refused files");

      // The seed's SDK examples: deploy with resources, create with limits at the top and in resources.
      const d = await f.sdk.deploy("user-service", { instances: { min: 2, max: 20 }, resources: { cpu_cores: 0.5, ram_gb: 0.25 }, command: ["sleep", "600"], auto_scale: { metric: "rps", target: 1000 } });
      const done = await d.wait({ timeoutMs: 30_000 });
      assert.deepEqual([done.count, done.status.available, done.fields.auto_scale], [2, 2, { metric: "rps", target: 1000 }]);
      await f.sdk.create({ name: "db-primary", cpu_cores: 0.5, ram_gb: 0.25, command: ["sleep", "600"], placement: { strategy: "spread" } });
      const w = await f.sdk.create({ name: "processor-a", command: ["sleep", "600"], env: { INPUT_FILE: "/data/raw/a.csv" }, resources: { cpu_cores: 0.5, ram_gb: 0.25 } });
      assert.equal((await w.wait({ for: "running" })).status?.limits.memoryBytes, 256 * 2 ** 20);

      // Removing a deployment removes its stars.
      assert.equal((await run(["deployments", "rm", "app"])).stdout, "app: removed\n");
      await waitFor("app's stars gone", async () => ((await stars()).length === 0 ? true : undefined));
    } finally {
      for (const d of await f.sdk.deployments().catch(() => [])) await f.sdk.deployment(d.name).remove().catch(() => undefined);
      await f.close();
    }
  });
});
