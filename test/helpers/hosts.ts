/**
 * Several "hosts" on this machine, for cluster tests (issue 11): one network namespace each,
 * joined by veth pairs to a bridge the harness creates, with addresses on that bridge only (no
 * route out). A test runs commands in a host, cuts or heals its link, drops a share of its
 * packets (nftables `numgen random`: this kernel has no `tc netem`), or kills everything in it.
 * `destroy()` ends every process in the hosts and removes namespaces and bridge; call it in a
 * `finally`/`after` (it is safe to call twice, and after a failed `create`).
 */
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";

function sh(cmd: string[], check = true): SpawnSyncReturns<string> {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: "utf8", timeout: 30_000 });
  if (check && r.status !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.status}: ${r.stderr.trim()}`);
  return r;
}

export const hostsSupported = (): string | false => {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return "needs Linux and root";
  for (const tool of ["ip", "nft", "nsenter"]) if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `needs ${tool}`;
  return false;
};

export class Hosts {
  private readonly tag = randomBytes(3).toString("hex");
  /** 10.213.X.0/24, X random: clear of this machine's networks (checked at create). */
  private readonly net = `10.213.${1 + (randomBytes(1)[0]! % 250)}`;
  private readonly made: number[] = [];
  private bridge = false;

  private constructor(
    readonly count: number,
    /** The bridge has an address of its own (bridgeAddress): this process reaches the hosts. */
    readonly reachable = false,
  ) {}

  static async create(count: number, options: { reachable?: boolean } = {}): Promise<Hosts> {
    const h = new Hosts(count, options.reachable === true);
    try {
      h.setUp();
    } catch (err) {
      h.destroy();
      throw err;
    }
    return h;
  }

  get bridgeName(): string {
    return `cb${this.tag}`;
  }

  ns(i: number): string {
    return `cn${this.tag}-${i}`;
  }

  /** The host-side end of host i's link (cut it to cut the host off). */
  private veth(i: number): string {
    return `cv${this.tag}${i}`;
  }

  address(i: number): string {
    return `${this.net}.${i + 1}`;
  }

  /** This machine's address on the bridge (a `reachable` harness's). */
  get bridgeAddress(): string {
    return `${this.net}.254`;
  }

  private setUp(): void {
    if (sh(["ip", "-4", "addr"]).stdout.includes(`${this.net}.`)) throw new Error(`${this.net}.0/24 is in use on this machine`);
    sh(["ip", "link", "add", this.bridgeName, "type", "bridge"]);
    this.bridge = true;
    sh(["ip", "link", "set", this.bridgeName, "up"]);
    // (The hosts have no route past the bridge's network: they reach nothing outside it.)
    if (this.reachable) sh(["ip", "addr", "add", `${this.bridgeAddress}/24`, "dev", this.bridgeName]);
    for (let i = 0; i < this.count; i++) {
      const ns = this.ns(i);
      sh(["ip", "netns", "add", ns]);
      this.made.push(i);
      sh(["ip", "link", "add", this.veth(i), "type", "veth", "peer", "name", "eth0", "netns", ns]);
      sh(["ip", "link", "set", this.veth(i), "master", this.bridgeName, "up"]);
      sh(["ip", "-n", ns, "addr", "add", `${this.address(i)}/24`, "dev", "eth0"]);
      sh(["ip", "-n", ns, "link", "set", "eth0", "up"]);
      sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
  }

  /**
   * Runs `cmd` in host i (synchronously): in its network namespace only (nsenter; not `ip netns
   * exec`, which mounts a sysfs of its own over /sys and so hides the cgroup hierarchies).
   */
  run(i: number, cmd: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> {
    return spawnSync("nsenter", [`--net=/var/run/netns/${this.ns(i)}`, "--", ...cmd], { encoding: "utf8", timeout: options.timeoutMs ?? 60_000, ...(options.env ? { env: options.env } : {}) });
  }

  /** Cuts host i off the bridge (its end of the link down), or heals it. */
  cut(i: number): void {
    sh(["ip", "link", "set", this.veth(i), "down"]);
  }

  heal(i: number): void {
    sh(["ip", "link", "set", this.veth(i), "up"]);
  }

  /** Drops `percent` % of the packets host i receives (0: none). */
  drop(i: number, percent: number): void {
    const ns = this.ns(i);
    sh(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "chaos"], false);
    if (percent <= 0) return;
    sh(["ip", "netns", "exec", ns, "nft", "add", "table", "inet", "chaos"]);
    sh(["ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "chaos", "input", "{ type filter hook input priority 0 ; }"]);
    sh(["ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "chaos", "input", "iifname", "eth0", "numgen", "random", "mod", "100", "<", String(percent), "drop"]);
  }

  /** The pids of every process in host i. */
  pids(i: number): number[] {
    return sh(["ip", "netns", "pids", this.ns(i)], false).stdout.split(/\s+/).filter(Boolean).map(Number);
  }

  /** SIGKILLs every process in host i (the host "loses power"). */
  kill(i: number): void {
    for (let round = 0; round < 5; round++) {
      const pids = this.pids(i);
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
    }
  }

  destroy(): void {
    for (const i of this.made.splice(0)) {
      this.kill(i);
      sh(["ip", "netns", "del", this.ns(i)], false);
    }
    for (let i = 0; i < this.count; i++) sh(["ip", "link", "del", this.veth(i)], false);
    if (this.bridge) sh(["ip", "link", "del", this.bridgeName], false);
    this.bridge = false;
  }
}
