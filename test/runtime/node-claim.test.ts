/**
 * A node's claim on its host (issue 9, break 5): an id and a uid range of its own, kept in its
 * data dir, handed out by the host's registry so no two nodes share one; a gone node's range is
 * taken back only when nothing of it runs.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { FIRST_UID, UIDS_PER_NODE, claimNode, nodeCgroupParent } from "../../src/runtime/node-claim.js";
import { testDirSync } from "../helpers/dirs.js";

describe("a node's claim on its host", () => {
  const root = testDirSync("node-claim-");
  after(() => rmSync(root, { recursive: true, force: true }));
  const registry = join(root, "registry");

  it("gives each data dir its own id and uid range, and the same again on the next start", () => {
    const a = claimNode(join(root, "a"), { registry });
    const b = claimNode(join(root, "b"), { registry });
    assert.match(a.id, /^[0-9a-f]{12}$/);
    assert.notEqual(a.id, b.id);
    assert.equal(a.uidCount, UIDS_PER_NODE);
    assert.equal(a.uidBase, FIRST_UID);
    assert.equal(b.uidBase, FIRST_UID + UIDS_PER_NODE, "ranges do not overlap");
    assert.deepEqual(claimNode(join(root, "a"), { registry }), a, "kept in node.json");
    assert.equal(nodeCgroupParent(a, "process"), `constellation/${a.id}/process`);
    assert.deepEqual(JSON.parse(readFileSync(join(registry, "0.json"), "utf8")), { id: a.id, dataDir: join(root, "a") });
    assert.equal(existsSync(join(registry, ".lock")), false, "the lock is released");
  });

  it("takes back the range of a data dir that is gone only when nothing of its node runs", () => {
    const gone = claimNode(join(root, "gone"), { registry });
    rmSync(join(root, "gone"), { recursive: true });
    const busy = claimNode(join(root, "next"), { registry, busy: (id) => id === gone.id });
    assert.notEqual(busy.uidBase, gone.uidBase, "its stars still run: the range stays theirs");
    const taken = claimNode(join(root, "later"), { registry, busy: () => false });
    assert.equal(taken.uidBase, gone.uidBase, "nothing of it runs: the range is free again");
  });

  it("keeps a node's range when the registry lost it, and without a registry still names the node", () => {
    const dir = join(root, "kept");
    const c = claimNode(dir, { registry });
    rmSync(registry, { recursive: true });
    assert.deepEqual(claimNode(dir, { registry }), c);
    const dev = claimNode(join(root, "dev"), { registry: null });
    assert.match(dev.id, /^[0-9a-f]{12}$/);
    assert.deepEqual(claimNode(join(root, "dev"), { registry: null }), dev);
  });

  it("a lost or garbled node.json gets its node back from the registry (not a new id, whose stars would run twice)", () => {
    const dir = join(root, "forgetful");
    const c = claimNode(dir, { registry });
    rmSync(join(dir, "node.json"));
    assert.deepEqual(claimNode(dir, { registry }), c);
    writeFileSync(join(dir, "node.json"), "{garbled");
    assert.deepEqual(claimNode(dir, { registry }), c);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, "node.json"), "utf8")), c, "written back");
  });

  it("an entry that cannot be read is not a free range, and entries are written whole", () => {
    const victim = claimNode(join(root, "victim"), { registry });
    const slot = (victim.uidBase - FIRST_UID) / UIDS_PER_NODE;
    writeFileSync(join(registry, `${slot}.json`), ""); // as a crash or a full disk could leave it
    const next = claimNode(join(root, "newcomer"), { registry, busy: () => false });
    assert.notEqual(next.uidBase, victim.uidBase, "a live node's range handed out again");
    assert.ok(readdirSync(registry).every((f) => !f.endsWith(".tmp")), "no temporary files left");
    assert.deepEqual(claimNode(join(root, "victim"), { registry }), victim, "its node keeps its range, and its entry is whole again");
    assert.deepEqual(JSON.parse(readFileSync(join(registry, `${slot}.json`), "utf8")).id, victim.id);
  });

  it("hands out distinct ranges to nodes claiming at once (separate processes)", async () => {
    const { spawn } = await import("node:child_process");
    const mod = new URL("../../src/runtime/node-claim.js", import.meta.url).href;
    const reg = join(root, "race");
    const runs = Array.from({ length: 8 }, (_, i) =>
      new Promise<number>((resolve, reject) => {
        const code = `import(${JSON.stringify(mod)}).then((m) => console.log(m.claimNode(${JSON.stringify(join(root, `race-${i}`))}, { registry: ${JSON.stringify(reg)} }).uidBase))`;
        const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.once("exit", (c) => (c === 0 ? resolve(Number(out.trim())) : reject(new Error(`exit ${c}`))));
      }),
    );
    const bases = await Promise.all(runs);
    assert.equal(new Set(bases).size, 8, `distinct: ${bases.join(", ")}`);
  });
});
