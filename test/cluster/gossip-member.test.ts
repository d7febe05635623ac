/**
 * A node's gossip member and what it keeps in its data dir (server/gossip.ts), attacked as the
 * review did: a damaged or hostile cache is taken for what is right in it and no more; a symlink
 * planted at a side file is never followed; a keyring older than the one kept (a store restored
 * from a backup) is taken; the view file says when the node left, and `gossip members` refuses
 * a damaged view and warns of a stale one.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { newGossipKey } from "../../src/cluster/gossip/keyring.js";
import { membersFile, membersViewOf } from "../../src/model/node-files.js";
import { readGossipCache, startNodeGossip } from "../../src/server/gossip.js";
import { CLI } from "../helpers/constellation.js";
import { testDir } from "../helpers/dirs.js";

describe("a node's gossip member and its files", () => {
  let dir: string;
  const key = newGossipKey();
  const keyring = { version: 3, primary: key, keys: [key] };
  const start = (dataDir: string, r = keyring) => startNodeGossip({ dataDir, name: "n1", host: "127.0.0.1", port: 0, advertise: "127.0.0.1", keyring: r, meta: { cpu: 1 }, log: () => undefined });

  before(async () => {
    dir = await testDir("constellation-gossip-member-");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("a cache with damaged seeds or port keeps its keyring and drops the rest; a damaged keyring is no cache", () => {
    const d = join(dir, "cache");
    mkdirSync(join(d, "cluster"), { recursive: true });
    const write = (v: unknown) => writeFileSync(join(d, "cluster", "gossip.json"), JSON.stringify(v));
    for (const seeds of ["x", { a: 1 }, [1, "127.0.0.1:7947"]]) {
      write({ keyring, port: "abc", seeds });
      const c = readGossipCache(d);
      assert.deepEqual(c?.keyring, keyring);
      assert.equal(c?.port, undefined);
      assert.ok(c?.seeds === undefined || c.seeds.every((s) => typeof s === "string"), JSON.stringify(c?.seeds));
    }
    write({ keyring: { ...keyring, keys: "nope" } });
    assert.equal(readGossipCache(d), undefined);
    write({ keyring: { ...keyring, primary: "short" } });
    assert.equal(readGossipCache(d), undefined);
    write(null);
    assert.equal(readGossipCache(d), undefined);
  });

  it("a symlink planted at a side file is replaced, not followed", async () => {
    const d = join(dir, "links");
    mkdirSync(join(d, "cluster"), { recursive: true });
    const victim = join(dir, "victim.txt");
    writeFileSync(victim, "untouched\n");
    symlinkSync(victim, join(d, "cluster", "gossip.json.tmp"));
    symlinkSync(victim, `${membersFile(d)}.tmp`);
    const m = await start(d);
    try {
      assert.equal(readFileSync(victim, "utf8"), "untouched\n");
      assert.ok(!lstatSync(join(d, "cluster", "gossip.json")).isSymbolicLink());
      assert.equal(lstatSync(join(d, "cluster", "gossip.json")).mode & 0o777, 0o600);
      assert.ok(!lstatSync(membersFile(d)).isSymbolicLink());
    } finally {
      m.close();
    }
  });

  it("takes the store's keyring even when its version is below the one kept (a restored store)", async () => {
    const d = join(dir, "older");
    mkdirSync(join(d, "cluster"), { recursive: true });
    const m = await start(d, { ...keyring, version: 1e15 });
    try {
      const other = newGossipKey();
      m.setKeyring({ version: 4, primary: other, keys: [other] });
      assert.equal(m.version, 4);
      assert.equal(readGossipCache(d)?.keyring.primary, other);
      assert.equal(m.members().find((x) => x.name === "n1")?.meta.keys, 4, "its meta says which keyring it holds");
    } finally {
      m.close();
    }
  });

  it("the view says the node left when it leaves; gossip members refuses a damaged view and warns of a stale one", async () => {
    const d = join(dir, "view");
    mkdirSync(join(d, "cluster"), { recursive: true });
    const m = await start(d);
    await m.leave();
    const view = membersViewOf(readFileSync(membersFile(d), "utf8"));
    assert.equal(view?.members.find((x) => x.name === "n1")?.state, "left");
    const cli = () => spawnSync(process.execPath, [CLI, "--data", d, "gossip", "members"], { encoding: "utf8" });
    const stale = cli();
    assert.equal(stale.status, 0, stale.stderr);
    writeFileSync(membersFile(d), JSON.stringify({ ...view, at: Date.now() - 3_600_000 }));
    assert.match(cli().stderr, /this view was written 1h ago: the node is not running/);
    for (const bad of ["{}", "null", "[1]", '{"self":"n1","at":1,"members":"abc"}', '{"self":"n1","at":1,"members":[{"name":1}]}', "not json"]) {
      writeFileSync(membersFile(d), bad);
      const r = cli();
      assert.notEqual(r.status, 0, bad);
      assert.match(r.stderr, /is not a gossip view/, bad);
      assert.doesNotMatch(r.stderr, /please report|\n\s+at /, bad);
    }
    assert.ok(existsSync(membersFile(d)));
  });
});
