/**
 * The meshfarm command line. Each subcommand (bin/commands/) compiles its flags once (config.ts), calls the API
 * (shared/client/client.ts) or starts a service, and hands the result to the output layer. A user mistake is
 * one `error:` line (and, with --json, an {"error": {code, message}} object on stdout) and an exit code:
 * 0 ok, 1 a task failed, 2 bad input, 3 no mesh/coordinator, 4 protocol, 5 not found, 6 forbidden,
 * 7 unsafe file, 8 disk, 9 internal error.
 */
import { Command, CommanderError } from 'commander'
import { isMeshfarmError, errorMessage } from '../shared/util/errors.ts'
import { VERSION } from '../shared/util/version.ts'
import { cliContext } from './cli-context.ts'
import { meshCommands } from './commands/mesh.ts'
import { serviceCommands } from './commands/services.ts'
import { jobCommands } from './commands/jobs.ts'
import { dashboardCommands } from './commands/dashboard.ts'
import { runDemo } from './demo.ts'
import { parseWholeNumber } from '../shared/util/units.ts'
import { printJson } from './output.ts'

// Everything meshfarm writes (keys, the database, results) is private to the user who runs it.
process.umask(0o077)

const program = new Command()
program
  .name('meshfarm')
  .description('A peer-to-peer worker mesh for research labs: task farms and parameter sweeps over encrypted libp2p streams.')
  .version(VERSION)
  .option('--home <dir>', 'state folder (default: $MESHFARM_HOME or ~/.meshfarm)')
  .exitOverride()
  .configureOutput({ outputError: (text, write) => { write(text.split('\n')[0] + '\n') } })

const ctx = cliContext(program)
meshCommands(ctx)
serviceCommands(ctx)
jobCommands(ctx)
dashboardCommands(ctx)

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
    process.exitCode = await runDemo({ tasks: parseWholeNumber(o.tasks, '--tasks', 1, 100_000), keep: o.keep === true })
  })

const wantsJson = process.argv.includes('--json')
try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here too, with exit code 0; commander already printed its one line otherwise.
    process.exitCode = err.exitCode === 0 ? 0 : 2
    if (err.exitCode !== 0 && wantsJson) printJson({ error: { code: 'BAD_ARGUMENT', message: err.message.replace(/^error: /, '') } })
  } else {
    const code = isMeshfarmError(err) ? err.code : 'INTERNAL'
    const message = errorMessage(err)
    console.error(`error: ${message}`)
    if (wantsJson) printJson({ error: { code, message } })
    process.exitCode = isMeshfarmError(err) ? err.exitCode : 9
  }
}
