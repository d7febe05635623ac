/**
 * The cluster key that seals every gossip packet (AES-256-GCM), and a keyring for rotating it
 * (memberlist's: install a new key everywhere, make it the one used, then remove the old one).
 * A packet: version (1 byte) · key id (4 bytes: the first of the key's SHA-256) · nonce (12) ·
 * ciphertext · tag (16); the version and key id are authenticated too. Anything that does not
 * open with a key of the ring is dropped by the caller.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";

const VERSION = 1;
const HEADER = 1 + 4;
const NONCE = 12;
const TAG = 16;
/** Bytes sealing adds to a packet. */
export const SEAL_OVERHEAD = HEADER + NONCE + TAG;

export class GossipKeyError extends Error {
  override readonly name = "GossipKeyError";
  readonly code = "GOSSIP_BAD_KEY";
}

/** A new random cluster key, as stored and shown: base64 of 32 bytes. */
export function newGossipKey(): string {
  return randomBytes(32).toString("base64");
}

function decodeKey(key: string): Buffer {
  const raw = Buffer.from(key, "base64");
  if (raw.length !== 32 || raw.toString("base64") !== key) throw new GossipKeyError("a gossip key is 32 bytes in base64 (44 characters), as init makes it");
  return raw;
}

function keyId(raw: Buffer): Buffer {
  return createHash("sha256").update(raw).digest().subarray(0, 4);
}

/** A key's id as shown (8 hex digits: the first 4 bytes of its SHA-256, as in every packet). */
export function gossipKeyId(key: string): string {
  return keyId(decodeKey(key)).toString("hex");
}

/** Refuses a key that is not one (32 bytes in base64): a clear GossipKeyError. */
export function checkGossipKey(key: string): string {
  decodeKey(key);
  return key;
}

export class Keyring {
  private readonly keys = new Map<string, Buffer>();
  private primary: { id: Buffer; key: Buffer };

  /** `primary` seals; it and `others` open. */
  constructor(primary: string, others: string[] = []) {
    const raw = decodeKey(primary);
    this.primary = { id: keyId(raw), key: raw };
    this.keys.set(this.primary.id.toString("hex"), raw);
    for (const k of others) this.install(k);
  }

  /** Opens packets sealed with `key` from now on. */
  install(key: string): void {
    const raw = decodeKey(key);
    this.keys.set(keyId(raw).toString("hex"), raw);
  }

  /** Seals with `key` from now on (installed if it was not). */
  use(key: string): void {
    this.install(key);
    const raw = decodeKey(key);
    this.primary = { id: keyId(raw), key: raw };
  }

  /** Opens no more packets sealed with `key` (not the one in use). */
  remove(key: string): void {
    const id = keyId(decodeKey(key));
    if (id.equals(this.primary.id)) throw new GossipKeyError("the key in use cannot be removed: use another first");
    this.keys.delete(id.toString("hex"));
  }

  /** Exactly these keys from now on: `primary` seals, it and `others` open (a keyring's new version). */
  set(primary: string, others: string[]): void {
    const next = new Keyring(primary, others);
    this.keys.clear();
    for (const [id, key] of next.keys) this.keys.set(id, key);
    this.primary = next.primary;
  }

  /** How many keys open packets. */
  get size(): number {
    return this.keys.size;
  }

  seal(plaintext: Buffer): Buffer {
    const header = Buffer.alloc(HEADER);
    header[0] = VERSION;
    this.primary.id.copy(header, 1);
    const nonce = randomBytes(NONCE);
    const cipher = createCipheriv("aes-256-gcm", this.primary.key, nonce);
    cipher.setAAD(header);
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([header, nonce, body, cipher.getAuthTag()]);
  }

  /** The plaintext of a sealed packet, or undefined if it is not one this ring can open (whatever the bytes). */
  open(packet: Buffer): Buffer | undefined {
    if (packet.length < SEAL_OVERHEAD || packet[0] !== VERSION) return undefined;
    const key = this.keys.get(packet.subarray(1, HEADER).toString("hex"));
    if (!key) return undefined;
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, packet.subarray(HEADER, HEADER + NONCE));
      decipher.setAAD(packet.subarray(0, HEADER));
      decipher.setAuthTag(packet.subarray(packet.length - TAG));
      return Buffer.concat([decipher.update(packet.subarray(HEADER + NONCE, packet.length - TAG)), decipher.final()]);
    } catch {
      return undefined; // forged, altered or truncated
    }
  }
}
