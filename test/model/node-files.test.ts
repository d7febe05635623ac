/**
 * Whether the node of a data dir runs (ready.json's pid): a killed node's process that its
 * parent has not reaped yet (a zombie) does not run — `init` after a SIGKILL once found one and
 * started nothing — nor does another process that got the pid.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { it } from "node:test";
import { pidAlive, processStarted } from "../../src/model/node-files.js";
import { waitFor } from "../helpers/wait.js";

it("a zombie does not run; a pid whose start time differs is another process", { skip: process.platform !== "linux" }, async () => {
  // The child ends a moment after its parent has become `sleep` (exec), which never reaps it: a
  // zombie. (A child that ends before the exec may be reaped by the shell: no zombie then.)
  const sh = spawn("sh", ["-c", "sleep 0.3 & echo $!; exec sleep 30"], { stdio: ["ignore", "pipe", "ignore"] });
  try {
    const pid = Number(await new Promise<string>((resolve) => sh.stdout.once("data", (d: Buffer) => resolve(d.toString().trim()))));
    await waitFor("the child to be a zombie", () => readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ") || undefined);
    assert.equal(pidAlive(pid), false, "a zombie taken for running");
    assert.equal(pidAlive(process.pid), true);
    const started = processStarted();
    assert.ok(typeof started === "number" && started > 0);
    assert.equal(pidAlive(process.pid, started), true);
    assert.equal(pidAlive(process.pid, started! + 1), false, "a pid reused by another process taken for the node");
  } finally {
    sh.kill("SIGKILL");
  }
});
