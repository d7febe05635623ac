import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { electionSuite } from "./election-suite.js";

electionSuite("sqlite (three processes sharing one database file)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "constellation-election-"));
  return {
    config: { backend: "sqlite", path: join(dir, "state.db"), shared: true, leaseCheckIntervalMs: 100, pollIntervalMs: 10 },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});
