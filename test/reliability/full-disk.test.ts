/**
 * A full disk (issue 9, break 6): a star killed while the disk was full left a 0-byte end
 * record, and after space was freed `list` showed it running with a dead pid until `up`
 * restarted. Here the node's data dir is on a small loop-mounted filesystem that the test fills
 * up during a star's exit.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Constellation, connect } from "../../src/index.js";
import { type Up, cli, kill9, makeDataDir, removeDataDir, up } from "../helpers/constellation.js";
import { waitFor } from "../helpers/wait.js";

const skip = process.platform !== "linux" || process.getuid?.() !== 0 ? "needs Linux and root (a loop mount)" : false;

describe("a full disk", { skip, concurrency: false }, () => {
  let dir: string;
  let mnt: string;
  let node: Up | undefined;
  let sdk: Constellation;

  before(async () => {
    dir = makeDataDir("constellation-full-");
    mnt = join(dir, "host");
    mkdirSync(mnt);
    const image = join(dir, "host.img");
    execFileSync("truncate", ["-s", "160M", image]);
    execFileSync("mkfs.ext4", ["-q", "-F", "-m", "0", image]);
    execFileSync("mount", ["-o", "loop", image, mnt]);
    node = await up(join(mnt, "data"));
    sdk = connect({ dataDir: node.dataDir });
  });
  after(async () => {
    for (let i = 1; i < 7; i++) rmSync(join(mnt, i === 1 ? "fill" : `fill${i}`), { force: true });
    for (const s of (await sdk?.list({ fields: ["name"] }).catch(() => [])) ?? []) await sdk.star(s.name).remove({ force: true }).catch(() => undefined);
    if (process.env.SHOW_UP) console.log("UP OUTPUT", node?.output());
    sdk?.close();
    if (node) await kill9(node);
    spawnSync("umount", ["-l", mnt]);
    removeDataDir(dir);
  });

  it("a disk_mb the host has no room for is refused at create (4xx, how much is free), and nothing is recorded", async () => {
    const res = await cli(node!.dataDir, ["create", "--name", "huge-disk", "--disk-mb", "400", "--", "sleep", "1"]);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /no room for this star's disk \(\d+ MB for disk_mb and its filesystem; \d+ MB are free\)/);
    assert.doesNotMatch(res.stderr, /at .*\.js:\d+/);
    assert.equal((await cli(node!.dataDir, ["inspect", "huge-disk"])).code, 1, "nothing recorded");
  });

  it("a star that ends while the disk is full: shown ended at once, its end record whole, written to the store when space returns", async () => {
    const star = await sdk.create({ name: "victim", command: ["sleep", "600"] });
    const pid = (await star.wait({ for: "running" })).status!.pid!;
    // Fill the host's disk to the last block.
    spawnSync("dd", ["if=/dev/zero", `of=${join(mnt, "fill")}`, "bs=1M"], { stdio: "ignore" });
    for (let i = 2; i < 6 && statfsSync(mnt).bavail * statfsSync(mnt).bsize >= 64 * 1024; i++) {
      spawnSync("sync", [mnt]); // delayed allocation: what dd wrote takes its blocks at writeback
      spawnSync("dd", ["if=/dev/zero", `of=${join(mnt, `fill${i}`)}`, "bs=4k"], { stdio: "ignore" });
    }
    spawnSync("sync", [mnt]);
    spawnSync("dd", ["if=/dev/zero", `of=${join(mnt, "fill6")}`, "bs=1"], { stdio: "ignore" }); // the last block
    spawnSync("sync", [mnt]);
    const left = statfsSync(mnt);
    assert.equal(left.bavail, 0, `the disk is full (${left.bavail * left.bsize} bytes left)`);

    // Writes until the store cannot take one more (SQLite goes on while its WAL has room).
    let refused: Error | undefined;
    let n = 0;
    for (const size of [100_000, 10_000, 1000, 10]) {
      refused = undefined;
      for (let i = 0; i < 500 && !refused; i++) {
        await sdk.create({ name: `filler-${n++}`, command: ["true"], env: { BLOB: "x".repeat(size) } }, { start: false }).catch((e: Error) => (refused = e));
      }
    }
    assert.match(String(refused), /the store.s disk is full \(.*store\.db\): nothing was written; free space on that disk and retry/, "the store refuses writes, with a clear error");
    assert.equal((refused as { status?: number }).status, 503);
    process.kill(pid, "SIGKILL");
    const seen = await waitFor("the star shown ended", async () => {
      const s = (await star.info()).status;
      return s && s.state !== "running" ? s : undefined;
    });
    assert.equal(seen.state, "failed");
    assert.equal(seen.pid, undefined, "no dead pid shown");
    assert.match(seen.reason ?? "", /SIGKILL/);
    const end = join(node!.dataDir, "runtime", "stars", "victim", "end");
    if (existsSync(end)) assert.equal(readFileSync(end, "utf8"), "signal 9\n", "an end record is whole or absent, never empty");

    // Room again: the store gets the report (a wait reads the store alone).
    for (let i = 1; i < 7; i++) rmSync(join(mnt, i === 1 ? "fill" : `fill${i}`), { force: true });
    const ended = await star.wait({ for: "ended", timeoutMs: 15_000 });
    assert.equal(ended.status?.state, "failed");
    // And a restart finds the truth as well.
    await kill9(node!);
    node = await up(node!.dataDir);
    sdk.close();
    sdk = connect({ dataDir: node.dataDir });
    assert.equal((await sdk.star("victim").info()).status?.state, "failed");
  });
});
