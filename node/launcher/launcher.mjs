// meshfarm task launcher in plain Node: spawn, signal, wait, with the protocol of launcher.c. The agent uses it
// where there is no C compiler (or MESHFARM_LAUNCHER=js). Why a separate process: child_process.spawn gets
// slower as the spawning process grows (fork copies page tables), and the agent holds libp2p. Keep this file
// small, plain JS, and free of imports other than node: builtins.
//
// Requests (newline-delimited JSON on stdin):
//   {"op":"spawn","id":N,"argv":[...],"cwd":"/abs","env":{...} or "envAdd":{...},"stdout":"/abs","stderr":"/abs",
//    "user":{"uid":n,"gid":n},"cgroupProcs":["/abs"],"nice":n}
//   {"op":"signal","id":N,"signal":"SIGTERM"}
// Replies (stdout): {"op":"hello","features":[...]}, {"op":"started",...}, {"op":"exit",...} as launcher.c writes
// them. What Node cannot do between fork and exec (a sandbox, I/O priority, resource limits) is not among the
// features, and a request asking for it is refused rather than run without it. When stdin closes, every running
// task's process group gets SIGKILL.
import { spawn } from 'node:child_process'
import { closeSync, constants as fsc, existsSync, fchmodSync, fstatSync, openSync, writeSync } from 'node:fs'
import { getPriority } from 'node:os'

// The base environment of tasks sent with envAdd: ours, less meshfarm's own settings.
const BASE_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MESHFARM_')))
// Enters the cgroups named before `--` (writing 0 moves the writer), then becomes the task: nothing it forks
// can start outside them.
const CGROUP_WRAPPER = 'for f do if [ "$f" = -- ]; then shift; break; fi; echo 0 > "$f" || exit 125; shift; done; exec "$@"'
// A root launcher enters a slot user's task into its cgroups first, then drops to the user with util-linux's
// setpriv: the user could not write the cgroup's files itself. Without setpriv we move the child from outside
// as soon as it exists (it has had no time to fork yet in practice, but that is not a guarantee).
const SETPRIV = (process.env.PATH ?? '/usr/bin:/bin').split(':').map(d => `${d}/setpriv`).find(p => p.startsWith('/') && existsSync(p)) ?? null
const OPEN_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW

// Tasks get the usual umask, not the agent's (077, for its own state).
process.umask(0o022)

/** id -> task state */
const tasks = new Map()

// ---- replies, batched into one write per event-loop turn ----
let outLines = []
let flushQueued = false
function send (msg) {
  outLines.push(JSON.stringify(msg))
  if (!flushQueued) {
    flushQueued = true
    setImmediate(flush)
  }
}
function flush () {
  flushQueued = false
  const data = outLines.join('\n') + '\n'
  outLines = []
  process.stdout.write(data)
}

// ---- requests ----
let partial = ''
process.stdin.setEncoding('utf8') // decodes multi-byte characters split across chunks
process.stdin.on('data', chunk => {
  const lines = (partial + chunk).split('\n')
  partial = lines.pop()
  for (const line of lines) if (line !== '') handle(line)
})
process.stdin.on('end', shutdown)
process.stdin.on('error', shutdown)
process.stdout.on('error', shutdown) // EPIPE: the agent is gone
process.on('SIGTERM', shutdown)
process.on('SIGHUP', shutdown)
// Ctrl-C reaches the whole foreground group, us included; the agent decides what happens to tasks.
process.on('SIGINT', () => {})
send({ op: 'hello', features: ['user', 'cgroup', 'nice'] })

function handle (line) {
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    process.stderr.write(`meshfarm launcher: ignoring bad request line (${line.length} bytes)\n`)
    return
  }
  if (typeof msg?.id !== 'number') return
  if (msg.op === 'spawn') start(msg)
  else if (msg.op === 'signal') signal(msg.id, msg.signal || 'SIGTERM')
}

/** Why a request cannot be run as asked, or null. */
function refusal (msg) {
  if (!Array.isArray(msg.argv) || msg.argv.length === 0 || msg.argv.some(a => typeof a !== 'string') || msg.argv[0] === '') return 'bad request: argv'
  if (typeof msg.cwd !== 'string' || !msg.cwd.startsWith('/')) return 'bad request: cwd must be an absolute path'
  if (msg.sandbox != null) return 'this launcher cannot build a sandbox'
  if (msg.ioprio != null || msg.rlimits != null) return 'this launcher cannot set I/O priority or resource limits'
  if (msg.cgroupProcs != null && (!Array.isArray(msg.cgroupProcs) || msg.cgroupProcs.some(f => typeof f !== 'string' || !f.startsWith('/')))) return 'bad request: cgroupProcs'
  if (msg.user != null && !(msg.user.uid > 0 && msg.user.gid > 0)) return 'bad request: user'
  if (msg.user != null && process.getuid() !== 0) return 'a slot user needs a launcher running as root'
  if (msg.nice != null && !Number.isInteger(msg.nice)) return 'bad request: nice'
  return null
}

