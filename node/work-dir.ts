/**
 * Where an agent keeps things. Its state folder (`<home>/agent`, private, never reachable by tasks) holds the
 * outbox of results, the stdout/stderr capture files, the input cache and the native launcher; task folders and
 * job folders live in a work folder OUTSIDE it (/var/tmp/meshfarm-<uid>/<id> or --work-dir), which the sandbox
 * covers too, binding back only the task's own folder and its job's.
 */
import { createHash } from 'node:crypto'
import { chmodSync, lstatSync, mkdirSync, realpathSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { MeshfarmError } from '../shared/util/errors.ts'
import { isInside } from '../shared/files/safe-path.ts'
import { homePaths } from '../shared/local/home.ts'

export interface AgentPaths {
  home: string
  /** The agent's state folder and what it holds. */
  state: string
  outbox: string
  capture: string
  cache: string
  bin: string
  /** The folder tasks must not see (covered whole in the sandbox): every agent of this user, or --work-dir. */
  workRoot: string
  /** This agent's work folder, and in it the task and job folders. */
  work: string
  tasks: string
  jobs: string
}

/** Paths from the state folder and --work-dir (pure; `home` should be a real path). */
export function agentPaths (home: string, opts: { workDir?: string, uid: number, tmpDir?: string }): AgentPaths {
  const state = homePaths(home).agentDir
  let workRoot: string
  let work: string
  if (opts.workDir != null) {
    workRoot = work = resolve(opts.workDir)
  } else {
    // Several agents of one user may share a machine (one per state folder): each gets its own folder.
    workRoot = join(opts.tmpDir ?? '/var/tmp', `meshfarm-${opts.uid}`)
    work = join(workRoot, createHash('sha256').update(home).digest('hex').slice(0, 12))
  }
  return {
    home, state,
    outbox: join(state, 'outbox'), capture: join(state, 'capture'), cache: join(state, 'cache'), bin: join(state, 'bin'),
    workRoot, work, tasks: join(work, 'tasks'), jobs: join(work, 'jobs')
  }
}

/** The work folder may not be inside the state folder, nor hold it: one is covered, the other bound back. */
export function checkWorkDir (p: AgentPaths): void {
  if (p.workRoot === p.home || isInside(p.home, p.workRoot) || isInside(p.workRoot, p.home)) {
    throw new MeshfarmError('BAD_ARGUMENT', `--work-dir: ${p.workRoot} overlaps the state folder ${p.home}: give tasks a folder outside it`)
  }
}

export function taskDir (p: AgentPaths, attemptId: number): string { return join(p.tasks, String(attemptId)) }
export function jobDir (p: AgentPaths, jobId: number): string { return join(p.jobs, String(jobId)) }
export function captureFiles (p: AgentPaths, attemptId: number): { stdout: string, stderr: string } {
  return { stdout: join(p.capture, `${attemptId}.out`), stderr: join(p.capture, `${attemptId}.err`) }
}

/**
 * Creates the folders: state ones 0700, work ones 0700 too, or 0711 when tasks run as slot users without a
 * sandbox of ours around them (they must traverse to their own folder, never list); /var/tmp/meshfarm-<uid>
 * itself is 0711. A work folder that is a symlink or belongs to another user (planted in /var/tmp, say) is
 * refused.
 */
export function prepareDirs (p: AgentPaths, opts: { traversable: boolean }): void {
  for (const d of [p.state, p.outbox, p.capture, p.cache, p.bin]) ensureOwnDir(d, 0o700)
  const mode = opts.traversable ? 0o711 : 0o700
  // The folder shared by every agent of this user may be passed through (never listed) whatever each one needs.
  if (p.workRoot !== p.work) ensureOwnDir(p.workRoot, 0o711)
  for (const d of p.workRoot !== p.work ? [p.work, p.tasks, p.jobs] : [p.workRoot, p.tasks, p.jobs]) ensureOwnDir(d, mode)
}

function ensureOwnDir (dir: string, mode: number): void {
  try {
    mkdirSync(dir, { mode })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') mkdirSync(dir, { recursive: true, mode })
    else if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const st = lstatSync(dir)
  const uid = process.getuid?.() ?? st.uid
  if (!st.isDirectory() || st.isSymbolicLink()) throw new MeshfarmError('INSECURE_FILE', `${dir} is not a folder (a symlink?): remove it`)
  if (st.uid !== uid) throw new MeshfarmError('INSECURE_FILE', `${dir} belongs to another user (uid ${st.uid}): remove it or choose --work-dir`)
  if ((st.mode & 0o777) !== mode) chmodSync(dir, mode)
}

/** The real path of the state folder (symlinks resolved), so that the sandbox covers the folder itself. */
export function realHome (home: string): string {
  mkdirSync(home, { recursive: true, mode: 0o700 })
  return realpathSync(home)
}
