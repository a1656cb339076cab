/**
 * The owner's channel to the local agent: `meshfarm lend|reclaim|status --here` and the presence helper reach the
 * agent through a Unix socket in under a second.
 *
 * Who may use it: whoever can read the owner token, a random secret the agent writes at start into a file of
 * mode 0600 owned by the machine's owner (the agent's own user; when the agent runs as root, the user named as
 * owner). Every request carries the token and is compared in constant time. File permissions are the kernel's
 * own check of the caller's uid, race-free and portable, where matching a peer through /proc/net/unix is not
 * (it names no peer). Root can always read the token. Where: `<state folder>/owner.sock` and `owner.token`;
 * as root `/run/meshfarm/owner.sock` (socket 0666: the token, not the socket mode, is the lock).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { chmod, chown, mkdir, open, readFile, rm, stat } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { MeshfarmError } from '../../shared/util/errors.ts'
import { requestLocal, serveLocal } from './local-socket.ts'
import type { HarvestSummary, OwnerCommand } from './policy.ts'
import { checkPresenceReport, type PresenceReport } from './sources/helper.ts'
import type { HereTask } from './offer.ts'

export const ROOT_CONTROL_DIR = '/run/meshfarm'
const MAX_SOCKET_PATH = 107
const TOKEN_BYTES = 32
const OPS = new Set(['lend', 'reclaim', 'never', 'default', 'status', 'presence'])

/** What `status --here` shows: built by the agent, passed through as is. */
export interface HereStatus {
  harvest: HarvestSummary
  tasks: HereTask[]
  /** One line per presence source, as in `Reading.detail`. */
  sources: string[]
}

export type OwnerRequest =
  | { op: 'status' }
  | { op: 'presence', report: PresenceReport }
  | ({ op: 'command' } & { command: OwnerCommand })

export interface ControlPaths { socketPath: string, tokenPath: string }

/** Where the agent listens: its state folder, or /run/meshfarm when it runs as root. */
export function ownerControlPaths (stateDir: string, asRoot: boolean): ControlPaths {
  const dir = asRoot ? ROOT_CONTROL_DIR : stateDir
  return { socketPath: join(dir, 'owner.sock'), tokenPath: join(dir, 'owner.token') }
}

function bad (field: string, what: string): MeshfarmError {
  return new MeshfarmError('PROTOCOL', `owner request: ${field}: ${what}`)
}

/** Checks a request's shape (not its token). Pure; one PROTOCOL line for anything malformed. */
export function checkOwnerRequest (v: unknown): OwnerRequest {
  if (v == null || typeof v !== 'object' || Array.isArray(v)) throw bad('request', 'expected an object')
  const r = v as Record<string, unknown>
  if (r.v !== 1) throw bad('v', `unsupported version ${JSON.stringify(r.v)} (this agent speaks 1)`)
  if (typeof r.op !== 'string' || !OPS.has(r.op)) throw bad('op', `expected one of ${[...OPS].join(', ')}`)
  switch (r.op) {
    case 'status': return { op: 'status' }
    case 'presence': return { op: 'presence', report: checkPresenceReport(r.report) }
    case 'lend': {
      if (r.untilMs != null && (typeof r.untilMs !== 'number' || !Number.isSafeInteger(r.untilMs) || r.untilMs < 0)) throw bad('untilMs', 'expected ms since epoch or null')
      if (r.label != null && (typeof r.label !== 'string' || !/^[\x20-\x7e]{1,64}$/.test(r.label))) throw bad('label', 'expected up to 64 printable characters')
      return { op: 'command', command: { op: 'lend', untilMs: (r.untilMs as number | null) ?? null, label: (r.label as string | null) ?? null } }
    }
    default: return { op: 'command', command: { op: r.op as 'reclaim' | 'never' | 'default' } }
  }
}

function tokenMatches (given: unknown, token: Buffer): boolean {
  if (typeof given !== 'string' || !/^[0-9a-f]{64}$/.test(given)) return false
  return timingSafeEqual(Buffer.from(given, 'hex'), token)
}

export interface OwnerControlOptions extends ControlPaths {
  /** The owner's uid: the token file is theirs. Default: the agent's own uid. */
  ownerUid?: number
  /** Applies a command (the agent then runs a harvest pass at once) and returns the new status. */
  onCommand: (cmd: OwnerCommand) => HereStatus | Promise<HereStatus>
  onStatus: () => HereStatus | Promise<HereStatus>
  onPresence: (report: PresenceReport) => void
  log?: (line: string) => void
}

export interface OwnerControl { socketPath: string, tokenPath: string, close: () => Promise<void> }

/** A socket file left by an agent that died is removed; one that answers means another agent is serving. */
async function clearStaleSocket (path: string): Promise<void> {
  if (!existsSync(path)) return
  try {
    await requestLocal(path, { v: 1, op: 'status' }, 500)
  } catch (err) {
    if ((err as MeshfarmError).code === 'NOT_FOUND') { await rm(path, { force: true }); return }
  }
  throw new MeshfarmError('BAD_ARGUMENT', `${path}: another agent is already serving this machine's owner`)
}

