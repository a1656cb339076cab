/**
 * Debian's Chromium for the browser tests: installed by setup.sh when missing (Playwright cannot download
 * browsers on this closed network), checked once per process. Launch flags keep Chromium from dialling
 * out (its background connections are refused here and would slow or break the tests).
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export type ChromiumCheck = { ok: true, executablePath: string, version: string } | { ok: false, reason: string }

const SETUP = fileURLToPath(new URL('./setup.sh', import.meta.url))

export const CHROMIUM_FLAGS = [
  '--headless', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'
]

/** The flags for this machine: `--no-sandbox` only when running as root (Chromium refuses root otherwise). */
export function chromiumArgs (extra: string[] = []): string[] {
  return [...CHROMIUM_FLAGS, ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), ...extra]
}

function run (file: string, args: string[], timeoutMs: number): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile(file, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err == null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

let once: Promise<ChromiumCheck> | null = null

export function ensureChromium (): Promise<ChromiumCheck> {
  once ??= (async (): Promise<ChromiumCheck> => {
    const setup = await run('sh', [SETUP], 600_000)
    if (setup.code !== 0) return { ok: false, reason: setup.stderr.trim() || `setup.sh exited ${setup.code}` }
    const executablePath = setup.stdout.trim().split('\n').pop()!
    const v = await run(executablePath, ['--version'], 30_000)
    if (v.code !== 0) return { ok: false, reason: `${executablePath} --version failed: ${v.stderr.trim()}` }
    return { ok: true, executablePath, version: v.stdout.trim() }
  })()
  return once
}
