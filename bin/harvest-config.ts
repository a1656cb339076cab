/**
 * The harvest flags, compiled once like bin/config.ts: `meshfarm agent --harvest ...` into MachineSettings, and
 * `meshfarm lend|reclaim|presence` into what they send. A bad value is one line naming the flag (exit 2).
 */
import { isAbsolute } from 'node:path'
import { MeshfarmError } from '../shared/util/errors.ts'
import { compileHarvestConfig, HARVEST_FLAGS, parseLendUntil, type HarvestConfigInput } from '../node/harvest/config.ts'
import { parseDuration } from '../node/harvest/format.ts'
import type { MachineSettings } from '../node/harvest/agent-harvest.ts'
import type { OwnerCommand } from '../node/harvest/policy.ts'
import type { Env } from './config.ts'

/** The agent's harvest and cgroup flags, as commander gives them. */
export interface MachineFlags {
  harvest?: boolean
  startIdle?: string
  continueIdle?: string
  keyboardBusy?: string
  maxSuspend?: string
  backgroundLoad?: string
  highLoad?: string
  highLoadFor?: string
  inputDevices?: boolean
  owner?: string
  ownerSocket?: string
  /** false: --no-cgroups. */
  cgroups?: boolean
}

const THRESHOLDS: Array<[keyof MachineFlags, keyof typeof HARVEST_FLAGS]> = [
  ['startIdle', 'startIdleMs'], ['continueIdle', 'continueIdleMs'], ['keyboardBusy', 'keyboardBusyMs'], ['maxSuspend', 'maxSuspendMs'],
  ['backgroundLoad', 'backgroundLoad'], ['highLoad', 'highLoad'], ['highLoadFor', 'highLoadMs']
]

/** The flags that mean nothing without --harvest. */
const HARVEST_ONLY: Array<[keyof MachineFlags, string]> = [
  ...THRESHOLDS.map(([f, k]): [keyof MachineFlags, string] => [f, HARVEST_FLAGS[k]]),
  ['inputDevices', '--input-devices'], ['owner', '--owner'], ['ownerSocket', '--owner-socket']
]

export const HARVEST_TICK_MS = 1000
const MAX_SOCKET_PATH = 107

function bad (message: string): MeshfarmError {
  return new MeshfarmError('BAD_ARGUMENT', message)
}

/** A user name or uid -> uid, from /etc/passwd's text. Pure. */
export function resolveUser (user: string, passwd: string): number {
  if (/^\d+$/.test(user)) {
    const uid = Number(user)
    if (uid > 0xfffffffe) throw bad(`--owner: not a user id: ${user}`)
    return uid
  }
  for (const line of passwd.split('\n')) {
    const f = line.split(':')
    if (f.length >= 3 && f[0] === user && /^\d+$/.test(f[2])) return Number(f[2])
  }
  throw bad(`--owner: no user ${JSON.stringify(user)} on this machine`)
}

export interface MachineHost {
  /** The uid the agent runs as. */
  uid: number
  /** /etc/passwd's text, read only when --owner names a user. */
  passwd: () => string
}

/**
 * `meshfarm agent` flags -> MachineSettings. MESHFARM_PRESENCE_FILE (an injected presence source for tests and
 * site scripts) is read with --harvest only.
 */
export function compileMachine (f: MachineFlags, env: Env, host: MachineHost): MachineSettings {
  const cgroups = f.cgroups === false ? 'none' : 'auto'
  if (f.harvest !== true) {
    const given = HARVEST_ONLY.find(([k]) => f[k] != null && f[k] !== false)
    if (given != null) throw bad(`${given[1]}: only with --harvest`)
    return Object.freeze({ cgroups, harvest: null })
  }
  const input: HarvestConfigInput = {}
  for (const [flag, key] of THRESHOLDS) {
    const v = f[flag]
    if (typeof v === 'string') input[key] = v
  }
  const config = compileHarvestConfig(input)
  let ownerUid: number | null = null
  if (f.owner != null) {
    ownerUid = resolveUser(f.owner, f.owner.match(/^\d+$/) != null ? '' : host.passwd())
    if (host.uid !== 0 && ownerUid !== host.uid) throw bad(`--owner: only an agent running as root lends another user's machine (this one runs as uid ${host.uid})`)
  }
  if (f.inputDevices === true && host.uid !== 0) throw bad('--input-devices: only an agent running as root may read /dev/input')
  const ownerSocket = f.ownerSocket != null ? checkSocketPath(f.ownerSocket, '--owner-socket') : null
  const raw = env.MESHFARM_PRESENCE_FILE
  let presenceFile: string | null = null
  if (raw != null && raw !== '') {
    if (!isAbsolute(raw)) throw bad(`MESHFARM_PRESENCE_FILE: must be an absolute path, got ${JSON.stringify(raw)}`)
    presenceFile = raw
  }
  return Object.freeze({
    cgroups,
    harvest: Object.freeze({ config, inputDevices: f.inputDevices === true, ownerUid, ownerSocket, presenceFile, tickMs: HARVEST_TICK_MS })
  })
}

/** The flags as words for the agent's systemd unit, each checked as the agent will check it. */
export function machineArgsOf (f: MachineFlags, host: MachineHost): string[] {
  compileMachine(f, {}, host)
  const args: string[] = []
  if (f.harvest === true) args.push('--harvest')
  for (const [flag, name] of HARVEST_ONLY) {
    const v = f[flag]
    if (v === true) args.push(name)
    else if (typeof v === 'string') args.push(name, v)
  }
  if (f.cgroups === false) args.push('--no-cgroups')
  return args
}

function checkSocketPath (p: string, flag: string): string {
  if (!isAbsolute(p) || /[\u0000-\u001f]/.test(p)) throw bad(`${flag}: must be an absolute path, got ${JSON.stringify(p)}`)
  if (Buffer.byteLength(p) > MAX_SOCKET_PATH) throw bad(`${flag}: ${p} is too long for a Unix socket (${MAX_SOCKET_PATH} bytes at most)`)
  return p
}

/** `meshfarm lend` flags. */
export interface LendFlags { until?: string, never?: boolean, policy?: string }

/** `lend [--until T] | --never | --policy default` -> the command to send. */
export function compileLend (f: LendFlags, now: number): Exclude<OwnerCommand, { op: 'reclaim' }> {
  const given = [f.until != null && '--until', f.never === true && '--never', f.policy != null && '--policy'].filter((x): x is string => x !== false)
  if (given.length > 1) throw bad(`${given.join(', ')}: give one of them`)
  if (f.never === true) return { op: 'never' }
  if (f.policy != null) {
    if (f.policy !== 'default') throw bad(`--policy: the only policy is default (the idle rules), got ${JSON.stringify(f.policy)}`)
    return { op: 'default' }
  }
  if (f.until == null) return { op: 'lend', untilMs: null, label: null }
  const { untilMs, label } = parseLendUntil(f.until, now)
  return { op: 'lend', untilMs, label }
}

/** `--socket` of the owner commands: an explicit path, checked; absent, the commands find the agent's. */
export function compileSocketFlag (p: string | undefined): string | undefined {
  return p == null ? undefined : checkSocketPath(p, '--socket')
}

/** `meshfarm presence --poll`: how often the desktop is asked (200 ms to 1 min). */
export function compilePoll (raw: string | undefined): number {
  if (raw == null) return 2000
  const ms = parseDuration(raw, '--poll')
  if (ms < 200 || ms > 60_000) throw bad(`--poll: must be from 200ms to 1m, got ${JSON.stringify(raw)}`)
  return ms
}