export async function startOwnerControl (opts: OwnerControlOptions): Promise<OwnerControl> {
  const { socketPath, tokenPath } = opts
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) throw new MeshfarmError('BAD_ARGUMENT', `${socketPath}: too long for a Unix socket (${MAX_SOCKET_PATH} bytes at most): use a shorter MESHFARM_HOME`)
  const asRoot = process.getuid?.() === 0
  const ownerUid = opts.ownerUid ?? process.getuid?.() ?? 0
  await mkdir(dirname(socketPath), { recursive: true, mode: asRoot && dirname(socketPath) === ROOT_CONTROL_DIR ? 0o755 : 0o700 })
  await clearStaleSocket(socketPath)
  // A fresh token each start; written to a new file so no one holds an old descriptor to it.
  const token = randomBytes(TOKEN_BYTES)
  await rm(tokenPath, { force: true })
  const fh = await open(tokenPath, 'wx', 0o600)
  try { await fh.writeFile(token.toString('hex') + '\n') } finally { await fh.close() }
  if (asRoot && ownerUid !== 0) await chown(tokenPath, ownerUid, -1)
  const log = opts.log ?? (() => {})
  const server = await serveLocal(socketPath, async raw => {
    if (!tokenMatches((raw as { token?: unknown } | null)?.token, token)) {
      log('owner socket: refused a request without the owner token')
      return { ok: false, code: 'FORBIDDEN', message: `only the owner of this machine (uid ${ownerUid}) or root may do this` }
    }
    const req = checkOwnerRequest(raw)
    if (req.op === 'presence') { opts.onPresence(req.report); return { ok: true } }
    if (req.op === 'status') return { ok: true, status: await opts.onStatus() }
    log(`owner socket: ${req.command.op}${req.command.op === 'lend' && req.command.untilMs != null ? ` until ${req.command.label ?? new Date(req.command.untilMs).toISOString()}` : ''}`)
    return { ok: true, status: await opts.onCommand(req.command) }
  }, log)
  if (asRoot) await chmod(socketPath, 0o666)
  return {
    socketPath,
    tokenPath,
    close: async () => { await server.close(); await rm(tokenPath, { force: true }); await rm(socketPath, { force: true }) }
  }
}

// ---- clients ----

export interface ClientTarget {
  /** The state folder (its owner.sock is tried first), or an explicit socket. */
  home?: string
  socketPath?: string
  timeoutMs?: number
}

/** The first socket that exists: explicit, the state folder's, then the root agent's. */
export function findOwnerSocket (t: ClientTarget): ControlPaths {
  const candidates = t.socketPath != null ? [t.socketPath] : [...(t.home != null ? [join(t.home, 'owner.sock')] : []), join(ROOT_CONTROL_DIR, 'owner.sock')]
  const socketPath = candidates.find(p => existsSync(p)) ?? candidates[0]
  return { socketPath, tokenPath: socketPath.replace(/\.sock$/, '') + '.token' }
}

async function call (t: ClientTarget, body: Record<string, unknown>): Promise<unknown> {
  const { socketPath, tokenPath } = findOwnerSocket(t)
  let token: string
  try {
    token = (await readFile(tokenPath, 'utf8')).trim()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EACCES') {
      const st = await stat(tokenPath).catch(() => null)
      throw new MeshfarmError('FORBIDDEN', `only the owner of this machine${st != null ? ` (uid ${st.uid})` : ''} or root may do this`)
    }
    throw new MeshfarmError('NOT_FOUND', `${socketPath}: no agent is listening (is meshfarm agent --harvest running?)`)
  }
  const reply = await requestLocal(socketPath, { v: 1, token, ...body }, t.timeoutMs)
  const r = reply as { ok?: unknown, code?: unknown, message?: unknown } | null
  if (r == null || typeof r !== 'object' || typeof r.ok !== 'boolean') throw new MeshfarmError('PROTOCOL', `${socketPath}: malformed reply`)
  if (!r.ok) {
    const code = typeof r.code === 'string' && ['FORBIDDEN', 'PROTOCOL', 'TIMEOUT', 'BAD_ARGUMENT'].includes(r.code) ? r.code as 'FORBIDDEN' : 'REMOTE'
    throw new MeshfarmError(code, `agent: ${String(r.message ?? 'refused').slice(0, 300)}`)
  }
  return reply
}

async function command (t: ClientTarget, body: Record<string, unknown>): Promise<HereStatus> {
  const r = await call(t, body) as { status?: HereStatus }
  if (r.status == null || typeof r.status !== 'object' || r.status.harvest == null) throw new MeshfarmError('PROTOCOL', 'agent: reply without a status')
  return r.status
}

/** `meshfarm lend [--until T]`: untilMs null lends until the owner says otherwise. */
export async function lend (t: ClientTarget & { untilMs: number | null, label?: string | null }): Promise<HereStatus> {
  return await command(t, { op: 'lend', untilMs: t.untilMs, label: t.label ?? null })
}
/** `meshfarm reclaim`: tasks suspended (GPU ones vacated) at once. */
export async function reclaim (t: ClientTarget): Promise<HereStatus> { return await command(t, { op: 'reclaim' }) }
/** `meshfarm lend --never`. */
export async function lendNever (t: ClientTarget): Promise<HereStatus> { return await command(t, { op: 'never' }) }
/** `meshfarm lend --policy default`. */
export async function policyDefault (t: ClientTarget): Promise<HereStatus> { return await command(t, { op: 'default' }) }
/** `meshfarm status --here`. */
export async function hereStatus (t: ClientTarget): Promise<HereStatus> { return await command(t, { op: 'status' }) }
/** The presence helper's post. */
export async function postPresence (t: ClientTarget, report: PresenceReport): Promise<void> { await call(t, { op: 'presence', report }) }
