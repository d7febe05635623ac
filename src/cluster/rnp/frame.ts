/**
 * RNP framing (docs/rnp.md): each frame is a 4-byte big-endian length, then that many bytes of
 * body. The decoder is a pure state machine over the bytes as they arrive: it never holds more
 * than one frame's worth beyond what it was given, refuses a length over its limit before
 * allocating anything for it, and a zero length (which no message encodes to) is an error too.
 */

/** Bytes of the length prefix. */
export const HEADER_BYTES = 4;
/** The largest frame body either side accepts unless both agree on less (1 MiB + room). */
export const DEFAULT_MAX_FRAME = 4 * 2 ** 20;

export class FrameError extends Error {
  constructor(
    message: string,
    readonly code: "frame-too-large" | "frame-empty",
  ) {
    super(message);
  }
}

/** A frame's bytes: its 4-byte length, then its body. */
export function encodeFrame(body: Uint8Array, maxFrame = DEFAULT_MAX_FRAME): Buffer {
  if (body.length === 0) throw new FrameError("an empty frame is not a message", "frame-empty");
  if (body.length > maxFrame) throw new FrameError(`a frame of ${body.length} bytes is over the limit of ${maxFrame}`, "frame-too-large");
  const out = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, HEADER_BYTES);
  return out;
}

/**
 * Cuts a byte stream into frame bodies. `push` takes whatever arrived (any split, any size) and
 * returns the bodies it completed; after an error the decoder is spent (the connection must be
 * closed: the stream can no longer be trusted to be in step).
 */
export class FrameDecoder {
  /** Chunks held that do not yet make a whole frame, and their total length. */
  private chunks: Buffer[] = [];
  private held = 0;
  /** The body length of the frame under way, once its header is whole. */
  private want = -1;
  private failed: FrameError | undefined;

  constructor(private readonly maxFrame = DEFAULT_MAX_FRAME) {}

  /** Bytes held for a frame not yet whole (at most HEADER_BYTES + maxFrame - 1). */
  get buffered(): number {
    return this.held;
  }

  push(chunk: Uint8Array): Buffer[] {
    if (this.failed) throw this.failed;
    if (chunk.length === 0) return [];
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.held += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.want < 0) {
        if (this.held < HEADER_BYTES) return out;
        const len = this.take(HEADER_BYTES).readUInt32BE(0);
        if (len === 0) throw this.fail(new FrameError("an empty frame is not a message", "frame-empty"));
        if (len > this.maxFrame) throw this.fail(new FrameError(`a frame of ${len} bytes is over the limit of ${this.maxFrame}`, "frame-too-large"));
        this.want = len;
      }
      if (this.held < this.want) return out;
      out.push(this.take(this.want));
      this.want = -1;
    }
  }

  private fail(err: FrameError): FrameError {
    this.failed = err;
    this.chunks = [];
    this.held = 0;
    return err;
  }

  /** The next `n` bytes held (n ≤ held), as one buffer (a view where they sit in one chunk). */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.held -= n;
    return out;
  }
}
