/**
 * `--env-file FILE`: KEY=VALUE lines, as Docker's and dotenv's files are written. Blank lines and
 * `#` comments are skipped; `export ` before a key is allowed; a value may be quoted ("..." with
 * \n, \t, \" and \\ escapes, or '...' as it is). Anything else is an error naming the file and
 * the line, so nothing starts with half an environment.
 */
export class EnvFileError extends Error {}

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function parseEnvFile(text: string, file: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const body = line.startsWith("export ") ? line.slice(7).trimStart() : line;
    const eq = body.indexOf("=");
    const where = `${file}:${i + 1}`;
    if (eq <= 0) throw new EnvFileError(`${where}: not KEY=VALUE: ${JSON.stringify(raw.slice(0, 80))}`);
    const key = body.slice(0, eq).trim();
    if (!KEY.test(key)) throw new EnvFileError(`${where}: ${JSON.stringify(key.slice(0, 80))} is not a variable name (letters, digits and _, not starting with a digit)`);
    let value = body.slice(eq + 1).trim();
    const q = value[0];
    if (q === '"' || q === "'") {
      if (value.length < 2 || value.at(-1) !== q) throw new EnvFileError(`${where}: the value of ${key} opens a ${q === '"' ? "double" : "single"} quote it does not close`);
      value = value.slice(1, -1);
      if (q === '"') value = value.replace(/\\([nt"\\])/g, (_, c: string) => ({ n: "\n", t: "\t", '"': '"', "\\": "\\" })[c]!);
    } else {
      const hash = value.search(/\s#/);
      if (hash >= 0) value = value.slice(0, hash).trimEnd(); // a comment after an unquoted value
    }
    out[key] = value;
  }
  return out;
}
