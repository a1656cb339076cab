// meshfarm task launcher: a tiny process the agent forks once and feeds spawn requests.
// Why a separate process: child_process.spawn gets much slower as the spawning process grows
// (fork copies page tables), and the agent holds libp2p. Keep this file small, plain JS, and
// free of imports other than node: builtins; it is the hot path of the task benchmark.
//
// Protocol: newline-delimited JSON on stdin (requests) and stdout (replies).
//   {"op":"run","id":N,"commands":[...],"cwd":"/abs","env":{...} or "envAdd":{...},"stdout":"/abs","stderr":"/abs","timeoutMs":0,"notifyStart":false}
//   {"op":"kill","id":N,"signal":"SIGTERM"}
// Replies:
//   {"op":"started","id":N,"pid":P,"startedAt":ms}            only when notifyStart was true
//   {"op":"exit","id":N,"exitCode":n|null,"signal":s|null,"timedOut":bool,"error":s|null,"startedAt":ms,"endedAt":ms,
//    "stdoutBytes":n|null,"stderrBytes":n|null}
// When stdin closes (the agent died or closed us), every running task's process group gets SIGKILL.
import { spawn } from 'node:child_process'
import { closeSync, existsSync, fstatSync, openSync, writeSync } from 'node:fs'

// How long a signalled task may take to exit before its group gets SIGKILL (env knob for tests).
const KILL_GRACE_MS = Number(process.env.MESHFARM_KILL_GRACE_MS) || 5000
// Commands made only of these characters need no shell: no quoting, globbing, variables or redirection.
const PLAIN = /^[A-Za-z0-9_./:=+,@%\- ]+$/
// First words the shell treats specially (builtins, keywords) or whose builtin behaves differently
// from the binary of the same name; these still go through /bin/sh.
const SHELL_WORDS = new Set([
  '.', ':', 'alias', 'bg', 'break', 'case', 'cd', 'command', 'continue', 'do', 'done', 'echo', 'elif', 'else',
  'esac', 'eval', 'exec', 'exit', 'export', 'fc', 'fg', 'fi', 'for', 'function', 'getopts', 'hash', 'if', 'in',
  'jobs', 'kill', 'local', 'printf', 'pwd', 'read', 'readonly', 'return', 'select', 'set', 'shift', 'source',
  'then', 'time', 'times', 'trap', 'type', 'ulimit', 'umask', 'unalias', 'unset', 'until', 'wait', 'while'
])

// The base environment of tasks sent with envAdd: ours, less meshfarm's own settings. Sending only the
// additions keeps each request a few hundred bytes instead of the whole environment.
const BASE_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MESHFARM_')))

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

function handle (line) {
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    process.stderr.write(`meshfarm launcher: ignoring bad request line (${line.length} bytes)\n`)
    return
  }
  if (typeof msg?.id !== 'number') return
  if (msg.op === 'run') start(msg)
  else if (msg.op === 'kill') kill(msg.id, msg.signal || 'SIGTERM')
}

// ---- running a task: its commands in sequence, each in its own process group ----

function start (msg) {
  const t = {
    id: msg.id,
    commands: Array.isArray(msg.commands) ? msg.commands : [],
    next: 0,
    child: null,
    fdOut: -1,
    fdErr: -1,
    opts: null,
    killing: false,
    timedOut: false,
    timer: null,
    graceTimer: null,
    notifyStart: msg.notifyStart === true,
    startedAt: Date.now()
  }
  if (tasks.has(t.id)) return reply(t, null, null, `duplicate task id ${t.id}`)
  tasks.set(t.id, t)
  try {
    t.fdOut = openSync(msg.stdout, 'w')
    t.fdErr = msg.stderr === msg.stdout ? t.fdOut : openSync(msg.stderr, 'w')
  } catch (err) {
    return finish(t, null, null, `cannot open output file: ${err.message}`)
  }
  t.opts = { cwd: msg.cwd, env: msg.env || (msg.envAdd ? { ...BASE_ENV, ...msg.envAdd } : process.env), stdio: ['ignore', t.fdOut, t.fdErr], detached: true }
  if (msg.timeoutMs > 0) t.timer = setTimeout(onTimeout, msg.timeoutMs, t)
  runNext(t)
  if (t.notifyStart && t.child?.pid !== undefined) send({ op: 'started', id: t.id, pid: t.child.pid, startedAt: t.startedAt })
}

