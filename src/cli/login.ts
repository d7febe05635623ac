/**
 * `constellation login URL --ca-fingerprint F --token T`: use a controller's HTTPS API from this
 * machine. The cluster's CA is pinned the way `join` pins it (Docker Swarm's join tokens carry
 * its digest): the CA the server presents is accepted only if its SHA-256 fingerprint is the
 * one the controller printed, and the server's certificate must be signed by it and be for the
 * address given. The token is tried before anything is written. `logout` forgets it.
 */
import { X509Certificate } from "node:crypto";
import { rmSync } from "node:fs";
import { connect as tlsConnect, type PeerCertificate } from "node:tls";
import { type Command, InvalidArgumentError as CommanderArgError } from "commander";
import { identityOf } from "../cluster/tls/identity.js";
import { InvalidArgumentError } from "../model/errors.js";
import { connect } from "../sdk/client.js";
import { loginFile, writeLogin } from "../sdk/login.js";
import { color } from "./output.js";

const FINGERPRINT = /^(?:sha256:)?([0-9a-f]{2}(?::?[0-9a-f]{2}){31})$/i;

const fingerprintArg = (v: string) => {
  const m = FINGERPRINT.exec(v.trim());
  if (!m) throw new CommanderArgError(`--ca-fingerprint takes the 64 hex digits the controller printed (constellation init shows it; sha256: and colons allowed), got "${v}"`);
  return m[1]!.replace(/:/g, "").toLowerCase();
};

const urlArg = (v: string) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new CommanderArgError(`the URL must look like https://10.0.0.10:7443 (the controller's "https" line), got "${v}"`);
  }
  if (u.protocol !== "https:") throw new CommanderArgError(`login takes the controller's HTTPS API (https://HOST:PORT), got "${v}"`);
  if (u.pathname !== "/" || u.search || u.hash || u.username || u.password) throw new CommanderArgError(`the URL is the API's root, https://HOST:PORT, got "${v}"`);
  return u.origin;
};

export function registerLogin(program: Command): void {
  program
    .command("login")
    .description("use a cluster's controller from this machine (its HTTPS API, the cluster CA pinned by its fingerprint)")
    .argument("<url>", "the controller's HTTPS API, as `constellation init` printed it (https://HOST:7443)", urlArg)
    .requiredOption("--ca-fingerprint <sha256>", "the cluster CA's SHA-256 fingerprint, as `constellation init` printed it", fingerprintArg)
    .addHelpText("after", `\nExamples:\n  $ constellation token --scope admin --ttl 30d      # on the controller\n  $ constellation login https://10.0.0.10:7443 --ca-fingerprint 3f0c…e1 --token T\n  $ constellation nodes                              # now from this machine\n`)
    .action(async (url: string, o: { caFingerprint: string }, cmd: Command) => {
      const token = cmd.optsWithGlobals<{ token?: string }>().token ?? process.env.CONSTELLATION_TOKEN;
      if (!token) cmd.error("error: login needs an API token: --token T (on the controller: constellation token --scope admin --ttl 30d)", { exitCode: 2 });
      const ca = await pinnedCa(url, o.caFingerprint);
      // The token, over a connection that trusts only that CA and checks the address.
      const c = connect({ endpoint: url, token: token!, ca });
      try {
        const s = await c.status().catch((err: Error & { status?: number }) => {
          if (err.status === 401) throw new InvalidArgumentError("token", `the controller refused this token (${err.message}): make one there (constellation token --scope admin --ttl 30d); nothing was saved`);
          throw err;
        });
        writeLogin({ endpoint: url, token: token!, ca, caFingerprint: o.caFingerprint, at: Date.now() });
        process.stdout.write(`${color.green("logged in")}  ${url}: ${s.nodes.length} node${s.nodes.length === 1 ? "" : "s"}, ${s.stars.total} star${s.stars.total === 1 ? "" : "s"} (saved in ${loginFile()})\n`);
      } finally {
        c.close();
      }
    });
  program
    .command("logout")
    .description("forget the login of `constellation login`")
    .action(() => {
      rmSync(loginFile(), { force: true });
      process.stdout.write(`logged out (${loginFile()} removed)\n`);
    });
}

/**
 * The CA (PEM) that `url` presents whose fingerprint is `fingerprint`, after checking that the
 * server's certificate is signed by it; a clear error otherwise.
 */
async function pinnedCa(url: string, fingerprint: string): Promise<string> {
  const { hostname, port } = new URL(url);
  const host = hostname.replace(/^\[|\]$/g, "");
  const chain = await new Promise<PeerCertificate[]>((resolve, reject) => {
    // Not trusted yet: the chain is read and checked below, and nothing is sent over it.
    const s = tlsConnect({ host, port: Number(port) || 443, rejectUnauthorized: false, minVersion: "TLSv1.2", ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }) });
    s.setTimeout(10_000, () => s.destroy(new Error("no TLS answer within 10 s")));
    s.once("secureConnect", () => {
      const out: PeerCertificate[] = [];
      let c = s.getPeerCertificate(true) as PeerCertificate & { issuerCertificate?: PeerCertificate };
      for (let i = 0; i < 8 && c?.raw && !out.some((x) => x.raw.equals(c.raw)); i++) {
        out.push(c);
        c = c.issuerCertificate as typeof c;
      }
      s.destroy();
      resolve(out);
    });
    s.once("error", (err: NodeJS.ErrnoException) => reject(new InvalidArgumentError("url", `cannot reach ${url} over TLS (${err.code ?? err.message}): is it the controller's "https" address, and is its port open from here?`)));
  });
  const certs = chain.map((c) => new X509Certificate(c.raw));
  const ca = certs.find((c) => c.fingerprint256.replace(/:/g, "").toLowerCase() === fingerprint);
  if (!ca) {
    const shown = certs.at(-1)?.fingerprint256.replace(/:/g, "").toLowerCase() ?? "none";
    throw new InvalidArgumentError("ca-fingerprint", `${url} does not present the CA ${fingerprint} (its chain ends in ${shown}): check the address, and the fingerprint on the controller (constellation init prints it); nothing was saved`);
  }
  if (!certs[0]!.verify(ca.publicKey) || !certs[0]!.checkIssued(ca)) {
    throw new InvalidArgumentError("url", `${url}'s certificate is not signed by the CA ${fingerprint}: nothing was saved`);
  }
  // A controller's certificate, not a node's: any node of the cluster holds one of this CA.
  if (identityOf(certs[0]!.raw)?.role !== "controller") {
    throw new InvalidArgumentError("url", `${url} presents a certificate of this cluster that is not a controller's (a node's?): log in to the controller's address; nothing was saved`);
  }
  return ca.toString();
}
