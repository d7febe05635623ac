/**
 * A star's view of the host, as the launcher's options (native/sandbox.c does the mounts): the
 * host read-only, private places hidden, scratch places of its own, the binds it needs, and the
 * system call filter; and the checks of the paths a spec names, done before anything starts.
 * docs/security.md has the whole picture.
 */
import { stat } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { InvalidArgumentError } from "../../model/errors.js";
import type { Limits, StarSpec } from "../../model/spec.js";

/** Hidden from every star, besides the runtime's data dir and what the node adds. */
export const HIDDEN = ["/home", "/root", "/run/user"];

/** Private and writable in every star: on its disk when it has one, else tmpfs (its memory). */
const SCRATCH: Array<[place: string, dirName: string]> = [["/tmp", "tmp"], ["/var/tmp", "var-tmp"], ["/run/lock", "run-lock"]];
export const SCRATCH_PLACES = SCRATCH.map(([place]) => place);

export interface SandboxPlan {
  spec: StarSpec;
  limits: Limits;
  /** Made by an admin: its script's directory is shown to it. */
  trusted: boolean;
  /** The star's directory (root's) and where its writable files live (it, or its disk). */
  starDir: string;
  base: string;
  /** Its own writable work directory (its HOME), shown where it is; none with cwd or root. */
  work?: string;
  program: { file?: string; source?: string };
  hidden: string[];
  /** The star's own cgroup directories: their parents (every star's groups) are hidden. */
  cgroupDirs: string[];
}

export function sandboxArgs(p: SandboxPlan): string[] {
  const args = ["-r"];
  if (p.spec.seccomp !== "unconfined") args.push("-P");
  for (const h of p.hidden) args.push("-X", h);
  // Other stars' cgroups (their names, usage, limits) are not for it to read; its own are.
  // (A star with a root of its own has no /sys of the host at all.)
  if (!p.spec.root) {
    for (const parent of new Set(p.cgroupDirs.map((d) => dirname(d)))) args.push("-X", parent);
    for (const own of p.cgroupDirs) args.push("-R", `${own}=${own}`);
  }
  for (const [place, name] of SCRATCH) args.push("-T", p.limits.diskBytes !== undefined ? `${place}=${join(p.base, name)}` : place);
  args.push("-M", String(p.limits.memoryBytes ?? 64 * 2 ** 20));
  if (p.work) args.push("-B", `${p.work}=${p.work}`);
  const { file, source } = p.program;
  if (file && isUnder(file, p.starDir)) args.push("-R", `${dirname(file)}=${dirname(file)}`);
  // An admin's script is shown where it is (read-only), with its directory (its imports).
  if (p.trusted && source) args.push("-R", `${dirname(source)}=${dirname(source)}`);
  if (source) args.push("-R", `${dirname(process.execPath)}=${dirname(process.execPath)}`);
  for (const m of p.spec.mounts) args.push(m.readonly ? "-R" : "-B", `${m.host}=${m.path ?? m.host}`);
  if (p.spec.root) args.push("-R", "/dev=/dev", "-C", p.spec.root);
  return args;
}

/**
 * The host paths a spec names, checked on this node before anything starts: `mounts` that exist
 * and do not show what is hidden for the node's sake (its data dir), and a `root` that is a
 * directory holding the program.
 */
export async function checkHostPaths(spec: StarSpec, dataDirs: string[], shown: string[] = []): Promise<void> {
  for (const [i, m] of spec.mounts.entries()) {
    const field = `mounts.${i}`;
    const host = resolve(m.host);
    if (!(await stat(host).then(() => true, () => false))) throw new InvalidArgumentError(`${field}.host`, `${m.host} does not exist on this node: give an existing path`);
    const exposed = dataDirs.find((d) => isUnder(host, d) || isUnder(d, host));
    if (exposed) {
      throw new InvalidArgumentError(`${field}.host`, `${m.host} would show the node's data dir ${exposed} to the star: mount a directory outside it`);
    }
    const path = resolve(m.path ?? m.host);
    if (path === "/" || isUnder(path, "/proc")) throw new InvalidArgumentError(`${field}.path`, `a mount cannot cover ${path}: give another path`);
    // The star's view is read-only: a mount point must be there already, or be made in one of
    // the star's own tmpfs places (a hidden place or a scratch place).
    const made = [...HIDDEN, ...dataDirs, ...SCRATCH.map(([place]) => place)].some((d) => isUnder(path, d) && path !== d);
    if (!spec.root && !made && !(await stat(path).then(() => true, () => false))) {
      throw new InvalidArgumentError(`${field}.path`, `${path} does not exist on this node, and the host is read-only to stars: mount at an existing path (or under /tmp, /home, /root)`);
    }
  }
  // A working directory in a hidden place would fail at start with a bare "No such file".
  if (spec.cwd !== undefined && !spec.root) {
    const cwd = resolve(spec.cwd);
    const hiddenBy = [...HIDDEN, ...dataDirs].find((h) => isUnder(cwd, h));
    const given = [...shown, ...spec.mounts.map((m) => resolve(m.path ?? m.host))].some((p) => isUnder(cwd, p));
    if (hiddenBy && !given) throw new InvalidArgumentError("cwd", `${spec.cwd} is in ${hiddenBy}, which stars cannot see: give it with mounts, or choose another cwd`);
    // (A mount's path is made in the star's view; any other cwd must be a directory already.)
    if (!given && !(await stat(cwd).then((s) => s.isDirectory(), () => false))) {
      throw new InvalidArgumentError("cwd", `cwd ${spec.cwd} is not a directory on this node: give an existing directory`);
    }
  }
  if (spec.root !== undefined) {
    const root = resolve(spec.root);
    if (!(await stat(root).then((s) => s.isDirectory(), () => false))) throw new InvalidArgumentError("root", `${spec.root} is not a directory on this node: give the directory of the star's root filesystem`);
    if (root === "/") throw new InvalidArgumentError("root", "root / is the host itself: leave root out");
    if (dataDirs.some((d) => isUnder(root, d) || isUnder(d, root))) throw new InvalidArgumentError("root", `${spec.root} holds or is inside the node's data dir: use another directory`);
    if (!spec.command) throw new InvalidArgumentError("root", "root is for commands (a script would need this node's Node.js inside the root): give command, with the program inside the root");
    const program = spec.command[0]!;
    const candidates = program.includes("/") ? [program] : ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map((d) => join(d, program));
    const found = await Promise.all(candidates.map((c) => stat(join(root, c)).then((s) => s.isFile(), () => false)));
    if (!found.some(Boolean)) throw new InvalidArgumentError("root", `${spec.root} does not hold ${program} (looked in ${candidates.join(", ")} inside it): put the program there`);
  }
}

export function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}
