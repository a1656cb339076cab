/**
 * Agent side of the task launcher (node/launcher.mjs): a small process forked once that spawns tasks,
 * because spawning from the big agent process is slow. Requests and replies are newline-delimited JSON.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Socket } from 'node:net'
import type { Readable, Writable } from 'node:stream'

export interface RunRequest {
  commands: string[]
  cwd: string
  /** The whole environment; or, with `envAdd`, nothing: the launcher's own environment is the base. */
  env?: Record<string, string>
  /** Variables laid over the launcher's environment (less its MESHFARM_* variables): a few bytes per task. */
  envAdd?: Record<string, string>
  stdoutPath: string
  stderrPath: string
  timeoutMs: number
}

export interface RunResult {
  exitCode: number | null
  signal: string | null
  timedOut: boolean
  error: string | null
  startedAt: number
  endedAt: number
  /** Sizes of the stdout and stderr files when the task ended (null if unknown). */
  stdoutBytes?: number | null
  stderrBytes?: number | null
}

interface Pending {
  resolve: (r: RunResult) => void
  onStart?: () => void
  sentAt: number
}

type LauncherProcess = ChildProcessByStdio<Writable, Readable, null>

const LAUNCHER_PATH = fileURLToPath(new URL('./launcher.mjs', import.meta.url))

/** How to start the plain-JS launcher; a native one (node/native-launcher.ts) is just a path. */
export const NODE_LAUNCHER: readonly string[] = [process.execPath, LAUNCHER_PATH]

export class Launcher {
  private proc: LauncherProcess | null = null
  private readonly command: readonly string[]

  constructor (command: readonly string[] = NODE_LAUNCHER) {
    this.command = command
  }
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private outBuf: string[] = []
  private flushQueued = false
  private partial = ''
  private closing = false

  /** Forks the launcher process. */
  static start (command: readonly string[] = NODE_LAUNCHER): Launcher {
    const l = new Launcher(command)
    l.ensureProcess()
    return l
  }

  /** Tasks sent and not yet finished. */
  get running (): number {
    return this.pending.size
  }

  /** pid of the launcher process, if one is up (tests and diagnostics). */
  get pid (): number | undefined {
    return this.proc?.pid
  }

  /** Starts a task. onStart fires once its first command has been spawned. The promise never rejects. */
  run (req: RunRequest, onStart?: () => void): { id: number, done: Promise<RunResult> } {
    this.ensureProcess()
    const id = this.nextId++
    const done = new Promise<RunResult>(resolve => {
      this.pending.set(id, { resolve, onStart, sentAt: Date.now() })
    })
    if (this.pending.size === 1) this.setRef(true)
    this.write({
      op: 'run',
      id,
      commands: req.commands,
      cwd: req.cwd,
      env: req.env,
      envAdd: req.envAdd,
      stdout: req.stdoutPath,
      stderr: req.stderrPath,
      timeoutMs: req.timeoutMs,
      notifyStart: onStart != null
    })
    return { id, done }
  }

  /** Signals the task's whole process group; the launcher escalates to SIGKILL after 5 s. */
  kill (id: number, signal: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.pending.has(id)) return
    this.write({ op: 'kill', id, signal })
  }

  /** Closes the launcher's stdin (it then SIGKILLs running tasks) and waits for it to exit. */
  async close (): Promise<void> {
    const proc = this.proc
    if (proc == null) return
    this.closing = true
    this.flush()
    this.setRef(true) // keep the loop alive until the exit is seen
    const exited = new Promise<void>(resolve => proc.once('close', () => resolve()))
    proc.stdin.end()
    await exited
  }

  // ---- internals ----

  private ensureProcess (): void {
    if (this.proc != null) return
    this.closing = false
    this.partial = ''
    const proc = spawn(this.command[0], this.command.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] })
    proc.stdout.setEncoding('utf8')
    proc.stdout.on('data', (chunk: string) => this.onData(chunk))
    proc.stdin.on('error', () => {}) // EPIPE when it dies; 'exit' handles that
    // 'close', not 'exit': replies written just before dying are still read first.
    proc.once('close', () => this.onProcessExit(proc))
    proc.once('error', () => this.onProcessExit(proc))
    this.proc = proc
    this.setRef(this.pending.size > 0)
  }

  /** An idle launcher must not keep the agent's event loop alive. */
  private setRef (on: boolean): void {
    const proc = this.proc
    if (proc == null) return
    const stdout = proc.stdout as Socket
    if (on) {
      proc.ref()
      stdout.ref()
    } else {
      proc.unref()
      stdout.unref()
    }
  }

  private write (msg: object): void {
    this.outBuf.push(JSON.stringify(msg))
    if (!this.flushQueued) {
      this.flushQueued = true
      queueMicrotask(() => this.flush()) // one pipe write per burst of run() calls
    }
  }

  private flush (): void {
    this.flushQueued = false
    if (this.outBuf.length === 0 || this.proc == null) return
    const data = this.outBuf.join('\n') + '\n'
    this.outBuf = []
    this.proc.stdin.write(data)
  }

  private onData (chunk: string): void {
    const lines = (this.partial + chunk).split('\n')
    this.partial = lines.pop() ?? ''
    for (const line of lines) {
      if (line !== '') this.onReply(line)
    }
  }

  private onReply (line: string): void {
    let msg: { op?: string, id?: number } & Partial<RunResult>
    try {
      msg = JSON.parse(line)
    } catch {
      return // the launcher only writes JSON; ignore anything else rather than crash the agent
    }
    const p = msg.id != null ? this.pending.get(msg.id) : undefined
    if (p == null) return
    if (msg.op === 'started') {
      p.onStart?.()
      return
    }
    if (msg.op !== 'exit') return
    this.settle(msg.id as number, {
      exitCode: msg.exitCode ?? null,
      signal: msg.signal ?? null,
      timedOut: msg.timedOut === true,
      error: msg.error ?? null,
      startedAt: msg.startedAt ?? p.sentAt,
      endedAt: msg.endedAt ?? Date.now(),
      stdoutBytes: typeof msg.stdoutBytes === 'number' ? msg.stdoutBytes : null,
      stderrBytes: typeof msg.stderrBytes === 'number' ? msg.stderrBytes : null
    })
  }

  private settle (id: number, result: RunResult): void {
    const p = this.pending.get(id)
    if (p == null) return
    this.pending.delete(id)
    if (this.pending.size === 0) this.setRef(false)
    p.resolve(result)
  }

  /** The launcher is gone: every pending run ends with an error, and the next run() forks a new one. */
  private onProcessExit (proc: LauncherProcess): void {
    if (this.proc !== proc) return
    this.proc = null
    this.outBuf = []
    this.flushQueued = false
    const error = this.closing ? 'launcher closed' : 'launcher died'
    const now = Date.now()
    for (const [id, p] of [...this.pending]) {
      this.settle(id, { exitCode: null, signal: null, timedOut: false, error, startedAt: p.sentAt, endedAt: now })
    }
  }
}
