/**
 * `constellation completion bash|zsh`: shell completion made from the CLI's own command tree
 * (commands, their flags, and star names from `constellation list -q` where a command takes
 * them), so it never goes stale. zsh uses the same function through bashcompinit.
 */
import { type Command, InvalidArgumentError as CommanderArgError } from "commander";

interface Node {
  path: string;
  words: string[];
  /** Star names it takes: 0 none, 1 one (<name>), 2 several ([names...]). */
  starNames: 0 | 1 | 2;
}

/** Every command path ("" for the top) with what may follow it, and the flags that take a value. */
function walk(cmd: Command, path: string, out: Node[], valued: Set<string>): void {
  const flags: string[] = [];
  for (const o of cmd.options) {
    if (o.hidden) continue;
    for (const f of [o.long, o.short]) if (f) flags.push(f);
    if (o.required || o.optional) for (const f of [o.long, o.short]) if (f) valued.add(f);
  }
  const subs = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
  const names = subs.flatMap((c) => [c.name(), ...c.aliases()]);
  const args = cmd.registeredArguments.map((a) => a.name());
  out.push({ path, words: [...names, ...flags, "--help"], starNames: args.includes("names") ? 2 : args.includes("name") ? 1 : 0 });
  for (const c of subs) for (const n of [c.name(), ...c.aliases()]) walk(c, path ? `${path} ${n}` : n, out, valued);
}

export function bashCompletion(program: Command): string {
  const nodes: Node[] = [];
  const valued = new Set<string>();
  walk(program, "", nodes, valued);
  const cases = nodes.map((n) => `    "${n.path}") words="${n.words.join(" ")}"; names=${n.starNames} ;;`).join("\n");
  const paths = nodes.map((n) => n.path).filter(Boolean);
  return `# constellation completion for bash; add to ~/.bashrc:  source <(constellation completion bash)
_constellation() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" path="" w i words="" names=0 given=0
  local -a conn=()
  local valued=" ${[...valued].sort().join(" ")} "
  local paths="|${paths.join("|")}|"
  # A flag's value: a file or directory name, as the shell would.
  if [[ "$valued" == *" $prev "* ]]; then COMPREPLY=($(compgen -f -- "$cur")); return; fi
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ "$w" == "--" ]] && { COMPREPLY=($(compgen -c -- "$cur")); return; }
    if [[ "$w" == -* ]]; then
      # The connection typed on the line is the one to ask for names.
      case "$w" in --data|--endpoint|--token) conn+=("$w" "\${COMP_WORDS[i+1]}") ;; esac
      [[ "$valued" == *" $w "* ]] && ((i++))
      continue
    fi
    if [[ "$paths" == *"|\${path:+$path }$w|"* ]]; then path="\${path:+$path }$w"; else given=$((given + 1)); fi
  done
  case "$path" in
${cases}
  esac
  if [[ "$cur" != -* ]] && { [[ $names == 2 ]] || [[ $names == 1 && $given == 0 ]]; }; then
    words="$words $(constellation "\${conn[@]}" list -q 2>/dev/null)"
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _constellation constellation
`;
}

export function zshCompletion(program: Command): string {
  return `#compdef constellation
# constellation completion for zsh; add to ~/.zshrc:  source <(constellation completion zsh)
autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(program).split("\n").slice(1).join("\n")}`;
}

export function registerCompletion(program: Command): void {
  program
    .command("completion")
    .description("print shell completion for bash or zsh (commands, flags, star names)")
    .argument("<shell>", "bash or zsh", (v: string) => {
      if (v !== "bash" && v !== "zsh") throw new CommanderArgError(`the shell is bash or zsh, got "${v}"`);
      return v;
    })
    .addHelpText("after", "\nExamples:\n  $ source <(constellation completion bash)     # in ~/.bashrc\n  $ source <(constellation completion zsh)      # in ~/.zshrc")
    .action((shell: string) => {
      process.stdout.write(shell === "bash" ? bashCompletion(program) : zshCompletion(program));
    });
}
