/**
 * Code without images (issue 13): a script is bundled where the caller runs — its imports from
 * its own folder and node_modules, into one ES module — and uploaded to the cluster under the
 * SHA-256 of the bundle (once: code the cluster has is not sent again). The spec then names the
 * script (as given) and the artifact; every node fetches it by that hash and checks it.
 */
import { createHash } from "node:crypto";
import { ARTIFACT_CHUNK_BYTES } from "../model/artifact.js";
import { InvalidArgumentError } from "../model/errors.js";
import type { Plugin } from "esbuild";
import type { Transport } from "./http.js";

/** Where a bundle failed: the file and line of its first error, and what it says. */
export class BundleError extends Error {
  constructor(
    readonly where: string,
    readonly text: string,
  ) {
    super(`${where}: ${text}`);
  }
}

/**
 * `entry` (an absolute path) and what it imports, bundled into one ES module for Node (a source
 * map inline); `options` add esbuild plugins and a banner. Throws BundleError.
 */
export async function bundle(entry: string, options: { plugins?: Plugin[]; banner?: string } = {}): Promise<Uint8Array> {
  const esbuild = await import("esbuild");
  try {
    const out = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      write: false,
      platform: "node",
      format: "esm",
      target: "node20",
      sourcemap: "inline",
      logLevel: "silent",
      ...(options.plugins ? { plugins: options.plugins } : {}),
      ...(options.banner ? { banner: { js: options.banner } } : {}),
    });
    return out.outputFiles[0]!.contents;
  } catch (err) {
    const e = (err as { errors?: Array<{ text: string; location?: { file: string; line: number; column: number } | null }> }).errors?.[0];
    throw new BundleError(e?.location ? `${entry}:${e.location.line}:${e.location.column}` : entry, e?.text ?? (err as Error).message);
  }
}

/**
 * The bundle of `script` (an absolute path), or a clear error naming the file and line. The
 * node runs it as it is (never bundled again there): CommonJS packages in it get a require().
 */
export async function bundleScript(script: string): Promise<Uint8Array> {
  try {
    return await bundle(script, { banner: "import { createRequire as __constellationRequire } from 'node:module'; const require = __constellationRequire(import.meta.url);" });
  } catch (err) {
    if (!(err instanceof BundleError)) throw err;
    throw new InvalidArgumentError("script", `script ${script} cannot be bundled: ${err.where}: ${err.text}`);
  }
}

/** Uploads `bytes` unless the cluster has them; returns their id (`sha256:<hex>`). */
export async function uploadArtifact(http: Transport, bytes: Uint8Array): Promise<string> {
  const hex = createHash("sha256").update(bytes).digest("hex");
  const have = await http.request("GET", `/v1/artifacts/${hex}`).then(
    () => true,
    (err: { code?: string }) => (err.code === "ARTIFACT_NOT_FOUND" ? false : Promise.reject(err)),
  );
  if (!have) {
    const chunks = Math.ceil(bytes.length / ARTIFACT_CHUNK_BYTES);
    for (let i = 0; i < chunks; i++) {
      const data = Buffer.from(bytes.buffer, bytes.byteOffset + i * ARTIFACT_CHUNK_BYTES, Math.min(ARTIFACT_CHUNK_BYTES, bytes.length - i * ARTIFACT_CHUNK_BYTES)).toString("base64");
      await http.request("PUT", `/v1/artifacts/${hex}/chunks/${i}`, { data });
    }
    await http.request("POST", `/v1/artifacts/${hex}`, { size: bytes.length, chunks });
  }
  return `sha256:${hex}`;
}

/** A spec whose script (an absolute path) is bundled and uploaded: the script and its artifact. */
export async function packaged<T extends { script?: string | undefined }>(http: Transport, spec: T): Promise<T & { artifact?: string }> {
  if (spec.script === undefined) return spec;
  return { ...spec, artifact: await uploadArtifact(http, await bundleScript(spec.script)) };
}
