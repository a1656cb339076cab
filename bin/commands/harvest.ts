/**
 * The workstation owner's commands: `meshfarm lend [--until T] | --never | --policy default`, `meshfarm reclaim`,
 * `meshfarm status --here` (jobs.ts hands it here) and `meshfarm presence` (the per-user helper), all talking to
 * the local agent over its owner socket; and the flags `meshfarm agent` takes for harvesting and cgroups.
 */
import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { homePaths } from '../../shared/local/home.ts'
import type { ClientTarget, HereStatus } from '../../node/harvest/owner-control.ts'
import { formatDuration } from '../../node/harvest/format.ts'
import type { MachineSettings } from '../../node/harvest/agent-harvest.ts'
import { compileLend, compileMachine, compilePoll, compileSocketFlag, type MachineFlags } from '../harvest-config.ts'
import { printJson, table } from '../output.ts'
import { untilSignal, type CliContext } from '../cli-context.ts'

/** The harvest and cgroup flags of `meshfarm agent`. */
export function addMachineOptions (cmd: Command): Command {
  return cmd
    .option('--harvest', 'lend this desktop only while its owner is away (HTCondor\'s desktop policy), and give it back when they return')
    .option('--start-idle <duration>', 'with --harvest: idle time before tasks start (default 15m)')
    .option('--continue-idle <duration>', 'with --harvest: idle time before suspended tasks continue (default 5m)')
    .option('--keyboard-busy <duration>', 'with --harvest: input this recent means the owner is here (default 1m)')
    .option('--max-suspend <duration>', 'with --harvest: suspended this long, a task is vacated to run elsewhere (default 10m)')
    .option('--background-load <cores>', 'with --harvest: owner load (CPU not used by tasks) up to which tasks start (default 0.3)')
    .option('--high-load <cores>', 'with --harvest: owner load that, kept up for --high-load-for, means the owner is back (default 0.5)')
    .option('--high-load-for <duration>', 'with --harvest: see --high-load (default 2m)')
    .option('--input-devices', 'with --harvest, as root: also watch /dev/input for keyboard and mouse events')
    .option('--owner <user>', 'with --harvest, as root: the workstation\'s owner, who may use meshfarm lend and reclaim')
    .option('--owner-socket <path>', 'with --harvest: where lend and reclaim reach this agent (default: the state folder, or /run/meshfarm as root)')
    .option('--no-cgroups', 'no cgroup per task: memory capped by RLIMIT_DATA, CPU by nice, suspend by SIGSTOP of the process tree')
}

/** The agent's machine settings from its flags; one line naming the flag for a bad one. */
export function machineFromFlags (o: MachineFlags): MachineSettings {
  return compileMachine(o, process.env, { uid: process.getuid?.() ?? 0, passwd: () => readFileSync('/etc/passwd', 'utf8') })
}

function target (ctx: CliContext, socket: string | undefined): ClientTarget {
  const socketPath = compileSocketFlag(socket)
  return socketPath != null ? { socketPath } : { home: homePaths(ctx.home()).agentDir }
}

const clock = (ms: number): string => new Date(ms).toLocaleString('en-GB', { hour12: false })

/** `status --here` in words. Pure. */
export function formatHere (st: HereStatus, now: number): string {
  const h = st.harvest
  const lent = h.mode === 'lending' ? 'lent' : h.mode === 'owner' ? 'not lent' : h.mode
  const lines = [`this machine: ${lent}: ${h.reason}`]
  const facts = [
    `owner ${h.ownerPresent == null ? 'presence unknown' : h.ownerPresent ? 'present' : 'away'}`,
    h.idleSince != null ? `last input ${formatDuration(now - h.idleSince)} ago (${clock(h.idleSince)})` : null,
    h.lendingUntil != null ? `lent until ${clock(h.lendingUntil)}` : null,
    h.control !== 'default' ? `owner said: ${h.control === 'never' ? 'lend --never' : 'lend'}` : null
  ].filter((x): x is string => x != null)
  lines.push(`  ${facts.join('; ')}`)
  if (st.tasks.length === 0) lines.push('no tasks here')
  else {
    lines.push(table(['task', 'name', 'for', 'state', 'since'], st.tasks.map(t => [t.id, t.name, t.submitter, t.state, t.since != null ? `${formatDuration(now - t.since)}` : ''])))
  }
  lines.push('presence:', ...st.sources.map(s => `  ${s}`))
  return lines.join('\n')
}

function show (st: HereStatus, json: boolean | undefined): void {
  if (json === true) printJson(st)
  else console.log(formatHere(st, Date.now()))
}

/** `meshfarm status --here`. */
export async function statusHere (ctx: CliContext, o: { socket?: string, json?: boolean }): Promise<void> {
  const { hereStatus } = await import('../../node/harvest/owner-control.ts')
  show(await hereStatus(target(ctx, o.socket)), o.json)
}

export function harvestCommands (ctx: CliContext): void {
  const { program } = ctx
  program.command('lend')
    .description('lend this workstation to the mesh now, though you are here (its agent runs with --harvest)')
    .option('--until <time>', 'until then: 18:00, 2026-11-24T07:00 or 2h (default: until you say otherwise)')
    .option('--never', 'never lend it: running tasks are vacated to run elsewhere')
    .option('--policy <name>', 'default: back to lending only while you are away')
    .option('--socket <path>', 'the agent\'s owner socket (default: this state folder\'s, then /run/meshfarm)')
    .option('--json', 'machine-readable output')
    .action(async (o: { until?: string, never?: boolean, policy?: string, socket?: string, json?: boolean }) => {
      const cmd = compileLend(o, Date.now())
      const t = target(ctx, o.socket)
      const { lend, lendNever, policyDefault } = await import('../../node/harvest/owner-control.ts')
      const st = cmd.op === 'never' ? await lendNever(t) : cmd.op === 'default' ? await policyDefault(t) : await lend({ ...t, untilMs: cmd.untilMs, label: cmd.label })
      show(st, o.json)
    })

  program.command('reclaim')
    .description('take this workstation back now: its tasks are suspended at once (GPU tasks vacated)')
    .option('--socket <path>', 'the agent\'s owner socket (default: this state folder\'s, then /run/meshfarm)')
    .option('--json', 'machine-readable output')
    .action(async (o: { socket?: string, json?: boolean }) => {
      const { reclaim } = await import('../../node/harvest/owner-control.ts')
      show(await reclaim(target(ctx, o.socket)), o.json)
    })

  program.command('presence')
    .description('tell the local agent how long this desktop has been idle (run as the desktop user, e.g. from a systemd user unit)')
    .option('--socket <path>', 'the agent\'s owner socket (default: this state folder\'s, then /run/meshfarm)')
    .option('--poll <duration>', 'how often to ask the desktop (default 2s)')
    .action(async (o: { socket?: string, poll?: string }) => {
      const pollMs = compilePoll(o.poll)
      const t = target(ctx, o.socket)
      const stop = new AbortController()
      const { runPresenceHelper } = await import('../../node/harvest/presence-helper.ts')
      const done = runPresenceHelper({ ...t, pollMs, signal: stop.signal, log: line => { console.log(line) } })
      await untilSignal(async () => { stop.abort(); await done }, done)
    })
}
