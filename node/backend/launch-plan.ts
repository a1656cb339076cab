/**
 * What a task's process is, decided once, here, for every launcher: the argv (straight to the program for plain
 * commands, through /bin/sh otherwise), the environment, the user it runs as and the sandbox around it. Pure:
 * the launchers (launcher.c, launcher.mjs) only spawn what this file describes.
 */
import type { Bind, SpawnRequest } from '../launcher/client.ts'
import { taskId } from '../../shared/protocol/messages.ts'

export type IsolationMode = 'slot-users' | 'namespace' | 'bubblewrap' | 'none'

export interface SlotUser { name: string, uid: number, gid: number }

/** How tasks are kept from the mesh's secrets on this agent (decided at start: node/isolation.ts). */
export interface Isolation {
  mode: IsolationMode
  /** Who builds the mount namespace: the native launcher, bubblewrap, or nobody. */
  mounts: 'native' | 'bubblewrap' | null
  /** Native: inside a new user namespace (the id mapped there is the task's own, never 0). */
  userns: boolean
  /** Folders covered by an empty tmpfs: the state folder and the work root. */
  hide: string[]
  /** Root agents: one unprivileged user per slot. */
  slotUsers: SlotUser[] | null
  /** Path of the bwrap binary when mounts === 'bubblewrap'. */
  bwrap: string | null
  /**
   * How cached inputs reach a task folder. 'link' (a hard link to the cache's inode) only where the task cannot
   * write that inode: it runs as a slot user and the inode is the agent's, mode 0444, or nothing is protected
   * anyway ('none'). Where the task has the agent's uid it could chmod a link and change every job's copy: 'copy'.
   */
  inputs: 'link' | 'copy'
  /** Shared files in the task folder: hard links, or symlinks into the job folder, which the sandbox binds read-only. */
  shared: 'link' | 'symlink'
}

/** Commands made only of these characters need no shell: no quoting, globbing, variables or redirection. */
const PLAIN = /^[A-Za-z0-9_./:=+,@%\- ]+$/
/** First words the shell treats specially, or whose builtin differs from the binary of the same name. */
const SHELL_WORDS = new Set([
  '.', ':', 'alias', 'bg', 'break', 'case', 'cd', 'command', 'continue', 'do', 'done', 'echo', 'elif', 'else',
  'esac', 'eval', 'exec', 'exit', 'export', 'fc', 'fg', 'fi', 'for', 'function', 'getopts', 'hash', 'if', 'in',
  'jobs', 'kill', 'local', 'printf', 'pwd', 'read', 'readonly', 'return', 'select', 'set', 'shift', 'source',
  'then', 'time', 'times', 'trap', 'type', 'ulimit', 'umask', 'unalias', 'unset', 'until', 'wait', 'while'
])

/**
 * Several commands as one process: each but the last in its own subshell (a `cd` does not carry over), stopping
 * at the first that fails, with its exit status. The commands travel as arguments and run through `eval`, never
 * pasted into the script: a trailing `# comment`, a newline or an unclosed quote stays within its own command.
 * A command killed by a signal ends the sequence with status 128+n, as a shell reports it.
 */
export const SEQUENCE_SCRIPT = 'while [ $# -gt 1 ]; do (__meshfarm_cmd=$1; shift $#; eval "$__meshfarm_cmd") || exit; shift; done; __meshfarm_cmd=$1; shift; eval "$__meshfarm_cmd"'

/** argv for a command that can skip the shell, or null. */
export function plainArgv (cmd: string): string[] | null {
  if (!PLAIN.test(cmd)) return null
  const words = cmd.split(' ').filter(w => w !== '')
  // "A=1 cmd" is an environment assignment, which only the shell understands.
  if (words.length === 0 || words[0].includes('=') || SHELL_WORDS.has(words[0])) return null
  return words
}

/** The one process a task's commands become. */
export function commandArgv (commands: readonly string[]): string[] {
  if (commands.length === 1) return plainArgv(commands[0]) ?? ['/bin/sh', '-c', commands[0]]
  return ['/bin/sh', '-c', SEQUENCE_SCRIPT, 'sh', ...commands]
}

