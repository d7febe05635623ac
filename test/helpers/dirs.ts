/**
 * Where tests keep files that stars must see. Not under /tmp, /var/tmp or /run/lock (each star
 * gets private ones) nor /home or /root (hidden from stars): under /var/lib, which stars see
 * read-only. The data dir inside it is hidden by the runtime itself.
 */
import { mkdirSync, mkdtempSync } from "node:fs";
import { chmod, mkdir, mkdtemp } from "node:fs/promises";
import { join } from "node:path";

export const TEST_ROOT = "/var/lib/constellation-tests";

export async function testDir(prefix: string): Promise<string> {
  await mkdir(TEST_ROOT, { recursive: true, mode: 0o755 });
  const dir = await mkdtemp(join(TEST_ROOT, prefix));
  await chmod(dir, 0o755);
  return dir;
}

export function testDirSync(prefix: string): string {
  mkdirSync(TEST_ROOT, { recursive: true, mode: 0o755 });
  return mkdtempSync(join(TEST_ROOT, prefix));
}
