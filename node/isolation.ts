/**
 * Which isolation keeps tasks from the mesh's secrets on this agent: the choice (--isolation), what this
 * machine offers, and the decision, pure; node/isolation-probe.ts tries the candidates for real.
 *
 *   slot-users  root agents: each slot runs as its own unprivileged user (meshfarm-slot<N>), inside a mount
 *               namespace built by the native launcher (or bubblewrap) that covers the state folder and the
 *               work root and binds back only the task's folder (rw) and its job's (ro);
 *   namespace   the same mount namespace inside a user namespace, where the task's uid is mapped to itself
 *               (never to 0: after exec it has no capabilities there and cannot undo the mounts); as root it
 *               runs on a slot user's uid, so it is the unprivileged path exactly;
 *   bubblewrap  the mount namespace built by bwrap (the Node launcher's fallback);
 *   none        tasks run as the agent's user and can read whatever it can, the mesh's keys included.
 */
import { MeshfarmError } from '../shared/util/errors.ts'
import type { IsolationMode } from './backend/launch-plan.ts'

export type IsolationChoice = 'auto' | IsolationMode
export const ISOLATION_CHOICES: readonly IsolationChoice[] = ['auto', 'namespace', 'slot-users', 'bubblewrap', 'none']

/** `--isolation` value -> choice; anything else is one BAD_ARGUMENT line naming the flag. */
export function parseIsolationFlag (text: string): IsolationChoice {
  const v = text.trim().toLowerCase()
  if ((ISOLATION_CHOICES as readonly string[]).includes(v)) return v as IsolationChoice
  throw new MeshfarmError('BAD_ARGUMENT', `--isolation: expected ${ISOLATION_CHOICES.join(', ')}, got ${JSON.stringify(text)}`)
}

/** One way to isolate, to be probed. */
export interface Candidate {
  mode: IsolationMode
  mounts: 'native' | 'bubblewrap' | null
  userns: boolean
  slotUsers: boolean
}

export interface MachineFacts {
  root: boolean
  /** The launcher in use can build a sandbox itself (the native one). */
  nativeSandbox: boolean
  /** The launcher can run tasks as another user. */
  canSwitchUser: boolean
  bwrap: boolean
}

/** The candidates for a choice, best first (pure). Empty: the choice cannot be had on this machine at all. */
export function candidatesFor (choice: IsolationChoice, m: MachineFacts): Candidate[] {
  const slot = m.root
  const native: Candidate = { mode: m.root ? 'slot-users' : 'namespace', mounts: 'native', userns: !m.root, slotUsers: slot }
  const userns: Candidate = { mode: 'namespace', mounts: 'native', userns: true, slotUsers: slot }
  const bwrap: Candidate = { mode: m.root ? 'slot-users' : 'bubblewrap', mounts: 'bubblewrap', userns: false, slotUsers: slot }
  const plainSlots: Candidate = { mode: 'slot-users', mounts: null, userns: false, slotUsers: true }
  const none: Candidate = { mode: 'none', mounts: null, userns: false, slotUsers: false }
  const list: Array<Candidate | false> = (() => {
    switch (choice) {
      case 'none': return [none]
      case 'namespace': return [m.nativeSandbox && userns]
      case 'bubblewrap': return [m.bwrap && (m.root ? m.canSwitchUser : true) && { ...bwrap, mode: 'bubblewrap' as const }]
      case 'slot-users': return m.root && m.canSwitchUser ? [m.nativeSandbox && native, m.bwrap && bwrap, plainSlots] : []
      case 'auto': return m.root
        ? [m.nativeSandbox && native, m.canSwitchUser && m.bwrap && bwrap, m.canSwitchUser && plainSlots]
        : [m.nativeSandbox && native, m.bwrap && bwrap]
    }
  })()
  return list.filter((c): c is Candidate => c !== false)
}

/** Why a choice has no candidate here. */
export function unavailableReason (choice: IsolationChoice, m: MachineFacts): string {
  switch (choice) {
    case 'namespace': return 'needs the native task launcher (a C compiler; not MESHFARM_LAUNCHER=js)'
    case 'bubblewrap': return m.bwrap ? 'needs a launcher that can switch to slot users' : 'bwrap is not installed'
    case 'slot-users': return m.root ? 'needs a launcher that can switch users' : 'needs an agent running as root'
    default: return 'nothing is available'
  }
}

export type Decision = { ok: true, candidate: Candidate, notes: string[] } | { ok: false, message: string }

/**
 * The decision from the probes (in candidatesFor's order, each with the error that made it fail, or null).
 * An agent that shares its state folder with the coordinator refuses to run tasks unisolated unless told to.
 */
export function decide (choice: IsolationChoice, tried: Array<{ candidate: Candidate, error: string | null }>, m: MachineFacts, sharesCoordinatorState: boolean): Decision {
  const works = tried.find(t => t.error == null)
  const failures = tried.filter(t => t.error != null).map(t => `${describeCandidate(t.candidate)}: ${t.error ?? ''}`)
  if (works != null) return { ok: true, candidate: works.candidate, notes: failures }
  if (choice !== 'auto') {
    const why = tried.length === 0 ? unavailableReason(choice, m) : failures.join('; ')
    return { ok: false, message: `--isolation ${choice}: not available on this machine: ${why}` }
  }
  if (sharesCoordinatorState) {
    const why = failures.length > 0 ? failures.join('; ') : 'no C compiler for the native launcher and no bwrap'
    return {
      ok: false,
      message: `this agent shares its state folder with the coordinator, and no task isolation is available here (${why}): ` +
        'its tasks could read the mesh\'s keys; install a C compiler or bubblewrap, or pass --isolation none to run them anyway'
    }
  }
  return { ok: true, candidate: { mode: 'none', mounts: null, userns: false, slotUsers: false }, notes: failures }
}

export function describeCandidate (c: Candidate): string {
  const parts: string[] = []
  if (c.slotUsers) parts.push('slot users')
  if (c.mounts === 'native') parts.push(c.userns ? 'user + mount namespace' : 'mount namespace')
  if (c.mounts === 'bubblewrap') parts.push('bubblewrap')
  return parts.length > 0 ? parts.join(' + ') : 'none'
}

/** The start line: which isolation is in force and what it hides. */
export function describeIsolation (c: Candidate, hidden: readonly string[]): string {
  if (c.mode === 'none') return 'isolation: none (tasks run as the agent\'s user and can read what it can, the mesh\'s keys included)'
  const what = describeCandidate(c)
  if (c.mounts == null) return `isolation: ${what} (no mount namespace: tasks are kept out by file permissions only)`
  return `isolation: ${what} (hides ${hidden.join(', ')})`
}
