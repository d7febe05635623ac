/**
 * Runs the built `constellation` binary as a user would: `up` in a data dir of its own, and CLI
 * commands against it. The data dir is under helpers/dirs.ts's TEST_ROOT (stars get private /tmp
 * and /var/tmp).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, readFileSync, rmSync } from "node:fs";
import { killNodeStars, nodeGroups } from "./cgroups.js";
import { testDirSync } from "./dirs.js";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Constellation, connect } from "../../src/index.js";
import { waitFor } from "./wait.js";

export const CLI = fileURLToPath(new URL("../../src/cli/constellation.mjs", import.meta.url));

export interface Up {
  dataDir: string;
  url: string;
  token: string;
  child: ChildProcess;
  /** Everything `up` printed. */
  output(): string;
}

export function makeDataDir(prefix = "constellation-e2e-"): string {
  const dir = testDirSync(prefix);
  chmodSync(dir, 0o755);
  return dir;
}

/** Starts `constellation up --port 0` on `dataDir` and waits until it serves. */
export async function up(dataDir: string, extra: string[] = [], as?: { uid: number; gid: number }): Promise<Up> {
  // As the bin runs it (its #! line's V8 flag).
  const child = spawn(process.execPath, ["--max-semi-space-size=1", CLI, "up", "--data", dataDir, "--port", "0", ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
    ...(as ? { uid: as.uid, gid: as.gid, env: { ...process.env, HOME: dataDir } } : {}),
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code) => reject(new Error(`constellation up exited with ${code}: ${out}`))),
  );
  exited.catch(() => undefined);
  const url = await Promise.race([
    waitFor("constellation up to serve", () => /constellation up\s+(http:\/\/\S+)/.exec(out)?.[1], { timeoutMs: 30_000 }),
    exited,
  ]);
  const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
  return { dataDir, url, token, child, output: () => out };
}

/** Stops `up` with SIGKILL (the whole control plane dies at once; stars do not). */
export async function kill9(u: Up): Promise<void> {
  if (u.child.exitCode !== null || u.child.signalCode !== null) return;
  const gone = new Promise((r) => u.child.once("exit", r));
  u.child.kill("SIGKILL");
  await gone;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a CLI command against the data dir; resolves with its exit code and output. */
export function cli(dataDir: string, args: string[], env: Record<string, string> = {}, cwd?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, "--data", dataDir, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      ...(cwd ? { cwd } : {}),
      env: { ...process.env, NO_COLOR: "1", CONSTELLATION_ENDPOINT: "", CONSTELLATION_TOKEN: "", ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Removes a test's data dir, after killing what is left of its node's stars (they outlive `up` by design). */
export function removeDataDir(dir: string): void {
  for (const d of [dir, join(dir, "data")]) if (existsSync(join(d, "node.json"))) killNodeStars(d);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * `up` in a data dir of its own (under `prefix`) with an admin SDK client. `close()` removes every
 * star, stops `up` and deletes the dir; a test that restarts `up` replaces `node` and `sdk`.
 */
export interface UpFixture {
  dir: string;
  node: Up;
  sdk: Constellation;
  close(): Promise<void>;
}

export async function upWithClient(prefix: string, extra: string[] = []): Promise<UpFixture> {
  const dir = makeDataDir(prefix);
  const node = await up(join(dir, "data"), extra);
  const f: UpFixture = {
    dir,
    node,
    sdk: connect({ dataDir: node.dataDir }),
    async close() {
      for (const s of await f.sdk.list().catch(() => [])) await f.sdk.star(s.name).remove({ force: true }).catch(() => undefined);
      // The node carries the removals out: let it end the stars, then end whatever is left in
      // its groups (a test must not leave a star running after its node is gone).
      const left = () => {
        try {
          return [...nodeGroups(f.node.dataDir).values()].flat();
        } catch {
          return [];
        }
      };
      await waitFor("the node's stars to end", () => (left().length === 0 ? true : undefined), { timeoutMs: 10_000 }).catch(() => undefined);
      f.sdk.close();
      await kill9(f.node);
      for (const pid of left()) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
      removeDataDir(dir);
    },
  };
  return f;
}

/** A CLI run on some machine: what `cliOn(where, ...args)` gives back. */
type RunCli<W> = (where: W, ...args: string[]) => { status: number | null; stdout: string; stderr: string };

/**
 * `--json` readers over a CLI run on some machine (a data dir, a host): `json` parses a
 * command's answer (throwing its stderr if it failed), `eventsOf` a star's events.
 */
export function cliReaders<W>(run: RunCli<W>) {
  return {
    json: <T>(where: W, ...args: string[]): T => {
      const r = run(where, ...args, "--json");
      if (r.status !== 0) throw new Error(`${args.join(" ")} on ${String(where)}: ${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    },
    /** A star's events (`events --json`: one JSON object a line). */
    eventsOf: (where: W, star: string) =>
      run(where, "events", "--star", star, "--json")
        .stdout.split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { kind: string; at: number }),
  };
}

/** A star as `list --json` shows it. */
export interface ListedStar {
  name: string;
  node?: string;
  status?: { state: string; pid?: number };
}
