/** The diagnostic commands by name (issue 10): each takes (configPath, json, args) and returns the exit status. */
import { checkCommand } from './check-command.js';
import { explainCommand } from './explain-command.js';
import { importCommand } from './import-command.js';
import { probeCommand } from './probe-command.js';

type Command = (configPath: string, json: boolean, args: readonly string[]) => Promise<number>;

export const DIAGNOSTIC_COMMANDS: Record<'check' | 'probe' | 'explain' | 'import', Command> = {
  check: checkCommand,
  probe: probeCommand,
  explain: explainCommand,
  import: importCommand,
};
