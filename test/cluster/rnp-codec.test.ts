/**
 * RNP's frames and messages (src/cluster/rnp/frame.ts, messages.ts), fuzzed: any split of a
 * stream of frames decodes to the same bodies; garbage and truncated input is refused with a
 * FrameError or ProtocolError, never another error, and never makes the decoder hold more than
 * one frame's worth; a length over the limit is refused before anything is allocated for it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Packr } from "msgpackr";
import { DEFAULT_MAX_FRAME, FrameDecoder, FrameError, HEADER_BYTES, encodeFrame } from "../../src/cluster/rnp/frame.js";
import { ERROR_CODES, type Message, ProtocolError, T, parseMessage, toWire } from "../../src/cluster/rnp/messages.js";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

/** Cuts `bytes` at the given points (any order, any repeats). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    parts.push(bytes.subarray(prev, c));
    prev = c;
  }
  return parts;
}

describe("RNP frames", () => {
  it("any split of a stream of frames gives back the same bodies, in order", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (bodies, cuts) => {
        const stream = Buffer.concat(bodies.map((b) => encodeFrame(b)));
        const d = new FrameDecoder();
        const out = split(stream, cuts).flatMap((p) => d.push(p));
        assert.deepEqual(out.map((b) => [...b]), bodies.map((b) => [...b]));
        assert.equal(d.buffered, 0);
      }),
      { numRuns: 300 },
    );
  });

  it("garbage is refused with a FrameError or cut into frames, never more held than a frame", () => {
    const max = 4096;
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 20 }), (chunks) => {
        const d = new FrameDecoder(max);
        for (const c of chunks) {
          try {
            for (const f of d.push(c)) assert.ok(f.length >= 1 && f.length <= max);
          } catch (err) {
            assert.ok(err instanceof FrameError, String(err));
            assert.throws(() => d.push(Buffer.from([1])), FrameError, "a decoder that failed stays failed");
            return;
          }
          assert.ok(d.buffered < HEADER_BYTES + max, `${d.buffered} bytes held`);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("a length over the limit, or of zero, is refused at its header, before its body arrives", () => {
    const d = new FrameDecoder();
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0xffff_ffff);
    assert.throws(() => d.push(header), (e: unknown) => e instanceof FrameError && e.code === "frame-too-large" && /over the limit of 4194304/.test(e.message));
    assert.equal(d.buffered, 0);
    assert.throws(() => new FrameDecoder().push(Buffer.alloc(4)), (e: unknown) => e instanceof FrameError && e.code === "frame-empty");
    assert.throws(() => encodeFrame(Buffer.alloc(DEFAULT_MAX_FRAME + 1)), FrameError);
    // a truncated frame is simply not yet whole
    const t = new FrameDecoder();
    assert.deepEqual(t.push(encodeFrame(Buffer.from("hello")).subarray(0, 7)), []);
    assert.equal(t.buffered, 3, "its header taken, 3 bytes of its body held");
  });
});

/**
 * A body: any JSON value but one with a "__proto__" key, which msgpackr renames on decode (so no
 * message can set an object's prototype: checked on its own below).
 */
const body = fc.jsonValue().filter((v) => !JSON.stringify(v).includes('"__proto__"'));

const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ t: fc.constant(T.hello), hello: fc.record({ versions: fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 }), node: fc.string({ maxLength: 20 }) }) }),
  fc.record({ t: fc.constant(T.request), id: fc.nat(), method: fc.constantFrom("status.report", "assignments.watch", "logs.follow"), body: body, stream: fc.boolean() }),
  fc.record({ t: fc.constant(T.response), id: fc.nat(), body: body }),
  fc.record({ t: fc.constant(T.error), id: fc.nat(), code: fc.constantFrom(...ERROR_CODES), message: fc.string({ maxLength: 100 }) }),
  fc.record({ t: fc.constant(T.item), id: fc.nat(), body: body }),
  fc.record({ t: fc.constantFrom(T.end, T.cancel), id: fc.nat() }),
  fc.record({ t: fc.constant(T.credit), id: fc.nat(), n: fc.integer({ min: 1, max: 65_536 }) }),
  fc.record({ t: fc.constantFrom(T.ping, T.pong), nonce: fc.nat() }),
) as fc.Arbitrary<Message>;

describe("RNP messages", () => {
  it("every message survives the wire: encode, frame, decode, parse", () => {
    fc.assert(
      fc.property(message, (m) => {
        const [body] = new FrameDecoder().push(encodeFrame(packr.pack(toWire(m))));
        const back = parseMessage(packr.unpack(body!));
        // null stands for an absent body on the wire
        const norm = (x: Message) => JSON.parse(JSON.stringify(x, (_k, v: unknown) => (v === undefined ? null : v === -0 ? 0 : v))) as unknown;
        assert.deepEqual(norm(back), norm(m));
      }),
      { numRuns: 500 },
    );
  });

  it("a body with a __proto__ key sets no object's prototype", () => {
    const m = { t: T.response, id: 1, body: JSON.parse('{"__proto__": {"polluted": 1}, "a": {"__proto__": {"polluted": 2}}}') as unknown } as Message;
    const [frame] = new FrameDecoder().push(encodeFrame(packr.pack(toWire(m))));
    const back = parseMessage(packr.unpack(frame!)) as { body: Record<string, unknown> };
    assert.equal(Object.getPrototypeOf(back.body), Object.prototype);
    assert.equal(Object.getPrototypeOf(back.body.a), Object.prototype);
    assert.equal(({} as { polluted?: number }).polluted, undefined);
  });

  it("any other value is a ProtocolError that says what was wrong, never another error", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.array(fc.anything(), { maxLength: 6 }), fc.tuple(fc.integer({ min: -1, max: 11 }), fc.anything(), fc.anything(), fc.anything())), (v) => {
        try {
          parseMessage(v);
        } catch (err) {
          assert.ok(err instanceof ProtocolError, String(err));
          assert.ok(err.message.length < 300, err.message);
        }
      }),
      { numRuns: 2000 },
    );
    assert.throws(() => parseMessage({}), /a message is an array beginning with its type, not a map/);
    assert.throws(() => parseMessage([42]), /unknown message type 42/);
    assert.throws(() => parseMessage([T.request, 1, "Bad Method", null]), /a request's method is a name/);
    assert.throws(() => parseMessage([T.credit, 1, 0]), /a credit is a whole number from 1 to 65536, not 0/);
    assert.throws(() => parseMessage([T.hello, { versions: [] }]), /lists the protocol versions/);
    assert.throws(() => parseMessage([T.response, -1, null]), /an id is a whole number/);
  });

  it("random bytes through the whole decoder: frames, then MessagePack, then the shapes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), (junk) => {
        const d = new FrameDecoder(1024);
        let bodies: Buffer[] = [];
        try {
          bodies = d.push(encodeFrame(junk));
        } catch (err) {
          assert.ok(err instanceof FrameError);
          return;
        }
        for (const b of bodies) {
          let v: unknown;
          try {
            v = packr.unpack(b);
          } catch {
            continue; // not MessagePack: the connection would close with a log line
          }
          try {
            parseMessage(v);
          } catch (err) {
            assert.ok(err instanceof ProtocolError, String(err));
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});
