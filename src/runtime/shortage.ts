/**
 * The node's own shortage behind an error (issue 9): files, memory, disk or processes of the
 * node ran out, which is not the star's failure — its start is put off and tried again. Found by
 * errno anywhere in the error's causes, or by the C library's words in a message the launcher
 * passed on (it reports strerror text, not codes). Node's recursive mkdir reports a full disk's
 * ENOSPC as ENOENT, so the runtime makes star directories without it.
 */
const CODES = new Set(["EMFILE", "ENFILE", "ENOMEM", "EAGAIN", "ENOSPC", "EDQUOT"]);
const WORDS: Array<[RegExp, string]> = [
  [/No space left on device/, "ENOSPC"],
  [/Disk quota exceeded/, "EDQUOT"],
  [/Too many open files in system/, "ENFILE"],
  [/Too many open files/, "EMFILE"],
  [/Cannot allocate memory/, "ENOMEM"],
];

export function nodeShortage(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === "string" && CODES.has(e.code)) return e.code;
    if (typeof e.message === "string") for (const [re, code] of WORDS) if (re.test(e.message)) return code;
  }
  return undefined;
}
