/**
 * Per-star disk limits (`disk_mb`): each such star gets its own small ext4 filesystem in a
 * sparse image file, loop-mounted at <star dir>/disk; its work/ and tmp/ live there, so a write
 * past the limit fails inside the star with ENOSPC.
 *
 * Why not project quotas on a shared filesystem (what Docker's overlay2 does on XFS)? They cost
 * nothing at start, but need kernel quota support (CONFIG_QUOTA / XFS quota) and a filesystem
 * mounted with prjquota; the machines this was built on have neither. A loop-mounted image needs
 * only the loop driver and mkfs.ext4, and costs ~55 ms at the star's first start (mkfs + mount;
 * measured in docs/runtime.md). The filesystem survives restarts of the star and is removed with it.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, truncate } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Room for ext4's own metadata, so that about `bytes` remain usable. */
function imageSize(bytes: number): number {
  return Math.ceil(bytes * 1.06) + 4 * 2 ** 20;
}

/** What is missing for disk limits on this node, or undefined if they work. */
export async function diskLimitSupport(): Promise<string | undefined> {
  if (!existsSync("/dev/loop-control")) return "no loop device support (/dev/loop-control is missing)";
  try {
    await run("mkfs.ext4", ["-V"]);
  } catch {
    return "mkfs.ext4 is not installed (apt-get install e2fsprogs)";
  }
  return undefined;
}

function diskMount(starDir: string): string {
  return join(starDir, "disk");
}

/** Makes and mounts the star's filesystem unless it is mounted already. Returns the mount point. */
export async function mountStarDisk(starDir: string, bytes: number): Promise<string> {
  const mnt = diskMount(starDir);
  if (await isMounted(mnt)) return mnt;
  const image = join(starDir, "disk.img");
  if (!existsSync(image)) {
    await rm(`${image}.new`, { force: true });
    await run("truncate", ["-s", String(imageSize(bytes)), `${image}.new`]).catch(() => truncate(`${image}.new`, imageSize(bytes)));
    // No journal (a star's scratch space), no reserved blocks, no discard pass over the file.
    await run("mkfs.ext4", ["-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "nodiscard,lazy_itable_init=1", `${image}.new`]);
    await run("mv", [`${image}.new`, image]);
  }
  await mkdir(mnt, { recursive: true, mode: 0o755 });
  await run("mount", ["-o", "loop,nosuid,nodev", image, mnt]);
  return mnt;
}

/** Unmounts the star's filesystem (retrying while busy); `lazy`: detach it even if still busy. */
export async function unmountStarDisk(starDir: string, lazy = false): Promise<void> {
  const mnt = diskMount(starDir);
  if (lazy) {
    if (await isMounted(mnt)) await run("umount", ["-l", mnt]);
    return;
  }
  // Busy for a few ms while the kernel tears down the star's namespaces: retry briefly.
  for (let attempt = 0; await isMounted(mnt); attempt++) {
    try {
      await run("umount", [mnt]);
    } catch (err) {
      if (attempt >= 50) throw err;
      await delay(20);
    }
  }
}

async function isMounted(path: string): Promise<boolean> {
  try {
    await run("mountpoint", ["-q", path]);
    return true;
  } catch {
    return false;
  }
}
