/**
 * The meshfarm command line. Each subcommand (bin/commands/) compiles its flags once (config.ts), calls the API
 * (shared/client/client.ts) or starts a service, and hands the result to the output layer. A user mistake is
 * one `error:` line (and, with --json, an {"error": {code, message}} object on stdout) and an exit code:
 * 0 ok, 1 a task failed, 2 bad input, 3 no mesh/coordinator, 4 protocol, 5 not found, 6 forbidden,
 * 7 unsafe file, 8 disk, 9 internal error (`meshfarm parallel` exits as GNU parallel does once its job ran).
 * Global options (--home) come before the command: what follows a command is that command's, which lets
 * `meshfarm parallel` take a user's command line whole. `buildProgram()` is the whole CLI, for tests and completion.
 */
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Argument, Command, CommanderError } from 'commander'
import { isMeshfarmError, errorMessage } from '../shared/util/errors.ts'
import { VERSION } from '../shared/util/version.ts'
import { cliContext } from './cli-context.ts'
import { meshCommands } from './commands/mesh.ts'
import { serviceCommands } from './commands/services.ts'
import { jobCommands } from './commands/jobs.ts'
import { dashboardCommands } from './commands/dashboard.ts'
import { parseWholeNumber } from '../shared/util/units.ts'
import { printJson } from './output.ts'
import { parallelCommand } from './commands/parallel.ts'
import { harvestCommands } from './commands/harvest.ts'
import { bridgeCommands } from './commands/bridge.ts'
import { bashCompletion, zshCompletion } from './completion.ts'
import { colourEnabled, colours } from './colour.ts'

/** A global option given after a command is refused by commander: say where it goes. */
function globalHint (text: string): string {
  return /unknown option '--home(=.*)?'/.test(text) ? ' (global options come before the command: meshfarm --home DIR COMMAND ...)' : ''
}

/** The whole command line program, every command registered; nothing runs until it parses. */
export function buildProgram (): Command {
  const program = new Command()
  program
    .name('meshfarm')
    .description('A peer-to-peer worker mesh for research labs: task farms and parameter sweeps over encrypted libp2p streams.')
    .version(VERSION)
    .option('--home <dir>', 'state folder (default: $MESHFARM_HOME or ~/.meshfarm)')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ outputError: (text, write) => { write(text.split('\n')[0] + globalHint(text) + '\n') } })

  const ctx = cliContext(program)
  meshCommands(ctx)
  serviceCommands(ctx)
  jobCommands(ctx)
  parallelCommand(ctx)
  dashboardCommands(ctx)
  harvestCommands(ctx)
  bridgeCommands(ctx)

  program.command('ping')
    .description('check that the coordinator answers')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const r = await ctx.withClient(async client => await client.ping())
      if (o.json === true) return printJson(r)
      console.log(`coordinator ${r.peerId} (meshfarm ${r.version}) answered in ${r.rttMs.toFixed(1)} ms`)
    })

  program.command('drain')
    .description('let an agent finish its tasks and take no new ones, then stop (needs admin)')
    .argument('<peer>', 'peer id, a unique part of it, or host name')
    .action(async (peer: string) => {
      await ctx.withClient(async client => { await client.drain(peer) })
      console.log(`draining ${peer}`)
    })

  program.command('demo')
    .description('start a coordinator and two agents on loopback, run a 50-task sweep, show the results, stop')
    .option('--tasks <n>', 'sweep size', '50')
    .option('--keep', 'leave the demo folder in place')
    .action(async (o: { tasks: string, keep?: boolean }) => {
      const { runDemo } = await import('./demo.ts')
      process.exitCode = await runDemo({ tasks: parseWholeNumber(o.tasks, '--tasks', 1, 100_000), keep: o.keep === true })
    })

  program.command('completion')
    .description('print a shell completion script: source <(meshfarm completion bash), or save the zsh one as _meshfarm in $fpath')
    .addArgument(new Argument('<shell>', 'bash or zsh').choices(['bash', 'zsh']))
    .action((shell: string) => {
      process.stdout.write(shell === 'zsh' ? zshCompletion(program) : bashCompletion(program))
    })
  return program
}

/** The command's own words start after the global options; --json there asks for JSON errors (never inside `parallel`'s command). */
function wantsJson (argv: string[]): boolean {
  let i = 2
  while (i < argv.length && argv[i].startsWith('-')) i += argv[i] === '--home' ? 2 : 1
  return argv[i] !== 'parallel' && argv.slice(i).includes('--json')
}

/** Parses and runs one command line; a failure is one line on stderr (and JSON on stdout with --json) and an exit code. */
export async function main (argv: string[]): Promise<void> {
  // Everything meshfarm writes (keys, the database, results) is private to the user who runs it.
  process.umask(0o077)
  // A reader that stops early (`meshfarm parallel ... | head`) ends us quietly, as it would end parallel.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0); else throw err })
  const json = wantsJson(argv)
  try {
    await buildProgram().parseAsync(argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, with exit code 0; commander already printed its one line otherwise.
      process.exitCode = err.exitCode === 0 ? 0 : 2
      if (err.exitCode !== 0 && json) printJson({ error: { code: 'BAD_ARGUMENT', message: err.message.replace(/^error: /, '') } })
    } else {
      const code = isMeshfarmError(err) ? err.code : 'INTERNAL'
      const message = errorMessage(err)
      console.error(`${colours(colourEnabled(process.stderr, process.env)).red('error:')} ${message}`)
      if (json) printJson({ error: { code, message } })
      process.exitCode = isMeshfarmError(err) ? err.exitCode : 9
    }
  }
}

// Run as the entry (bin/meshfarm, node bin/meshfarm.ts), not when a test imports buildProgram.
if (process.argv[1] != null && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) await main(process.argv)
