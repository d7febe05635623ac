/**
 * Artifacts in the store (model/artifact.ts): uploaded a chunk at a time, then committed — the
 * chunks read back, their SHA-256 checked against the id, and only then the record written that
 * makes the artifact exist. Read back whole (or a chunk at a time) by the nodes that run it.
 */
import { createHash } from "node:crypto";
import { ARTIFACT_CHUNK_BYTES, MAX_ARTIFACT_BYTES, MAX_ARTIFACT_CHUNKS, type ArtifactRecord, artifactChunkKey, artifactKey } from "../model/artifact.js";
import { InvalidArgumentError, NoSuchArtifactError } from "../model/errors.js";
import type { Store } from "../store/types.js";

const HEX = /^[0-9a-f]{64}$/;

function checkHex(hex: string): void {
  if (!HEX.test(hex)) throw new InvalidArgumentError("id", `an artifact's id is the SHA-256 of its bytes: 64 lowercase hex digits, got ${JSON.stringify(hex.slice(0, 80))}`);
}

export class Artifacts {
  constructor(private readonly store: Store) {}

  /** The artifact's record, if it exists (all its chunks there and checked). */
  async get(hex: string): Promise<ArtifactRecord | undefined> {
    checkHex(hex);
    const kv = await this.store.get(artifactKey(hex));
    return kv ? (JSON.parse(kv.value) as ArtifactRecord) : undefined;
  }

  /** Stores chunk `i` of artifact `hex` (again is harmless: the same bytes, or they are checked at commit). */
  async putChunk(hex: string, i: number, data: Buffer): Promise<void> {
    checkHex(hex);
    if (!Number.isInteger(i) || i < 0 || i >= MAX_ARTIFACT_CHUNKS) throw new InvalidArgumentError("index", `a chunk's index is 0 to ${MAX_ARTIFACT_CHUNKS - 1} (artifacts are at most ${MAX_ARTIFACT_BYTES / 2 ** 20} MiB), got ${i}`);
    if (data.length === 0 || data.length > ARTIFACT_CHUNK_BYTES) throw new InvalidArgumentError("data", `a chunk is 1 to ${ARTIFACT_CHUNK_BYTES} bytes, got ${data.length}`);
    if (await this.get(hex)) return; // stored already: nothing to add
    await this.store.put(artifactChunkKey(hex, i), data.toString("base64"));
  }

  /**
   * Makes artifact `hex` exist once its `chunks` chunks (`size` bytes in all) are stored and hash
   * to it; says which is missing or that the bytes are not the id's. Committing one that exists
   * is a no-op (the same code is stored once). True if this call made it.
   */
  async commit(hex: string, size: number, chunks: number): Promise<boolean> {
    checkHex(hex);
    if (!Number.isInteger(size) || size < 1 || size > MAX_ARTIFACT_BYTES) throw new InvalidArgumentError("size", `an artifact is 1 byte to ${MAX_ARTIFACT_BYTES / 2 ** 20} MiB, got ${size}`);
    if (chunks !== Math.ceil(size / ARTIFACT_CHUNK_BYTES)) throw new InvalidArgumentError("chunks", `${size} bytes are ${Math.ceil(size / ARTIFACT_CHUNK_BYTES)} chunks of ${ARTIFACT_CHUNK_BYTES} bytes, not ${chunks}`);
    if (await this.get(hex)) return false;
    const hash = createHash("sha256");
    let got = 0;
    for (let i = 0; i < chunks; i++) {
      const kv = await this.store.get(artifactChunkKey(hex, i));
      if (!kv) throw new InvalidArgumentError("chunks", `chunk ${i} of ${chunks} is missing: upload it first (PUT /v1/artifacts/${hex}/chunks/${i})`);
      const data = Buffer.from(kv.value, "base64");
      got += data.length;
      hash.update(data);
    }
    const digest = hash.digest("hex");
    if (got !== size || digest !== hex) {
      // Not what the id says: the chunks are dropped (they are upload garbage), nothing exists.
      await this.store.delete({ prefix: `${artifactKey(hex)}/` });
      throw new InvalidArgumentError("id", `the uploaded bytes (${got} bytes, sha256 ${digest}) are not artifact ${hex} (${size} bytes): upload them again`);
    }
    const record: ArtifactRecord = { size, chunks, createdAt: Date.now() };
    const res = await this.store.txn({ compare: [{ key: artifactKey(hex), target: "createRevision", op: "=", value: 0 }], success: [{ type: "put", key: artifactKey(hex), value: JSON.stringify(record) }] });
    return res.succeeded;
  }

  /** Chunk `i` of an existing artifact. */
  async chunk(hex: string, i: number): Promise<Buffer> {
    const a = await this.get(hex);
    if (!a) throw new NoSuchArtifactError(hex);
    if (!Number.isInteger(i) || i < 0 || i >= a.chunks) throw new InvalidArgumentError("index", `artifact ${hex} has chunks 0 to ${a.chunks - 1}, not ${i}`);
    const kv = await this.store.get(artifactChunkKey(hex, i));
    if (!kv) throw new NoSuchArtifactError(hex);
    return Buffer.from(kv.value, "base64");
  }
}
