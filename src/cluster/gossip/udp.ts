/**
 * The gossip over UDP: the thin shell around the state machine (swim.ts). Every packet is sealed
 * with the cluster key (keyring.ts) around [epoch, counter, packet] in MessagePack; a packet that
 * does not open, does not decode, is not a packet (messages.ts) or is a replay (replay.ts) is
 * dropped, and said in a log line at most every 10 s with a count.
 */
import { type Socket, createSocket } from "node:dgram";
import { randomBytes } from "node:crypto";
import { isIPv6 } from "node:net";
import { Packr } from "msgpackr";
import type { GossipConfig } from "./config.js";
import type { Keyring } from "./keyring.js";
import { type Meta, type Packet, parsePacket } from "./messages.js";
import { ReplayGuard } from "./replay.js";
import { type MemberState, type MemberView, Swim } from "./swim.js";

export interface GossipNodeOptions {
  name: string;
  /** Where to listen (port 0: any free port). */
  host: string;
  port: number;
  /** Where others reach this member (default: the address listened on). */
  advertise?: string;
  /** The host others reach this member at, on the port bound (when `advertise` is not given). */
  advertiseHost?: string;
  keyring: Keyring;
  meta?: Meta;
  config?: Partial<GossipConfig>;
  /** Members to join through (host:port). */
  seeds?: string[];
  onChange?: (member: MemberView, before: MemberState | undefined) => void;
  /** A packet came that no key of the ring opens. */
  onUnsealed?: () => void;
  log?: (line: string) => void;
}

/** Why packets were dropped, counted. */
export interface DropCounts {
  unsealed: number;
  malformed: number;
  replayed: number;
}

const codec = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });
const LOG_EVERY_MS = 10_000;

/** "host:port" (IPv6 in brackets) → its parts, or undefined. */
export function splitAddress(address: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}

export function joinAddress(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

export class GossipNode {
  readonly swim: Swim;
  readonly drops: DropCounts = { unsealed: 0, malformed: 0, replayed: 0 };
  private readonly epoch = randomBytes(8).toString("hex");
  private counter = 0;
  private readonly replay = new ReplayGuard();
  private readonly timers = new Set<NodeJS.Timeout>();
  private untold: DropCounts = { unsealed: 0, malformed: 0, replayed: 0 };
  private toldAt = 0;
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    readonly address: string,
    private readonly options: GossipNodeOptions,
  ) {
    this.swim = new Swim({
      name: options.name,
      address,
      ...(options.meta ? { meta: options.meta } : {}),
      ...(options.config ? { config: options.config } : {}),
      env: {
        now: () => performance.now(),
        after: (ms, fn) => {
          const t = setTimeout(() => {
            this.timers.delete(t);
            fn();
          }, ms);
          t.unref();
          this.timers.add(t);
          return () => {
            clearTimeout(t);
            this.timers.delete(t);
          };
        },
        send: (to, p) => this.send(to, p),
        random: Math.random,
      },
      ...(options.onChange ? { onChange: options.onChange } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
    socket.on("message", (msg, rinfo) => this.receive(msg, joinAddress(rinfo.address, rinfo.port)));
  }

  /** Listens, and starts gossiping (joining through `seeds`). */
  static async start(options: GossipNodeOptions): Promise<GossipNode> {
    const socket = createSocket({ type: isIPv6(options.host) ? "udp6" : "udp4" });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(options.port, options.host, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    socket.on("error", (err) => options.log?.(`gossip: socket error: ${err.message}`));
    const bound = socket.address();
    let node: GossipNode;
    try {
      node = new GossipNode(socket, options.advertise ?? joinAddress(options.advertiseHost ?? options.host, bound.port), options);
    } catch (err) {
      socket.close(); // refused (its meta, say): nothing is left open
      throw err;
    }
    node.swim.start(options.seeds ?? []);
    return node;
  }

  get port(): number {
    return this.socket.address().port;
  }

  /** Says this member is leaving, gives the news a moment to go out, and stops. */
  async leave(ms = 500): Promise<void> {
    this.swim.leave();
    await new Promise((r) => setTimeout(r, ms));
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.swim.stop();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.socket.close();
  }

  private send(to: string, p: Packet): void {
    if (this.closed) return;
    const where = splitAddress(to);
    if (!where) return;
    const sealed = this.options.keyring.seal(codec.pack([this.epoch, this.counter++, p]));
    this.socket.send(sealed, where.port, where.host, (err) => {
      if (err) this.sendFailed(to, err);
    });
  }

  private receive(msg: Buffer, from: string): void {
    if (this.closed) return;
    const plain = this.options.keyring.open(msg);
    if (!plain) {
      this.options.onUnsealed?.();
      return this.drop("unsealed", from);
    }
    let packet: Packet;
    let epoch: unknown;
    let counter: unknown;
    try {
      const decoded: unknown = codec.unpack(plain);
      if (!Array.isArray(decoded) || decoded.length !== 3) throw new Error("not [epoch, counter, packet]");
      [epoch, counter] = decoded;
      if (typeof epoch !== "string" || epoch.length > 32 || typeof counter !== "number" || !Number.isSafeInteger(counter) || counter < 0) throw new Error("bad epoch or counter");
      packet = parsePacket(decoded[2]);
    } catch {
      return this.drop("malformed", from);
    }
    if (!this.replay.accept(packet.f, epoch as string, counter as number)) return this.drop("replayed", from);
    try {
      this.swim.receive(from, packet);
    } catch (err) {
      // Never out of the socket's handler (it would end the process): said, and the packet dropped.
      this.options.log?.(`gossip: a packet from ${from} could not be taken in: ${(err as Error).message}`);
    }
  }

  private sendFailedAt = 0;
  /** A packet that could not be sent: said at most every 10 s. */
  private sendFailed(to: string, err: Error): void {
    const now = Date.now();
    if (now - this.sendFailedAt < LOG_EVERY_MS) return;
    this.sendFailedAt = now;
    this.options.log?.(`gossip: a packet to ${to} could not be sent: ${err.message}`);
  }

  private drop(why: keyof DropCounts, from: string): void {
    this.drops[why]++;
    this.untold[why]++;
    const now = Date.now();
    if (now - this.toldAt < LOG_EVERY_MS) return;
    this.toldAt = now;
    const u = this.untold;
    const parts = [
      u.unsealed ? `${u.unsealed} that do not open with the cluster key` : "",
      u.malformed ? `${u.malformed} that are not gossip packets` : "",
      u.replayed ? `${u.replayed} replayed` : "",
    ].filter(Boolean);
    this.options.log?.(`gossip: dropped packets (the last from ${from}): ${parts.join(", ")}`);
    this.untold = { unsealed: 0, malformed: 0, replayed: 0 };
  }
}
