/**
 * What `constellation login URL --token T` keeps for this user: a controller's HTTPS API, the
 * token to use there, and the cluster's CA pinned at login (the only CA that API's certificate
 * may come from). The CLI and SDK use it when no constellation runs from this machine's data dir.
 */
import { X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { InvalidArgumentError } from "../model/errors.js";

export interface Login {
  /** https://HOST:PORT */
  endpoint: string;
  token: string;
  /** The cluster CA's certificate (PEM). */
  ca: string;
  /** The CA's SHA-256 fingerprint (hex), as checked at login. */
  caFingerprint: string;
  /** When this login was made (ms). */
  at: number;
}

/** $CONSTELLATION_LOGIN, else $XDG_CONFIG_HOME/constellation/login.json, else ~/.config/constellation/login.json. */
export function loginFile(): string {
  if (process.env.CONSTELLATION_LOGIN) return process.env.CONSTELLATION_LOGIN;
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), ".config"), "constellation", "login.json");
}

/** This user's login, if there is one; a file that is not one is a clear error. */
export function readLogin(file = loginFile()): Login | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new InvalidArgumentError("login", `${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): fix or remove it, or point CONSTELLATION_LOGIN elsewhere`);
  }
  let l: Partial<Login>;
  try {
    l = JSON.parse(text) as Partial<Login>;
  } catch {
    throw new InvalidArgumentError("login", `${file} is not a login (not JSON): run constellation login again, or remove it`);
  }
  const ok =
    typeof l === "object" &&
    l !== null &&
    typeof l.endpoint === "string" &&
    l.endpoint.startsWith("https://") &&
    typeof l.token === "string" &&
    /^[\x21-\x7e]{1,512}$/.test(l.token) &&
    typeof l.ca === "string" &&
    l.ca.includes("BEGIN CERTIFICATE");
  if (!ok) throw new InvalidArgumentError("login", `${file} is not a login (endpoint, token and ca are missing or wrong): run constellation login again, or remove it`);
  try {
    new X509Certificate(l.ca!);
  } catch {
    throw new InvalidArgumentError("login", `${file} holds a CA that is not a certificate (damaged): run constellation login again`);
  }
  return l as Login;
}

/** Keeps `login` for this user (0600, written whole). */
export function writeLogin(login: Login, file = loginFile()): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}