function start (msg) {
  const t = { id: msg.id, child: null, fdOut: -1, fdErr: -1, started: false, startedAt: Date.now(), exited: false }
  if (tasks.has(t.id)) return reply(t, null, null, `duplicate task id ${t.id}`)
  tasks.set(t.id, t)
  const why = refusal(msg)
  if (why != null) return finish(t, null, null, why)
  try {
    t.fdOut = openSync(msg.stdout, OPEN_FLAGS, 0o600)
    t.fdErr = msg.stderr === msg.stdout ? t.fdOut : openSync(msg.stderr, OPEN_FLAGS, 0o600)
  } catch (err) {
    return finish(t, null, null, `cannot open output file: ${err.message}`)
  }
  const env = msg.env || (msg.envAdd ? { ...BASE_ENV, ...msg.envAdd } : process.env)
  const opts = { cwd: msg.cwd, env, stdio: ['ignore', t.fdOut, t.fdErr], detached: true }
  const cgroups = msg.cgroupProcs ?? []
  // Node cannot change a child's priority before exec: nice(1) does, as an adjustment from ours.
  let argv = typeof msg.nice === 'number' ? ['nice', '-n', String(msg.nice - getPriority()), '--', ...msg.argv] : msg.argv
  let joinFromOutside = []
  if (msg.user != null && cgroups.length > 0 && SETPRIV != null) {
    argv = [SETPRIV, `--reuid=${msg.user.uid}`, `--regid=${msg.user.gid}`, '--clear-groups', '--', ...argv]
  } else if (msg.user != null) {
    Object.assign(opts, { uid: msg.user.uid, gid: msg.user.gid })
    joinFromOutside = cgroups
  }
  if (cgroups.length > 0 && joinFromOutside.length === 0) argv = ['/bin/sh', '-c', CGROUP_WRAPPER, 'meshfarm-cgroup', ...cgroups, '--', ...argv]
  let child
  try {
    child = spawn(argv[0], argv.slice(1), opts)
  } catch (err) {
    return finish(t, null, null, `spawn failed: ${err.message}`)
  }
  t.child = child
  child.once('spawn', () => {
    t.started = true
    moveIntoCgroups(child.pid, joinFromOutside)
    send({ op: 'started', id: t.id, pid: child.pid, startedAt: t.startedAt })
  })
  child.once('exit', (code, sig) => { t.exited = true; finish(t, code, sig, null) })
  child.once('error', err => onSpawnError(t, msg, err))
}

/** Best effort: a task that stays outside its group still runs, only without its limits. */
function moveIntoCgroups (pid, procFiles) {
  for (const f of procFiles) {
    try {
      const fd = openSync(f, 'w')
      try { writeSync(fd, String(pid)) } finally { closeSync(fd) }
    } catch {}
  }
}

/** The program never ran. Mimic the shell's exit codes for a missing or non-executable program. */
function onSpawnError (t, msg, err) {
  if (t.started) return
  if (err.code === 'ENOENT' && !existsSync(msg.cwd)) return finish(t, null, null, `working folder not found: ${msg.cwd}`)
  if (err.code === 'ENOENT' || err.code === 'EACCES') {
    const [exitCode, why] = err.code === 'ENOENT' ? [127, 'command not found'] : [126, 'permission denied']
    const text = `meshfarm: ${msg.argv[0]}: ${why}`
    try { writeSync(t.fdErr, text + '\n') } catch {}
    return finish(t, exitCode, null, text)
  }
  finish(t, null, null, `spawn failed: ${err.message}`)
}

function finish (t, exitCode, sig, error) {
  if (!tasks.has(t.id) || tasks.get(t.id) !== t) return
  // Output sizes at exit: most tasks write nothing to stderr, and the agent need not open an empty file.
  const size = fd => { try { return fd >= 0 ? fstatSync(fd).size : null } catch { return null } }
  t.stdoutBytes = size(t.fdOut)
  t.stderrBytes = size(t.fdErr)
  // The stdout capture turns read-only at exit: a restarted agent can tell a task that ran to its end (0400)
  // from one that died with it (0600).
  if (t.fdOut >= 0) { try { fchmodSync(t.fdOut, 0o400) } catch {} }
  if (t.fdOut >= 0) closeSync(t.fdOut)
  if (t.fdErr >= 0 && t.fdErr !== t.fdOut) closeSync(t.fdErr)
  t.fdOut = t.fdErr = -1
  tasks.delete(t.id)
  reply(t, exitCode, sig, error)
}

function reply (t, exitCode, sig, error) {
  send({ op: 'exit', id: t.id, exitCode, signal: sig, error, startedAt: t.startedAt, endedAt: Date.now(), stdoutBytes: t.stdoutBytes ?? null, stderrBytes: t.stderrBytes ?? null, peakMemoryBytes: null })
}

/** Signals the task's whole process group (its own, since it was started detached). */
function signal (id, sig) {
  const t = tasks.get(id)
  const pid = t?.child?.pid
  if (!(pid > 0) || t.exited) return
  try { process.kill(-pid, sig) } catch {} // ESRCH: already gone; bad names are ignored too
}

/** The agent is gone: no task may outlive it. */
function shutdown () {
  for (const t of tasks.values()) signal(t.id, 'SIGKILL')
  process.exit(0)
}
