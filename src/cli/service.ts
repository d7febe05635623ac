/** `constellation service install|uninstall`: the node started at boot by systemd. */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Command, InvalidArgumentError as CommanderArgError } from "commander";
import { DAEMON_ENV, DAEMON_NODE_FLAGS, dataDirOf } from "../model/node-files.js";

export interface UnitOptions {
  /** The Node.js binary and the CLI script that ExecStart runs. */
  node: string;
  cli: string;
  dataDir: string;
  port?: number;
}

/** A word of ExecStart as systemd reads it: quoted when it holds a space, a quote or a backslash. */
function unitWord(w: string): string {
  // (% starts a specifier and $ a variable in ExecStart: both doubled.)
  const escaped = w.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (/^[A-Za-z0-9_@%+=:,./$-]+$/.test(w)) return escaped;
  return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/**
 * The node's systemd unit. `KillMode=process`: a stop or restart of the service ends the control
 * plane only; the stars go on (each has its own init and cgroups) and the next start takes them
 * back, as with Ctrl-C on `constellation up`.
 */
export function systemdUnit(o: UnitOptions): string {
  const exec = [o.node, ...DAEMON_NODE_FLAGS, o.cli, "up", "--data", o.dataDir, ...(o.port === undefined ? [] : ["--port", String(o.port)])];
  return `[Unit]
Description=Constellation node (control plane and agent)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=${exec.map(unitWord).join(" ")}
${Object.entries(DAEMON_ENV).map(([k, v]) => `Environment=${k}=${v}`).join("\n")}
Restart=on-failure
RestartSec=2s
# Stars outlive the control plane; a restart takes them back.
KillMode=process
LimitNOFILE=1048576
TimeoutStopSec=30s

[Install]
WantedBy=multi-user.target
`;
}

/** Is this machine booted with systemd (sd_booted(3): /run/systemd/system exists)? */
export function systemdRunning(): boolean {
  return existsSync("/run/systemd/system");
}

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

export function registerServiceCommands(program: Command): void {
  const service = program.command("service").description("start the node at boot (systemd)");
  const dataOf = (cmd: Command) => dataDirOf((cmd.optsWithGlobals() as { data?: string }).data);
  const nameArg = (v: string) => {
    if (!NAME.test(v)) throw new CommanderArgError(`--name takes a unit name of lower-case letters, digits and dashes, got "${v}"`);
    return v;
  };
  service
    .command("install")
    .description("write and enable a systemd unit that runs `constellation up` at boot (as root)")
    .option("--port <n>", "the API port (default: the last one used, else 7420)", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw new CommanderArgError(`--port takes a port from 1 to 65535, got "${v}"`);
      return n;
    })
    .option("--name <unit>", "the unit's name", nameArg, "constellation")
    .option("--unit-dir <dir>", "where the unit is written", "/etc/systemd/system")
    .option("--print", "print the unit and change nothing (for another init system, or to review it)")
    .addHelpText("after", "\nExamples:\n  $ sudo constellation service install\n  $ constellation service install --print\n  $ systemctl status constellation\n  $ journalctl -u constellation -f")
    .action((o: { port?: number; name: string; unitDir: string; print?: boolean }, cmd: Command) => {
      const dataDir = dataOf(cmd);
      const unit = systemdUnit({ node: process.execPath, cli: cliPath(), dataDir, ...(o.port === undefined ? {} : { port: o.port }) });
      if (o.print) {
        process.stdout.write(unit);
        return;
      }
      if (!systemdRunning()) {
        fail(
          "this machine is not running systemd (no /run/systemd/system): nothing was installed.\n" +
            "Start the node at boot with your init system instead, running:\n" +
            `  ${[process.execPath, cliPath(), "up", "--data", dataDir].join(" ")}\n` +
            "(an OpenRC or runit service, or a root crontab line starting with @reboot); `constellation service install --print` shows the systemd unit to adapt.",
        );
      }
      if (process.getuid?.() !== 0) fail("installing a systemd unit needs root: run it with sudo");
      const path = join(o.unitDir, `${o.name}.service`);
      const before = existsSync(path) ? readFileSync(path, "utf8") : undefined;
      mkdirSync(o.unitDir, { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      writeFileSync(tmp, unit, { mode: 0o644 });
      renameSync(tmp, path);
      systemctl(["daemon-reload"]);
      systemctl(["enable", "--now", `${o.name}.service`]);
      if (before !== undefined && before !== unit) systemctl(["restart", `${o.name}.service`]);
      process.stdout.write(`${before === undefined ? "installed" : before === unit ? "unchanged" : "updated"} ${path}: the node starts at boot (data ${dataDir})\n`);
      process.stdout.write(`  systemctl status ${o.name}     journalctl -u ${o.name} -f     constellation service uninstall\n`);
    });
  service
    .command("uninstall")
    .description("stop and remove the systemd unit (the stars go on; `constellation up` takes them back)")
    .option("--name <unit>", "the unit's name", nameArg, "constellation")
    .option("--unit-dir <dir>", "where the unit is", "/etc/systemd/system")
    .action((o: { name: string; unitDir: string }) => {
      const path = join(o.unitDir, `${o.name}.service`);
      if (!existsSync(path)) fail(`there is no ${path}: nothing to uninstall`);
      if (!systemdRunning()) fail("this machine is not running systemd (no /run/systemd/system): remove the unit file by hand");
      if (process.getuid?.() !== 0) fail("removing a systemd unit needs root: run it with sudo");
      systemctl(["disable", "--now", `${o.name}.service`]);
      rmSync(path);
      systemctl(["daemon-reload"]);
      process.stdout.write(`removed ${path}; the stars go on\n`);
    });
}

/** The CLI script this process runs (the one the unit should run). */
function cliPath(): string {
  return realpathSync(process.argv[1]!);
}

function systemctl(args: string[]): void {
  try {
    execFileSync("systemctl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
    fail(`systemctl ${args.join(" ")} failed: ${why}`);
  }
}

function fail(message: string): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}
