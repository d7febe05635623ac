/**
 * Artifacts in the store (model/artifact.ts): uploaded a chunk at a time into the uploader's own
 * place, then committed — the chunks read back, their SHA-256 checked against the id, and only
 * then the artifact made (or, if it exists, the uploader added to those who have it). A
 * namespace sees and names only the code it uploaded itself; a cluster admin any.
 */
import { createHash } from "node:crypto";
import {
  ARTIFACT_CHUNK_BYTES,
  type ArtifactRecord,
  CLUSTER_UPLOADER,
  MAX_ARTIFACT_BYTES,
  MAX_ARTIFACT_CHUNKS,
  MAX_STAGED_CHUNKS,
  artifactChunkKey,
  artifactKey,
  uploadChunkKey,
  uploadPrefix,
} from "../model/artifact.js";
import { InvalidArgumentError, NoSuchArtifactError, TooManyError } from "../model/errors.js";
import type { Store } from "../store/types.js";

const HEX = /^[0-9a-f]{64}$/;

function checkHex(hex: string): void {
  if (!HEX.test(hex)) throw new InvalidArgumentError("id", `an artifact's id is the SHA-256 of its bytes: 64 lowercase hex digits, got ${JSON.stringify(hex.slice(0, 80))}`);
}

/** Who uploads or asks: a namespace, or a cluster admin (undefined). */
const uploaderOf = (namespace: string | undefined) => namespace ?? CLUSTER_UPLOADER;

export class Artifacts {
  constructor(private readonly store: Store) {}

  /** The artifact's record, if it exists and `namespace` may see it (undefined: a cluster admin, who sees all). */
  async get(hex: string, namespace?: string): Promise<ArtifactRecord | undefined> {
    checkHex(hex);
    const kv = await this.store.get(artifactKey(hex));
    const a = kv ? (JSON.parse(kv.value) as ArtifactRecord) : undefined;
    return a && (namespace === undefined || (a.namespaces ?? []).includes(namespace)) ? a : undefined;
  }

  /** Stores chunk `i` of artifact `hex` in the uploader's place (again: the later bytes; all are checked at commit). */
  async putChunk(hex: string, i: number, data: Buffer, namespace?: string): Promise<void> {
    checkHex(hex);
    if (!Number.isInteger(i) || i < 0 || i >= MAX_ARTIFACT_CHUNKS) throw new InvalidArgumentError("index", `a chunk's index is 0 to ${MAX_ARTIFACT_CHUNKS - 1} (artifacts are at most ${MAX_ARTIFACT_BYTES / 2 ** 20} MiB), got ${i}`);
    if (data.length === 0 || data.length > ARTIFACT_CHUNK_BYTES) throw new InvalidArgumentError("data", `a chunk is 1 to ${ARTIFACT_CHUNK_BYTES} bytes, got ${data.length}`);
    const who = uploaderOf(namespace);
    const { count } = await this.store.range({ prefix: uploadPrefix(who) }, { countOnly: true });
    if (count >= MAX_STAGED_CHUNKS) {
      throw new TooManyError(`${count} chunks are uploaded and not committed (at most ${MAX_STAGED_CHUNKS}): commit them (POST /v1/artifacts/ID) or upload less at once`);
    }
    await this.store.put(uploadChunkKey(who, hex, i), data.toString("base64"));
  }

  /**
   * Makes artifact `hex` from the uploader's `chunks` chunks (`size` bytes in all) once they hash
   * to it; says which is missing or that the bytes are not the id's (and drops the uploader's
   * chunks). An artifact that exists gains the uploader. True if this call made it.
   */
  async commit(hex: string, size: number, chunks: number, namespace?: string): Promise<boolean> {
    checkHex(hex);
    if (!Number.isInteger(size) || size < 1 || size > MAX_ARTIFACT_BYTES) throw new InvalidArgumentError("size", `an artifact is 1 byte to ${MAX_ARTIFACT_BYTES / 2 ** 20} MiB, got ${size}`);
    if (chunks !== Math.ceil(size / ARTIFACT_CHUNK_BYTES)) throw new InvalidArgumentError("chunks", `${size} bytes are ${Math.ceil(size / ARTIFACT_CHUNK_BYTES)} chunks of ${ARTIFACT_CHUNK_BYTES} bytes, not ${chunks}`);
    const who = uploaderOf(namespace);
    const staged = `${uploadPrefix(who)}${hex}/`;
    const there = await this.store.get(artifactKey(hex));
    if (there && ((JSON.parse(there.value) as ArtifactRecord).namespaces ?? []).includes(who)) {
      // The uploader has it already: nothing to check or add.
      await this.store.delete({ prefix: staged });
      return false;
    }
    const hash = createHash("sha256");
    const parts: string[] = [];
    let got = 0;
    for (let i = 0; i < chunks; i++) {
      const kv = await this.store.get(uploadChunkKey(who, hex, i));
      if (!kv) throw new InvalidArgumentError("chunks", `chunk ${i} of ${chunks} is missing: upload it first (PUT /v1/artifacts/${hex}/chunks/${i})`);
      const data = Buffer.from(kv.value, "base64");
      got += data.length;
      hash.update(data);
      parts.push(kv.value);
    }
    const digest = hash.digest("hex");
    if (got !== size || digest !== hex) {
      // Not what the id says: this uploader's chunks are dropped (no one else's), nothing exists.
      await this.store.delete({ prefix: staged });
      throw new InvalidArgumentError("id", `the uploaded bytes (${got} bytes, sha256 ${digest}) are not artifact ${hex} (${size} bytes): upload them again`);
    }
    let made = false;
    for (;;) {
      const kv = await this.store.get(artifactKey(hex));
      if (kv) {
        // There already (the same bytes: the same hash): the uploader has it too.
        const a = JSON.parse(kv.value) as ArtifactRecord;
        if ((a.namespaces ?? []).includes(who)) break;
        const res = await this.store.txn({
          compare: [{ key: kv.key, target: "modRevision", op: "=", value: kv.modRevision }],
          success: [{ type: "put", key: kv.key, value: JSON.stringify({ ...a, namespaces: [...(a.namespaces ?? []), who] }) }],
        });
        if (res.succeeded) break;
        continue;
      }
      // Its bytes first (a chunk at a time: a store request is bounded), then the record that makes it exist.
      for (let i = 0; i < chunks; i++) await this.store.put(artifactChunkKey(hex, i), parts[i]!);
      const record: ArtifactRecord = { size, chunks, createdAt: Date.now(), namespaces: [who] };
      const res = await this.store.txn({ compare: [{ key: artifactKey(hex), target: "createRevision", op: "=", value: 0 }], success: [{ type: "put", key: artifactKey(hex), value: JSON.stringify(record) }] });
      if (res.succeeded) {
        made = true;
        break;
      }
    }
    await this.store.delete({ prefix: staged });
    return made;
  }

  /** Chunk `i` of an existing artifact (for the nodes: any). */
  async chunk(hex: string, i: number): Promise<Buffer> {
    const a = await this.get(hex);
    if (!a) throw new NoSuchArtifactError(hex);
    if (!Number.isInteger(i) || i < 0 || i >= a.chunks) throw new InvalidArgumentError("index", `artifact ${hex} has chunks 0 to ${a.chunks - 1}, not ${i}`);
    const kv = await this.store.get(artifactChunkKey(hex, i));
    if (!kv) throw new NoSuchArtifactError(hex);
    return Buffer.from(kv.value, "base64");
  }
}
