/** Running the meshfarm CLI as a user would, from tests. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { CLI_ENTRY, TS_ARGS } from '../../bin/processes.ts'

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

/** `input`: what the CLI reads on standard input (none: stdin is closed). */
export async function runCli (home: string, args: string[], opts: { cwd?: string, timeoutMs?: number, env?: NodeJS.ProcessEnv, input?: string } = {}): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...TS_ARGS, CLI_ENTRY, '--home', home, ...args], {
      cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: [opts.input != null ? 'pipe' : 'ignore', 'pipe', 'pipe'] as Array<'pipe' | 'ignore'>
    }) as ChildProcessWithoutNullStreams
    if (opts.input != null) child.stdin.end(opts.input)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`meshfarm ${args.join(' ')} timed out: ${stdout} ${stderr}`)) }, opts.timeoutMs ?? 120_000)
    child.on('exit', code => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }) })
  })
}

export async function runCliJson<T> (home: string, args: string[], opts: { cwd?: string, timeoutMs?: number } = {}): Promise<T> {
  const r = await runCli(home, [...args, '--json'], opts)
  if (r.code !== 0) throw new Error(`meshfarm ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as T
}

export async function until (cond: () => Promise<boolean> | boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await cond()) return
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  throw new Error(`timed out waiting for ${what}`)
}
