/**
 * The controller killed with SIGKILL in the middle of a burst of creates, and started again (the
 * built CLI, real detached node processes, loopback): the joined node's stars run on untouched
 * (same processes), the node reconnects by itself, no star is moved or run twice, and every
 * create the CLI said was done is there and runs. Every process is ended even on failure.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { endNodeStars } from "../helpers/cgroups.js";
import { testDir } from "../helpers/dirs.js";
import { endProcess, waitFor } from "../helpers/wait.js";

const BIN = fileURLToPath(new URL("../../src/cli/constellation.mjs", import.meta.url));
const dev = process.getuid?.() === 0 ? [] : ["--dev"];

/** A port free now on loopback (the controller must come back on the same ones). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

interface Listed {
  name: string;
  node: string;
  status?: { state: string; pid?: number };
}

describe("the controller killed under load and started again", () => {
  let dir: string;
  const data = (n: string) => join(dir, n);
  const cli = (n: string, ...args: string[]) => spawnSync(process.execPath, [BIN, "--data", data(n), ...args], { encoding: "utf8", timeout: 60_000 });
  const ready = (n: string) => JSON.parse(readFileSync(join(data(n), "ready.json"), "utf8")) as { pid: number };
  const list = () => JSON.parse(cli("c1", "list", "--json").stdout) as Listed[];

  before(async () => {
    dir = await testDir("constellation-killed-");
  });
  after(async () => {
    if (existsSync(join(data("c1"), "ready.json"))) cli("c1", "rm", "--all", "--yes", "-f");
    for (const n of ["c2", "c1"]) {
      try {
        await endProcess(ready(n).pid, `node ${n}`);
      } catch {
        // not started
      }
      await endNodeStars(data(n)); // (what its rm had not ended yet)
    }
    await rm(dir, { recursive: true, force: true });
  });

  it("stars run on untouched, the node reconnects, nothing moves or runs twice, every create said done is there", async () => {
    const ports = ["--port", String(await freePort()), "--cluster-port", String(await freePort()), "--api-port", String(await freePort()), "--gossip-port", "0"];
    const init = () => cli("c1", "init", "--cluster", "crash", "--node", "c-1", ...ports, ...dev);
    const up = init();
    assert.equal(up.status, 0, up.stderr);
    const printed = /constellation join (\S+) --token (cjt1\.\S+)/.exec(up.stdout);
    assert.ok(printed, up.stdout);
    const port = printed[1]!.split(":").at(-1)!;
    const joined = cli("c2", "join", `127.0.0.1:${port}`, "--node", "c-2", "--token", printed[2]!, "--gossip-port", "0", ...dev);
    assert.equal(joined.status, 0, joined.stderr);
    for (let i = 0; i < 6; i++) assert.equal(cli("c1", "create", "--name", `s${i}`, "--", "sleep", "600").status, 0);
    const before = await waitFor("six running", () => {
      const l = list();
      return l.length === 6 && l.every((s) => s.status?.state === "running" && s.status.pid) ? l : undefined;
    });
    const onC2 = before.filter((s) => s.node === "c-2");
    assert.ok(onC2.length > 0, JSON.stringify(before));

    // A burst of creates, and the controller killed in the middle of it (once one is done).
    let done = 0;
    const burst = Array.from(
      { length: 12 },
      (_, i) =>
        new Promise<{ name: string; code: number | null }>((resolve) => {
          const c = spawn(process.execPath, [BIN, "--data", data("c1"), "create", "--name", `b${i}`, "--", "sleep", "600"], { stdio: "ignore" });
          c.once("exit", (code) => {
            done++;
            resolve({ name: `b${i}`, code });
          });
        }),
    );
    await waitFor("one create of the burst done", () => (done >= 1 ? true : undefined));
    const pid = ready("c1").pid;
    process.kill(pid, "SIGKILL");
    await waitFor("the controller gone", () => {
      try {
        process.kill(pid, 0);
        return undefined;
      } catch {
        return true;
      }
    });
    const results = await Promise.all(burst);
    // The joined node's stars ran on meanwhile: the same processes.
    for (const s of onC2) assert.doesNotThrow(() => process.kill(s.status!.pid!, 0), `star ${s.name} (pid ${s.status!.pid}) ended with its controller`);

    // Started again with no flags: on the ports of its last start (the node keeps its address).
    const again = cli("c1", "init", ...dev);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, new RegExp(`:${port}\\b`), again.stdout);
    await waitFor("c-2 back and ready", () => (/c-2\s+ready/.test(cli("c1", "nodes").stdout) ? true : undefined), { timeoutMs: 60_000 });
    const made = results.filter((r) => r.code === 0).map((r) => r.name);
    const after = await waitFor("every star said made, running", () => {
      const l = list();
      const names = new Set(l.map((s) => s.name));
      return made.every((n) => names.has(n)) && l.every((s) => s.status?.state === "running") ? l : undefined;
    }, { timeoutMs: 60_000 });
    for (const s of before) {
      const now = after.find((x) => x.name === s.name);
      assert.equal(now?.node, s.node, `${s.name} moved`);
      assert.equal(now?.status?.pid, s.status?.pid, `${s.name} started again`);
    }
    // One process per star: no star runs twice on the node's host.
    const pids = after.map((s) => s.status?.pid);
    assert.equal(new Set(pids).size, pids.length);
    const events = cli("c1", "events", "--json").stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { kind: string });
    assert.ok(events.some((e) => e.kind === "star.created"), "events read");
    assert.deepEqual(events.filter((e) => e.kind === "star.moved" || e.kind === "star.node-dead"), [], "nothing moved");
  });
});
