/**
 * Starting meshfarm processes (coordinator, agents) as children: used by the demo, the tests, the benchmark
 * and the chaos soak. Each child runs with the project's Node (which runs the TypeScript as it is) and its own state folder.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createServer } from 'node:net'
import { MeshfarmError } from '../shared/util/errors.ts'

export const CLI_ENTRY = fileURLToPath(new URL('./meshfarm.ts', import.meta.url))
/** Node 24 runs meshfarm's TypeScript as it is (erasable syntax only: types are stripped, nothing compiled). */
export const TS_ARGS: readonly string[] = []

export interface MeshProcess {
  child: ChildProcess
  /** Everything it printed so far. */
  output: () => string
  /** Resolves when a line matching `pattern` appears; rejects if the process exits first or on timeout. */
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>
  /** Resolves with the exit code (or signal name) once it has exited. */
  exited: Promise<number | string>
  stop: (signal?: NodeJS.Signals) => Promise<number | string>
}

export function startMeshfarm (args: string[], opts: { home: string, env?: NodeJS.ProcessEnv, logFile?: string, uid?: number, gid?: number, wrap?: string[], entry?: string }): MeshProcess {
  // `wrap` runs it through another command first (tests: `ip netns exec <host>`, a host of a simulated LAN);
  // `entry` another build of the CLI (the bundle, dist/meshfarm.mjs).
  const argv = [process.execPath, ...(opts.entry != null ? [opts.entry] : [...TS_ARGS, CLI_ENTRY]), '--home', opts.home, ...args]
  const command = [...(opts.wrap ?? []), ...argv]
  const child = spawn(command[0], command.slice(1), {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Tests run an agent as an ordinary user too (the one case where only the mount namespace keeps its keys).
    ...(opts.uid != null ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {})
  })
  let text = ''
  const waiters = new Set<() => void>()
  const log = opts.logFile != null ? createWriteStream(opts.logFile, { flags: 'a' }) : null
  const onData = (chunk: Buffer): void => {
    text += chunk.toString()
    if (text.length > 4_000_000) text = text.slice(-2_000_000)
    log?.write(chunk)
    for (const w of waiters) w()
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  const exited = new Promise<number | string>(resolve => {
    child.once('exit', (code, signal) => {
      log?.end()
      resolve(code ?? signal ?? -1)
      for (const w of waiters) w()
    })
  })
  const waitFor = async (pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> => {
    return await new Promise((resolve, reject) => {
      const check = (): void => {
        const m = text.match(pattern)
        if (m != null) { cleanup(); resolve(m); return }
        if (child.exitCode != null || child.signalCode != null) {
          cleanup()
          reject(new MeshfarmError('TIMEOUT', `process exited before printing ${pattern}: ${text.slice(-2000)}`))
        }
      }
      const timer = setTimeout(() => { cleanup(); reject(new MeshfarmError('TIMEOUT', `no ${pattern} within ${timeoutMs} ms: ${text.slice(-2000)}`)) }, timeoutMs)
      const cleanup = (): void => { clearTimeout(timer); waiters.delete(check) }
      waiters.add(check)
      check()
    })
  }
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> => {
    if (child.exitCode == null && child.signalCode == null) child.kill(signal)
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000)
    const code = await exited
    clearTimeout(t)
    return code
  }
  return { child, output: () => text, waitFor, exited, stop }
}

/** A TCP port that was free a moment ago on the given loopback address. */
export async function freePort (host = '127.0.0.1'): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, host, () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
  })
}
