/**
 * What every subcommand needs: the state folder, a connected client, the --json switch, and one way to stop a
 * long-running service on SIGINT/SIGTERM. Subcommands parse, call the API, and hand results to output.ts.
 */
import type { Command } from 'commander'
import { resolveHome } from '../shared/local/home.ts'
import type { MeshClient } from '../shared/client/client.ts'
import { compileClient } from './config.ts'
import { colourEnabled, colours, type Colours } from './colour.ts'

export interface CliContext {
  program: Command
  home: () => string
  withClient: <T>(fn: (c: MeshClient) => Promise<T>) => Promise<T>
  /** Styles for what goes to stdout: ANSI colours on a terminal (NO_COLOR, FORCE_COLOR), plain text elsewhere. */
  paint: Colours
}

export function cliContext (program: Command, stdout: { isTTY?: boolean } = process.stdout, env: NodeJS.ProcessEnv = process.env): CliContext {
  const home = (): string => resolveHome(program.opts().home)
  return {
    program,
    home,
    paint: colours(colourEnabled(stdout, env)),
    withClient: async <T>(fn: (c: MeshClient) => Promise<T>): Promise<T> => {
      // libp2p and the client load only for commands that talk to the mesh (`meshfarm --version` stays quick).
      const { connect } = await import('../shared/client/client.ts')
      const client = await connect({ home: home(), timeoutMs: compileClient(process.env).discoveryMs })
      try {
        return await fn(client)
      } finally {
        await client.close()
      }
    }
  }
}

/** Every value given to a repeatable flag. */
export function collect (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

/**
 * Runs a service until SIGINT/SIGTERM (or until it ends by itself), then stops it within a grace period.
 * Resolves with what `ended` resolved with, or null after a signal.
 */
export async function untilSignal<T> (stop: () => Promise<void>, ended: Promise<T>): Promise<T | null> {
  return await new Promise(resolvePromise => {
    let stopping = false
    const onSignal = async (): Promise<void> => {
      if (stopping) return
      stopping = true
      const force = setTimeout(() => { process.exit(0) }, 10_000)
      force.unref()
      await stop().catch(() => {})
      resolvePromise(null)
    }
    process.once('SIGINT', () => { void onSignal() })
    process.once('SIGTERM', () => { void onSignal() })
    void ended.then(v => { if (!stopping) { stopping = true; resolvePromise(v) } })
  })
}

export async function readStdin (prompt: string): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write(`${prompt}\n`)
  let text = ''
  for await (const chunk of process.stdin) text += String(chunk)
  return text
}
