/**
 * Trying the isolation candidates for real: a probe task (`true`) runs through the launcher inside each
 * candidate's sandbox until one works. What works here, with this kernel and these permissions, is what counts.
 */
import { lstatSync } from 'node:fs'
import { chown, mkdir, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { errorMessage } from '../shared/util/errors.ts'
import type { LauncherPool } from './launcher/pool.ts'
import { launchRequest, type Isolation, type SlotUser } from './backend/launch-plan.ts'
import { candidatesFor, decide, type Candidate, type Decision, type IsolationChoice, type MachineFacts } from './isolation.ts'
import { ensureSlotUsers } from './slot-users.ts'
import type { AgentPaths } from './work-dir.ts'

/** Can a user other than the owner reach this folder (x for others on it and every folder above)? */
function reachableByOthers (path: string): boolean {
  for (let p = path; ; p = dirname(p)) {
    try {
      if ((lstatSync(p).mode & 0o001) === 0) return false
    } catch {
      return false
    }
    if (p === dirname(p)) return true
  }
}

/**
 * The Isolation for a candidate. Folders bubblewrap cannot even reach as the slot user are left out of its
 * list: the slot user cannot reach them either (the state folder is 0700), so covering them adds nothing.
 */
export function isolationFor (c: Candidate, paths: AgentPaths, slotUsers: SlotUser[] | null, bwrap: string | null): Isolation {
  let hide = c.mounts != null ? [paths.home, paths.workRoot] : []
  if (c.mounts === 'bubblewrap' && c.slotUsers) hide = hide.filter(reachableByOthers)
  return {
    mode: c.mode,
    mounts: c.mounts,
    userns: c.userns,
    hide,
    slotUsers: c.slotUsers ? slotUsers : null,
    bwrap: c.mounts === 'bubblewrap' ? bwrap : null,
    // Copies (reflinks where the file system can) even for slot users: a task's inputs are its own files, as
    // tools like gzip -k and xz -k expect (one link, owned by the user that runs them).
    inputs: c.mode === 'none' ? 'link' : 'copy',
    shared: c.mounts != null && !c.slotUsers ? 'symlink' : 'link'
  }
}

/** Slot users work from folders they can traverse, unless our own launcher builds the namespace as root. */
export function traversableLayout (c: Candidate): boolean {
  return c.slotUsers && c.mounts !== 'native'
}

export interface ProbeResult { decision: Decision, isolation: Isolation | null }

export async function chooseIsolation (opts: {
  choice: IsolationChoice
  facts: MachineFacts
  paths: AgentPaths
  slots: number
  bwrap: string | null
  launcher: Pick<LauncherPool, 'spawn'>
  sharesCoordinatorState: boolean
  log: (line: string) => void
  /** Lays out the work folders for a candidate before its probe. */
  prepare: (traversable: boolean) => void
}): Promise<ProbeResult> {
  const tried: Array<{ candidate: Candidate, error: string | null }> = []
  let users: SlotUser[] | null = null
  for (const c of candidatesFor(opts.choice, opts.facts)) {
    let error: string | null = null
    try {
      if (c.slotUsers) users ??= await ensureSlotUsers(opts.slots, opts.log)
      opts.prepare(traversableLayout(c))
      if (c.mode !== 'none') await probe(isolationFor(c, opts.paths, users, opts.bwrap), opts.paths, opts.launcher)
    } catch (err) {
      error = errorMessage(err)
    }
    tried.push({ candidate: c, error })
    if (error == null) break
  }
  const decision = decide(opts.choice, tried, opts.facts, opts.sharesCoordinatorState)
  return { decision, isolation: decision.ok ? isolationFor(decision.candidate, opts.paths, users, opts.bwrap) : null }
}

async function probe (iso: Isolation, paths: AgentPaths, launcher: Pick<LauncherPool, 'spawn'>): Promise<void> {
  const taskDir = join(paths.tasks, `probe-${process.pid}`)
  const jobDir = join(paths.jobs, `probe-${process.pid}`)
  const out = join(paths.capture, `probe-${process.pid}.out`)
  try {
    await mkdir(taskDir, { recursive: true, mode: 0o700 })
    await mkdir(jobDir, { recursive: true, mode: 0o700 })
    const user = iso.slotUsers?.[0]
    if (user != null) await chown(taskDir, user.uid, user.gid)
    const req = launchRequest({ commands: ['true'], envAdd: {}, taskDir, jobDir, stdoutPath: out, stderrPath: out, slot: 0 }, iso)
    const r = await launcher.spawn(req).done
    if (r.error != null) throw new Error(r.error)
    if (r.exitCode !== 0) throw new Error(r.signal != null ? `probe killed by ${r.signal}` : `probe exited with ${String(r.exitCode)}`)
  } finally {
    await Promise.all([rm(taskDir, { recursive: true, force: true }), rm(jobDir, { recursive: true, force: true }), rm(out, { force: true })])
  }
}
