/**
 * Artifacts (issue 13, "code without images"): a star's bundled code, stored in the cluster by
 * the SHA-256 of its bytes — the same code is stored once, a rollback finds its old code by
 * its hash, and a node checks what it fetched against it. In the store (so every controller
 * of an HA cluster has it): the bytes in chunks under `/artifacts/<hex>/<index>`, and once they
 * are all there and their hash checked, `/artifacts/<hex>` (ArtifactRecord) — an artifact
 * exists only once that is written.
 */
import { KEYS } from "./records.js";

/** Bytes of one chunk (base64 in a JSON body and a store value: well under both limits). */
export const ARTIFACT_CHUNK_BYTES = 256 * 1024;
/** The largest artifact: a bundle bigger than this is not a script's. */
export const MAX_ARTIFACT_BYTES = 64 * 1024 * 1024;
export const MAX_ARTIFACT_CHUNKS = MAX_ARTIFACT_BYTES / ARTIFACT_CHUNK_BYTES;

/** An artifact's id as a spec names it: `sha256:<64 hex digits>`. */
export const ARTIFACT_ID = /^sha256:([0-9a-f]{64})$/;

/** Chunks one uploader may have uploaded and not committed at once (128 MiB). */
export const MAX_STAGED_CHUNKS = 512;

/** Who uploads: a namespace's token its namespace; a cluster admin this. */
export const CLUSTER_UPLOADER = "_cluster";

export interface ArtifactRecord {
  size: number;
  chunks: number;
  createdAt: number;
  /**
   * The namespaces that uploaded it (CLUSTER_UPLOADER: a cluster admin): only they see it and
   * may name it in a spec (a cluster admin: any). Code is known by its hash; who has the bytes
   * has it — another namespace uploads them to use it.
   */
  namespaces: string[];
}

export const artifactKey = (hex: string) => `${KEYS.artifacts}${hex}`;
export const artifactChunkKey = (hex: string, i: number) => `${KEYS.artifacts}${hex}/${String(i).padStart(4, "0")}`;
export const uploadPrefix = (uploader: string) => `${KEYS.artifactUploads}${uploader}/`;
export const uploadChunkKey = (uploader: string, hex: string, i: number) => `${uploadPrefix(uploader)}${hex}/${String(i).padStart(4, "0")}`;

/** The hex digest of an id (`sha256:…`), or undefined if it is not one. */
export function artifactHex(id: string): string | undefined {
  return ARTIFACT_ID.exec(id)?.[1];
}
