/**
 * `meshfarm agent --install-service` / `--uninstall-service`: a systemd unit so a workstation keeps its agent
 * across reboots. As an ordinary user: a user unit in ~/.config/systemd/user, enabled with `systemctl --user`,
 * plus `loginctl enable-linger` so it starts at boot without a login. As root: a system unit in
 * /etc/systemd/system with `User=` (the agent refuses to run tasks as root), from --service-user or SUDO_USER.
 * Where systemd is not running (a container, WSL without systemd) the unit is still written and the reply says
 * how to start the agent instead. renderAgentUnit and planService are pure; applyServicePlan does the I/O under
 * a root folder the tests point at a temporary one, with the commands run through a function they record.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { MeshfarmError } from '../shared/util/errors.ts'

export const UNIT_NAME = 'meshfarm-agent.service'

export interface UnitOptions {
  mode: 'user' | 'system'
  /** bin/meshfarm (the wrapper that finds Node 24), absolute. */
  executable: string
  /** The agent's flags (--cores 8, --label gpu=a100, ...) as the user gave them. */
  agentArgs: string[]
  /** MESHFARM_HOME for the agent, absolute. */
  home: string
  /** system mode: the account the agent runs as. */
  user?: string
}

/** One word of ExecStart (or Environment=, where $ is plain) as systemd reads it: % and $ doubled, quoted when it has spaces, quotes or backslashes. */
export function systemdWord (word: string, dollars = true): string {
  const escaped = dollars ? word.replaceAll('%', '%%').replaceAll('$', '$$$$') : word.replaceAll('%', '%%')
  if (escaped !== '' && !/[\s"'\\;]/.test(escaped)) return escaped
  return `"${escaped.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`
}

export function renderAgentUnit (o: UnitOptions): string {
  if (!o.executable.startsWith('/')) throw new MeshfarmError('BAD_ARGUMENT', `service: the meshfarm executable must be an absolute path, got ${JSON.stringify(o.executable)}`)
  if (o.mode === 'system' && (o.user == null || o.user === '' || o.user === 'root')) {
    throw new MeshfarmError('BAD_ARGUMENT', 'service: a system unit needs --service-user NAME, an ordinary account (an agent as root would run every task as root)')
  }
  const exec = [o.executable, 'agent', ...o.agentArgs].map(w => systemdWord(w)).join(' ')
  return [
    '# Written by `meshfarm agent --install-service`; remove with `meshfarm agent --uninstall-service`.',
    '[Unit]',
    'Description=meshfarm agent: lends this machine to the mesh',
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    // The agent puts each task in a cgroup of its own under the unit's, with the task's limits (cgroup v2).
    'Delegate=yes',
    ...(o.mode === 'system' ? [`User=${o.user ?? ''}`] : []),
    `Environment=${systemdWord(`MESHFARM_HOME=${o.home}`, false)}`,
    `ExecStart=${exec}`,
    // SIGTERM lets the agent stop its tasks and hand back their state within its grace period.
    'KillSignal=SIGTERM',
    'TimeoutStopSec=30',
    'Restart=on-failure',
    'RestartSec=5',
    '',
    '[Install]',
    `WantedBy=${o.mode === 'system' ? 'multi-user.target' : 'default.target'}`,
    ''
  ].join('\n')
}

export interface ServiceContext {
  /** The account running the command, and its home folder. */
  uid: number
  userName: string
  homeDir: string
  /** SUDO_USER, when root got there through sudo. */
  sudoUser?: string
  /** --service-user. */
  serviceUser?: string
}

export interface ServicePlan {
  mode: 'user' | 'system'
  /** The unit file, relative to the root folder ('/' on a real machine). */
  unitPath: string
  unitText: string | null
  /** What to run once the file is in place (or removed), in order. */
  commands: string[][]
}

export function planService (action: 'install' | 'uninstall', ctx: ServiceContext, unit: Omit<UnitOptions, 'mode' | 'user'>): ServicePlan {
  const mode = ctx.uid === 0 ? 'system' : 'user'
  const user = mode === 'system' ? ctx.serviceUser ?? ctx.sudoUser : ctx.userName
  const unitPath = mode === 'system' ? join('/etc/systemd/system', UNIT_NAME) : join(ctx.homeDir, '.config/systemd/user', UNIT_NAME)
  const systemctl = mode === 'system' ? ['systemctl'] : ['systemctl', '--user']
  if (action === 'uninstall') {
    return { mode, unitPath, unitText: null, commands: [[...systemctl, 'disable', '--now', UNIT_NAME], [...systemctl, 'daemon-reload']] }
  }
  const commands = [[...systemctl, 'daemon-reload'], [...systemctl, 'enable', '--now', UNIT_NAME]]
  // A user's units start at boot only for users with lingering on.
  if (mode === 'user') commands.push(['loginctl', 'enable-linger', ctx.userName])
  return { mode, unitPath, unitText: renderAgentUnit({ ...unit, mode, user }), commands }
}

export interface ApplyIo {
  /** '/' on a real machine; a temporary folder in tests. */
  root: string
  run: (cmd: string[]) => { status: number, stderr: string }
}

/** systemd's own test (sd_booted): it runs as init when /run/systemd/system exists. */
export function systemdRunning (root: string): boolean {
  return existsSync(join(root, 'run/systemd/system'))
}

/** Writes or removes the unit, then runs systemctl when systemd is running here; returns what to tell the user. */
export function applyServicePlan (plan: ServicePlan, io: ApplyIo): string[] {
  const file = join(io.root, plan.unitPath)
  const said: string[] = []
  if (plan.unitText != null) {
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, plan.unitText, { mode: 0o644 })
    said.push(`wrote ${plan.unitPath}`)
  }
  const running = systemdRunning(io.root)
  if (!running) {
    if (plan.unitText == null) rmSync(file, { force: true })
    said.push(plan.unitText == null
      ? `removed ${plan.unitPath}; systemd is not running here, so there was nothing to stop`
      : `systemd is not running here (a container?): nothing enabled; start the agent with \`meshfarm agent\`, or where systemd runs: ${plan.commands.map(c => c.join(' ')).join(' && ')}`)
    return said
  }
  plan.commands.forEach((cmd, i) => {
    // Uninstall: stop and disable, remove the file, then reload so systemd forgets it.
    if (plan.unitText == null && i === 1) {
      rmSync(file, { force: true })
      said.push(`removed ${plan.unitPath}`)
    }
    const r = io.run(cmd)
    // Disabling a unit that is not loaded is not an error worth stopping the removal for.
    if (r.status !== 0 && !(plan.unitText == null && cmd.includes('disable'))) {
      throw new MeshfarmError('BAD_ARGUMENT', `service: ${cmd.join(' ')} failed: ${r.stderr.trim().split('\n')[0] ?? `exit ${r.status}`}`)
    }
    said.push(`ran ${cmd.join(' ')}`)
  })
  return said
}
