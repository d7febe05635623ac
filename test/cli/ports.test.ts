/**
 * Named ports (issue 13): a star asks for `--port http` (any free port) or `--port http=N`; its
 * node gives it PORT_HTTP and PORT, inspect shows them, many replicas of one server run on one
 * node without clashing, and a fixed port another star holds rules the node out.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { type Server, createServer } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CLI, cli, upWithClient } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";

const SERVER = `import { createServer } from "node:http";
createServer((req, res) => res.end(\`\${process.env.NAME} \${process.env.PORT_HTTP} \${process.env.PORT}\`)).listen(Number(process.env.PORT_HTTP), "127.0.0.1");
`;

/** A port nothing listens on now (the kernel's pick), or a server holding one. */
async function listening(): Promise<Server> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return s;
}
const portOf = (s: Server) => (s.address() as { port: number }).port;

interface Info {
  status?: { state: string; ports?: Record<string, number>; reason?: string };
  pending?: { reason: string };
}

describe("ports", () => {
  it("flags that are not a port are refused before anything is sent", () => {
    for (const [flag, said] of [
      ["http=70000", /--port http= takes a port from 1 to 65535/],
      ["HTTP", /--port takes NAME or NAME=PORT/],
      ["http=", /--port http= takes a port from 1 to 65535/],
    ] as const) {
      const r = spawnSync(process.execPath, [CLI, "create", "--name", "x", "--port", flag, "--", "true"], { encoding: "utf8" });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, said);
    }
  });

  it("replicas on one node each get their own port and answer on it; a fixed port is one star's at a time", { skip: process.platform !== "linux" }, async () => {
    const f = await upWithClient("constellation-ports-", process.getuid?.() === 0 ? [] : ["--dev"]);
    const outside = await listening();
    try {
      const scripts = join(f.dir, "scripts");
      mkdirSync(scripts, { recursive: true, mode: 0o755 });
      writeFileSync(join(scripts, "server.mjs"), SERVER, { mode: 0o644 });
      for (const i of [1, 2, 3]) {
        // Its health check names its port: the one it was given.
        const r = await cli(f.node.dataDir, ["create", "--name", `web-${i}`, "--script", join(scripts, "server.mjs"), "--port", "http", "--health", "http:http/", "--env", `NAME=web-${i}`]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /running \(pid \d+\), ports http=\d+/);
      }
      const ports = new Set<number>();
      for (const i of [1, 2, 3]) {
        const info = JSON.parse((await cli(f.node.dataDir, ["inspect", `web-${i}`, "--json"])).stdout) as Info;
        const port = info.status!.ports!.http!;
        ports.add(port);
        const body = await waitFor(`web-${i} answers on ${port}`, async () => fetch(`http://127.0.0.1:${port}/`).then((r) => r.text(), () => undefined));
        assert.equal(body, `web-${i} ${port} ${port}`);
        assert.match((await cli(f.node.dataDir, ["inspect", `web-${i}`])).stdout, new RegExp(`ports\\s+http=${port}`));
        await waitFor(`web-${i} ready by its check on its port`, async () => ((JSON.parse((await cli(f.node.dataDir, ["inspect", `web-${i}`, "--json"])).stdout) as { status?: { ready: boolean } }).status?.ready ? true : undefined));
      }
      assert.equal(ports.size, 3, "three ports");

      // A fixed port: the first star holds it; a second waits, saying why, and runs once it is free.
      const spare = await listening();
      const fixed = portOf(spare);
      await new Promise((r) => spare.close(r));
      const a = await cli(f.node.dataDir, ["create", "--name", "fixed-a", "--port", `admin=${fixed}`, "--", "sleep", "60"]);
      assert.equal(a.code, 0, a.stderr);
      const b = await cli(f.node.dataDir, ["create", "--name", "fixed-b", "--port", `admin=${fixed}`, "--no-wait", "--", "sleep", "60"]);
      assert.equal(b.code, 0, b.stderr);
      const why = await waitFor("fixed-b pending", async () => (JSON.parse((await cli(f.node.dataDir, ["inspect", "fixed-b", "--json"])).stdout) as Info).pending?.reason);
      assert.equal(why, `1 node with port ${fixed} taken`);
      assert.equal((await cli(f.node.dataDir, ["rm", "-f", "fixed-a"])).code, 0);
      await waitFor("fixed-b runs with the port", async () => {
        const info = JSON.parse((await cli(f.node.dataDir, ["inspect", "fixed-b", "--json"])).stdout) as Info;
        return info.status?.state === "running" && info.status.ports?.admin === fixed ? true : undefined;
      });

      // A port a program outside Constellation holds: the start fails, saying so.
      const held = await cli(f.node.dataDir, ["create", "--name", "clash", "--port", `http=${portOf(outside)}`, "--", "sleep", "60"]);
      assert.equal(held.code, 1);
      assert.match(held.stderr, new RegExp(`port http=${portOf(outside)} is in use on node \\S+ by a program outside this star`));
    } finally {
      outside.close();
      await f.close();
    }
  });
});
