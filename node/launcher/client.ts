/**
 * Agent side of a task launcher (launcher.c or launcher.mjs): a small process forked once that spawns, signals
 * and waits for tasks, because spawning from the big agent process is slow and Node cannot prepare a sandbox
 * between fork and exec. Requests and replies are newline-delimited JSON; see launcher.c for the protocol.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Socket } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import type { ProcessEnd } from '../backend/backend.ts'

export interface Bind { src: string, dst: string, ro: boolean }

/** Mount isolation built by the native launcher before exec (see child.c). */
export interface SandboxSpec {
  /** A new user namespace (the launcher is not root, or tests the unprivileged path as root). */
  userns: boolean
  /** Folders covered by an empty tmpfs (the mesh's state folder, the work root). */
  hide: string[]
  /** Folders bound back into the covered ones: the task's own (rw), its job's shared files (ro). */
  binds: Bind[]
}

export type LimitValue = number | 'unlimited'

export interface SpawnRequest {
  argv: string[]
  cwd: string
  /** The whole environment; or, with `envAdd`, nothing: the launcher's own environment is the base. */
  env?: Record<string, string>
  /** Variables laid over the launcher's environment (less its MESHFARM_* variables): a few bytes per task. */
  envAdd?: Record<string, string>
  stdoutPath: string
  stderrPath: string
  /** Run as this user (slot users; the launcher must be root). */
  user?: { uid: number, gid: number }
  sandbox?: SandboxSpec
  /** cgroup.procs files the child writes its own pid into before exec. */
  cgroupProcs?: string[]
  nice?: number
  ioprio?: { class: number, level: number }
  rlimits?: Record<string, [LimitValue, LimitValue]>
}

export type SpawnResult = ProcessEnd

/** What a launcher can do besides spawning: 'sandbox', 'user', 'cgroup', 'nice', 'ioprio', 'rlimits', 'peak-memory'. */
export type LauncherFeature = 'sandbox' | 'user' | 'cgroup' | 'nice' | 'ioprio' | 'rlimits' | 'peak-memory'

interface Pending {
  resolve: (r: SpawnResult) => void
  onStart?: (pid: number) => void
  sentAt: number
}

type LauncherProcess = ChildProcessByStdio<Writable, Readable, null>

const LAUNCHER_PATH = fileURLToPath(new URL('./launcher.mjs', import.meta.url))

/** How to start the plain-JS launcher; a native one (native.ts) is just a path. */
export const NODE_LAUNCHER: readonly string[] = [process.execPath, LAUNCHER_PATH]

export class Launcher {
  private proc: LauncherProcess | null = null
  private readonly command: readonly string[]
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private outBuf: string[] = []
  private flushQueued = false
  private partial = ''
  private closing = false
  private helloPending = false
  private gotFeatures!: (f: ReadonlySet<LauncherFeature>) => void
  /** Resolves with what the launcher announced at start. */
  readonly features: Promise<ReadonlySet<LauncherFeature>>

  constructor (command: readonly string[] = NODE_LAUNCHER) {
    this.command = command
    this.features = new Promise(resolve => { this.gotFeatures = resolve })
  }

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

  /** Starts a task. onStart fires once its program runs. The promise never rejects. */
  spawn (req: SpawnRequest, onStart?: (pid: number) => void): { id: number, done: Promise<SpawnResult> } {
    this.ensureProcess()
    const id = this.nextId++
    const done = new Promise<SpawnResult>(resolve => {
      this.pending.set(id, { resolve, onStart, sentAt: Date.now() })
    })
    if (this.pending.size === 1) this.setRef(true)
    const { stdoutPath, stderrPath, ...rest } = req
    this.write({ op: 'spawn', id, ...rest, stdout: stdoutPath, stderr: stderrPath })
    return { id, done }
  }

  /** Signals the task (its process group, or everything in its namespace). */
  signal (id: number, signal: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.pending.has(id)) return
    this.write({ op: 'signal', id, signal })
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
    proc.stdin.on('error', () => {}) // EPIPE when it dies; 'close' handles that
    // 'close', not 'exit': replies written just before dying are still read first.
    proc.once('close', () => this.onProcessExit(proc))
    proc.once('error', () => this.onProcessExit(proc))
    this.proc = proc
    // Held until the launcher has said hello: a process waiting for its features must not exit meanwhile.
    this.setRef(true)
    this.helloPending = true
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
      queueMicrotask(() => this.flush()) // one pipe write per burst of requests
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
    let msg: Record<string, unknown>
    try {
      msg = JSON.parse(line)
    } catch {
      return // the launcher only writes JSON; ignore anything else rather than crash the agent
    }
    if (msg.op === 'hello') {
      const features = Array.isArray(msg.features) ? msg.features.filter((f): f is LauncherFeature => typeof f === 'string') : []
      this.gotFeatures(new Set(features))
      this.helloPending = false
      if (this.pending.size === 0 && !this.closing) this.setRef(false)
      return
    }
    const id = typeof msg.id === 'number' ? msg.id : -1
    const p = this.pending.get(id)
    if (p == null) return
    if (msg.op === 'started') {
      p.onStart?.(typeof msg.pid === 'number' ? msg.pid : 0)
      return
    }
    if (msg.op !== 'exit') return
    const num = (v: unknown): number | null => typeof v === 'number' && Number.isFinite(v) ? v : null
    this.settle(id, {
      exitCode: num(msg.exitCode),
      signal: typeof msg.signal === 'string' ? msg.signal : null,
      error: typeof msg.error === 'string' ? msg.error : null,
      startedAt: num(msg.startedAt) ?? p.sentAt,
      endedAt: num(msg.endedAt) ?? Date.now(),
      stdoutBytes: num(msg.stdoutBytes),
      stderrBytes: num(msg.stderrBytes),
      peakMemoryBytes: num(msg.peakMemoryBytes)
    })
  }

  private settle (id: number, result: SpawnResult): void {
    const p = this.pending.get(id)
    if (p == null) return
    this.pending.delete(id)
    if (this.pending.size === 0 && !this.helloPending) this.setRef(false)
    p.resolve(result)
  }

  /** The launcher is gone: every pending task ends with an error, and the next spawn() forks a new one. */
  private onProcessExit (proc: LauncherProcess): void {
    if (this.proc !== proc) return
    this.proc = null
    this.outBuf = []
    this.flushQueued = false
    this.gotFeatures(new Set())
    const error = this.closing ? 'launcher closed' : 'launcher died'
    const now = Date.now()
    for (const [id, p] of [...this.pending]) {
      this.settle(id, { exitCode: null, signal: null, error, startedAt: p.sentAt, endedAt: now, stdoutBytes: null, stderrBytes: null, peakMemoryBytes: null })
    }
  }
}
