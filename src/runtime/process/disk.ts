/**
 * Per-star disk limits (`disk_mb`): each such star gets its own small ext4 filesystem in an
 * image file whose blocks are allocated up front, loop-mounted at <star dir>/disk; its work/ and tmp/ live there, so a write
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
import { mkdir, rm, statfs, truncate } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";
import { DiskFullError } from "../../model/errors.js";

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

/**
 * Makes `file` of `size` bytes with its blocks allocated (fallocate): a sparse image on a host
 * whose disk later fills gives the star I/O errors and the kernel "potential data loss" instead
 * of ENOSPC (issue 9). No room: a clear error, and nothing left behind. A filesystem that cannot
 * allocate (fallocate unsupported) gets a sparse file, as before.
 */
async function allocate(file: string, size: number): Promise<void> {
  try {
    await run("fallocate", ["-l", String(size), file]);
  } catch (err) {
    const text = String((err as { stderr?: string }).stderr ?? (err as Error).message);
    if (/No space left/i.test(text)) {
      await rm(file, { force: true });
      throw new DiskFullError(Math.ceil(size / 2 ** 20));
    }
    await run("truncate", ["-s", String(size), file]).catch(() => truncate(file, size));
  }
}

/**
 * Refuses a disk the host has no room for now, where the node keeps stars' files (`dir`): at
 * create, so no 201 is given for a star whose start must fail. (Room is not reserved: two stars
 * created at once may both pass, and the later start then fails with the same error.)
 */
export async function checkHostRoom(dir: string, bytes: number): Promise<void> {
  const s = await statfs(dir);
  const free = s.bavail * s.bsize; // what the filesystem gives out (ext4 keeps some blocks for itself)
  const size = imageSize(bytes);
  if (free < size) throw new DiskFullError(Math.ceil(size / 2 ** 20), Math.floor(free / 2 ** 20));
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
    await allocate(`${image}.new`, imageSize(bytes));
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
