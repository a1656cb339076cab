/**
 * `meshfarm agent --install-service` / `--uninstall-service`: the agent's flags checked as `meshfarm agent`
 * checks them and written into a systemd unit (service-unit.ts), so a bad flag fails now, not at the next boot.
 * The machine (who runs this, its passwd file, systemd, the root folder) comes in through `ServiceHost`, so
 * tests run it under a temporary root.
 */
import { readFileSync } from 'node:fs'
import { isAbsolute } from 'node:path'
import { MeshfarmError } from '../../shared/util/errors.ts'
import { applyServicePlan, planService, type ApplyIo } from '../service-unit.ts'
import { compileAgent, type AgentFlagValues } from '../config.ts'
import { machineArgsOf, type MachineFlags } from '../harvest-config.ts'

/** The flags of `meshfarm agent`, as commander gives them. */
export interface AgentFlags extends MachineFlags, AgentFlagValues {
  serviceUser?: string
}

export interface ServiceHost extends ApplyIo {
  uid: number
  userName: string
  homeDir: string
  sudoUser?: string
  /** /etc/passwd's text, to find a service account's home folder. */
  passwd: () => string
}

/** The agent's flags as the words of its ExecStart line, each checked as the agent will check it. */
export function agentArgsOf (o: AgentFlags): string[] {
  const c = compileAgent(o)
  const args: string[] = []
  for (const a of c.listen) args.push('--listen', a)
  if (c.offer.cores != null) args.push('--cores', String(c.offer.cores))
  // Sizes and GPU lists as the user wrote them (checked above): the unit file reads as they typed it.
  if (o.memory != null) args.push('--memory', o.memory)
  if (o.gpus != null) args.push('--gpus', o.gpus)
  if (c.offer.slots != null) args.push('--slots', String(c.offer.slots))
  for (const l of o.label) args.push('--label', l)
  if (c.offer.hostname != null) args.push('--hostname', c.offer.hostname)
  if (c.allowRoot) args.push('--allow-root')
  if (c.isolation !== 'auto') args.push('--isolation', c.isolation)
  if (c.workDir != null) args.push('--work-dir', c.workDir)
  args.push(...machineArgsOf(o, { uid: process.getuid?.() ?? 0, passwd: () => readFileSync('/etc/passwd', 'utf8') }))
  return args
}

/** A user's home folder from passwd text (name:pw:uid:gid:gecos:home:shell), or null. */
export function passwdHome (passwd: string, user: string): string | null {
  for (const line of passwd.split('\n')) {
    const f = line.split(':')
    if (f.length >= 7 && f[0] === user && isAbsolute(f[5])) return f[5]
  }
  return null
}

/**
 * Installs or removes the unit; returns the lines to tell the user. `home` is the state folder the agent uses:
 * given (--home, MESHFARM_HOME) it is kept; else it is ~/.meshfarm of the account the agent runs as.
 */
export function agentService (action: 'install' | 'uninstall', o: AgentFlags, home: { path: string, given: boolean }, executable: string, host: ServiceHost): string[] {
  if (o.serviceUser != null && !/^[a-z_][a-z0-9_.-]*\$?$/i.test(o.serviceUser)) throw new MeshfarmError('BAD_ARGUMENT', `--service-user: not an account name: ${JSON.stringify(o.serviceUser)}`)
  const ctx = { uid: host.uid, userName: host.userName, homeDir: host.homeDir, sudoUser: host.sudoUser, serviceUser: o.serviceUser }
  const agentArgs = action === 'install' ? agentArgsOf(o) : []
  let homePath = home.path
  const runsAs = host.uid === 0 ? o.serviceUser ?? host.sudoUser : undefined
  if (action === 'install' && runsAs != null && runsAs !== 'root' && !home.given) {
    const dir = passwdHome(host.passwd(), runsAs)
    if (dir == null) throw new MeshfarmError('BAD_ARGUMENT', `--service-user: ${runsAs} has no home folder in /etc/passwd: give the agent's state folder with --home`)
    homePath = `${dir}/.meshfarm`
  }
  const plan = planService(action, ctx, { executable, agentArgs, home: homePath })
  return applyServicePlan(plan, host)
}