export interface TaskEnvInput {
  attemptId: number
  jobId: number
  index: number
  cores: number
  gpuIds: number[]
  /** Does this agent have GPUs at all (tasks without GPUs then get an empty CUDA_VISIBLE_DEVICES). */
  agentHasGpus: boolean
  /** The task's own variables, from the job file. */
  env: Record<string, string>
  taskDir: string
  jobDir: string
  agentPid: number
  slotUser?: SlotUser
}

/** What a task's environment adds to the launcher's (the agent's, less MESHFARM_* variables). */
export function taskEnv (t: TaskEnvInput): Record<string, string> {
  const env: Record<string, string> = {}
  env.OMP_NUM_THREADS = String(t.cores)
  // Tasks without GPUs must not wander onto the GPUs given to other tasks.
  if (t.gpuIds.length > 0 || t.agentHasGpus) env.CUDA_VISIBLE_DEVICES = t.gpuIds.join(',')
  if (t.slotUser != null) {
    // The agent's own home is not the slot user's to use.
    env.HOME = t.taskDir
    env.USER = env.LOGNAME = t.slotUser.name
  }
  Object.assign(env, t.env)
  env.MESHFARM_JOB_ID = String(t.jobId)
  env.MESHFARM_TASK_INDEX = String(t.index)
  env.MESHFARM_TASK_ID = taskId(t.jobId, t.index)
  env.MESHFARM_ATTEMPT_ID = String(t.attemptId)
  env.MESHFARM_TASK_DIR = t.taskDir
  env.MESHFARM_JOB_DIR = t.jobDir
  env.MESHFARM_CORES = String(t.cores)
  env.MESHFARM_GPUS = t.gpuIds.join(',')
  // Lets a task (or a test of a task that kills its agent) find the agent it runs under.
  env.MESHFARM_AGENT_PID = String(t.agentPid)
  return env
}

/** The bubblewrap command line that gives a task the same view as the native sandbox. */
export function bwrapArgv (bwrap: string, hide: readonly string[], binds: readonly Bind[], cwd: string, argv: readonly string[]): string[] {
  return [
    bwrap, '--unshare-user', '--unshare-pid', '--die-with-parent', '--dev-bind', '/', '/', '--proc', '/proc',
    ...hide.flatMap(h => ['--tmpfs', h]),
    ...binds.flatMap(b => [b.ro ? '--ro-bind' : '--bind', b.src, b.dst]),
    ...hide.flatMap(h => ['--remount-ro', h]),
    '--chdir', cwd, '--', ...argv
  ]
}

export interface LaunchInput {
  commands: readonly string[]
  envAdd: Record<string, string>
  taskDir: string
  jobDir: string
  stdoutPath: string
  stderrPath: string
  slot: number
  cgroupProcs?: string[]
  nice?: number
  ioprio?: { class: number, level: number }
  rlimits?: SpawnRequest['rlimits']
}

/** The launcher request for one task under this agent's isolation. */
export function launchRequest (t: LaunchInput, iso: Isolation): SpawnRequest {
  const binds: Bind[] = [{ src: t.taskDir, dst: t.taskDir, ro: false }, { src: t.jobDir, dst: t.jobDir, ro: true }]
  let argv = commandArgv(t.commands)
  const req: SpawnRequest = { argv, cwd: t.taskDir, envAdd: t.envAdd, stdoutPath: t.stdoutPath, stderrPath: t.stderrPath }
  const user = iso.slotUsers?.[t.slot]
  if (iso.slotUsers != null && user == null) throw new Error(`no slot user for slot ${t.slot}`)
  if (user != null) req.user = { uid: user.uid, gid: user.gid }
  if (iso.mounts === 'native') req.sandbox = { userns: iso.userns, hide: [...iso.hide], binds }
  if (iso.mounts === 'bubblewrap') {
    if (iso.bwrap == null) throw new Error('bubblewrap isolation without a bwrap binary')
    argv = bwrapArgv(iso.bwrap, iso.hide, binds, t.taskDir, argv)
    req.argv = argv
  }
  if (t.cgroupProcs != null && t.cgroupProcs.length > 0) req.cgroupProcs = t.cgroupProcs
  if (t.nice != null) req.nice = t.nice
  if (t.ioprio != null) req.ioprio = t.ioprio
  if (t.rlimits != null) req.rlimits = t.rlimits
  return req
}