/** argv for a plain command that can skip the shell, or null. */
function plainArgv (cmd) {
  if (!PLAIN.test(cmd)) return null
  const words = cmd.split(' ').filter(w => w !== '')
  // "A=1 cmd" is an environment assignment, which only the shell understands.
  if (words.length === 0 || words[0].includes('=') || SHELL_WORDS.has(words[0])) return null
  return words
}

function runNext (t) {
  if (t.killing || t.next >= t.commands.length) return finish(t, 0, null, null)
  const cmd = String(t.commands[t.next++])
  const argv = plainArgv(cmd)
  let child
  try {
    child = argv !== null ? spawn(argv[0], argv.slice(1), t.opts) : spawn('/bin/sh', ['-c', cmd], t.opts)
  } catch (err) {
    return finish(t, null, null, `spawn failed: ${err.message}`)
  }
  t.child = child
  child.once('exit', (code, signal) => onExit(t, child, code, signal))
  child.once('error', err => onSpawnError(t, child, argv, err))
}

function onExit (t, child, code, signal) {
  if (t.child !== child) return
  t.child = null
  // A cancelled task's leader is gone; take any stragglers in its group with it.
  if (t.killing) signalGroup(child.pid, 'SIGKILL')
  if (code === 0 && !t.killing) return runNext(t)
  finish(t, code, signal, null)
}

/** The command never ran. Mimic the shell's exit codes for a missing or non-executable program. */
function onSpawnError (t, child, argv, err) {
  if (t.child !== child) return
  t.child = null
  if (err.code === 'ENOENT' && !existsSync(t.opts.cwd)) return finish(t, null, null, `working folder not found: ${t.opts.cwd}`)
  if (argv !== null && (err.code === 'ENOENT' || err.code === 'EACCES')) {
    const [exitCode, why] = err.code === 'ENOENT' ? [127, 'command not found'] : [126, 'permission denied']
    const text = `meshfarm: ${argv[0]}: ${why}`
    try { writeSync(t.fdErr, text + '\n') } catch {}
    return finish(t, exitCode, null, text)
  }
  finish(t, null, null, `spawn failed: ${err.message}`)
}

function finish (t, exitCode, signal, error) {
  clearTimeout(t.timer)
  clearTimeout(t.graceTimer)
  // Output sizes at exit: most tasks write nothing to stderr, and the agent need not open an empty file.
  t.stdoutBytes = t.fdOut >= 0 ? fstatSync(t.fdOut).size : null
  t.stderrBytes = t.fdErr >= 0 ? fstatSync(t.fdErr).size : null
  if (t.fdOut >= 0) closeSync(t.fdOut)
  if (t.fdErr >= 0 && t.fdErr !== t.fdOut) closeSync(t.fdErr)
  t.fdOut = t.fdErr = -1
  tasks.delete(t.id)
  reply(t, exitCode, signal, error)
}

function reply (t, exitCode, signal, error) {
  send({ op: 'exit', id: t.id, exitCode, signal, timedOut: t.timedOut, error, startedAt: t.startedAt, endedAt: Date.now(), stdoutBytes: t.stdoutBytes ?? null, stderrBytes: t.stderrBytes ?? null })
}

// ---- cancel and timeout ----

function signalGroup (pid, signal) {
  if (!(pid > 0)) return
  try { process.kill(-pid, signal) } catch {} // ESRCH: already gone; bad names are ignored too
}

/** Signal the task's process group, stop its sequence, and SIGKILL the group if it outlives the grace period. */
function kill (id, signal) {
  const t = tasks.get(id)
  if (t === undefined) return
  const first = !t.killing
  t.killing = true
  if (t.child !== null) signalGroup(t.child.pid, signal)
  if (first && signal !== 'SIGKILL') {
    t.graceTimer = setTimeout(() => { if (t.child !== null) signalGroup(t.child.pid, 'SIGKILL') }, KILL_GRACE_MS)
  }
}

function onTimeout (t) {
  t.timedOut = true
  kill(t.id, 'SIGTERM')
}

/** The agent is gone: no task may outlive it. */
function shutdown () {
  for (const t of tasks.values()) if (t.child !== null) signalGroup(t.child.pid, 'SIGKILL')
  process.exit(0)
}
