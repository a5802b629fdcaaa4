import { Argument, Command, Option } from 'commander';
import { addGlobalOptions, type Runtime } from './support/input/context.ts';
import type { CommandResult, ProgramServices } from './support/flow/command.ts';

const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

interface CompletedCommand {
  name: string;
  description: string;
  options: { flags: string[]; description: string; choices?: readonly string[] }[];
}

export function completionCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>, program?: ProgramServices): Command {
  return new Command('completion')
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(SHELLS))
    .addHelpText(
      'after',
      [
        'Examples:',
        '  $ source <(overskill-storage completion bash)            # this bash session',
        '  $ overskill-storage completion bash > /etc/bash_completion.d/overskill-storage',
        '  $ overskill-storage completion zsh > "${fpath[1]}/_overskill-storage"',
        '  $ overskill-storage completion fish > ~/.config/fish/completions/overskill-storage.fish',
      ].join('\n'),
    )
    .action(async (shell: Shell) =>
      run(async () => {
        if (!program) throw new Error('internal: completion needs the program that lists the commands');
        const commands = await describeCommands(runtime, program);
        const globals = optionsOf(addGlobalOptions(new Command('overskill-storage')));
        const script = shell === 'bash' ? bashScript(commands, globals) : shell === 'zsh' ? zshScript(commands, globals) : fishScript(commands, globals);
        runtime.streams.stdout.write(script);
        return { exitCode: 0 };
      }),
    );
}

/** Every command with its own options, read from the commands themselves, so the completion never drifts from them. */
async function describeCommands(runtime: Runtime, program: ProgramServices): Promise<CompletedCommand[]> {
  const described: CompletedCommand[] = [];
  for (const entry of program.catalog) {
    const command = entry.name === 'completion' ? new Command('completion') : (await entry.load())(runtime, async () => undefined, program);
    described.push({ name: entry.name, description: entry.description, options: optionsOf(command) });
  }
  return described;
}

function optionsOf(command: Command): CompletedCommand['options'] {
  return (command.options as Option[]).map((option) => ({
    flags: [option.short, option.long].filter((flag): flag is string => Boolean(flag)),
    description: option.description,
    choices: option.argChoices,
  }));
}

/** The first clause of a description, with nothing a shell's quoting or a zsh spec could trip on. */
function short(text: string, max = 70): string {
  const clause = text.split(/(?<=[.;])\s|\s\(/)[0].replace(/[[\]'"`:$\\]/g, '').trim();
  return clause.length > max ? `${clause.slice(0, max - 1)}…` : clause;
}

function bashScript(commands: CompletedCommand[], globals: CompletedCommand['options']): string {
  const words = (options: CompletedCommand['options']) => options.flatMap((option) => option.flags).join(' ');
  const cases = commands.map((command) => `    ${command.name}) words="${words(command.options)} $globals" ;;`).join('\n');
  return `# overskill-storage completion for bash. Load it with:
#   source <(overskill-storage completion bash)
_overskill_storage() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" command="" word words
  local commands="${commands.map((command) => command.name).join(' ')}"
  local globals="${words(globals)}"
  for word in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    case " $commands " in *" $word "*) command="$word"; break ;; esac
  done
  case "$command" in
    "") words="$commands $globals" ;;
${cases}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _overskill_storage overskill-storage
`;
}

function zshScript(commands: CompletedCommand[], globals: CompletedCommand['options']): string {
  const specs = (options: CompletedCommand['options']) =>
    options.flatMap((option) => option.flags.map((flag) => `'${flag}[${short(option.description)}]${option.choices ? `:value:(${option.choices.join(' ')})` : ''}'`)).join(' \\\n        ');
  const cases = commands.map((command) => `    ${command.name})\n      _arguments -s \\\n        ${[specs(command.options), specs(globals)].filter(Boolean).join(' \\\n        ')} \\\n        '*:file:_files' ;;`).join('\n');
  return `#compdef overskill-storage
# overskill-storage completion for zsh: save as _overskill-storage in a directory of $fpath, then compinit.
_overskill_storage() {
  local -a commands
  commands=(
${commands.map((command) => `    '${command.name}:${short(command.description)}'`).join('\n')}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  case "\${words[2]}" in
${cases}
  esac
}
compdef _overskill_storage overskill-storage
`;
}

function fishScript(commands: CompletedCommand[], globals: CompletedCommand['options']): string {
  const flag = (text: string) => (text.startsWith('--') ? `-l ${text.slice(2)}` : `-s ${text.slice(1)}`);
  const lines = (options: CompletedCommand['options'], condition: string) =>
    options.flatMap((option) => option.flags.map((text) => `complete -c overskill-storage${condition} ${flag(text)} -d '${short(option.description)}'${option.choices ? ` -xa '${option.choices.join(' ')}'` : ''}`));
  return [
    '# overskill-storage completion for fish: save as ~/.config/fish/completions/overskill-storage.fish',
    ...commands.map((command) => `complete -c overskill-storage -f -n __fish_use_subcommand -a ${command.name} -d '${short(command.description)}'`),
    ...lines(globals, ''),
    ...commands.flatMap((command) => lines(command.options, ` -n '__fish_seen_subcommand_from ${command.name}'`)),
    '',
  ].join('\n');
}
