/**
 * The native task launcher (launcher.c, json.c, child.c, request.c), built with the machine's C compiler into the agent's
 * state folder the first time an agent starts, and again only when the sources change. Where there is no
 * compiler (or MESHFARM_LAUNCHER=js), the agent uses launcher.mjs: same protocol, fewer features.
 */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const SOURCES = ['launcher.c', 'json.c', 'child.c', 'request.c'].map(f => fileURLToPath(new URL(`./${f}`, import.meta.url)))
const HEADER = fileURLToPath(new URL('./launcher.h', import.meta.url))

/** The launcher command to use: the native binary's path, or null for the Node launcher. */
export function nativeLauncher (dir: string, log: (line: string) => void, cc = 'cc'): string[] | null {
  const h = createHash('sha256')
  for (const f of [...SOURCES, HEADER]) h.update(readFileSync(f))
  const binary = join(dir, `launcher-${h.digest('hex').slice(0, 12)}`)
  if (existsSync(binary)) return [binary]
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const tmp = `${binary}.${process.pid}.tmp`
  const r = spawnSync(cc, ['-O2', '-o', tmp, ...SOURCES], { encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) {
    rmSync(tmp, { force: true })
    const why = r.error != null ? r.error.message : (r.stderr.split('\n').find(l => l.includes('error')) ?? `exit ${String(r.status)}`)
    log(`agent: using the Node task launcher (no native one: ${cc}: ${why.trim()})`)
    return null
  }
  renameSync(tmp, binary)
  return [binary]
}
