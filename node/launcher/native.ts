/**
 * The native task launcher (node/launcher.c), built with the machine's C compiler into the agent's state folder
 * the first time an agent starts, and again only when the source changes. Where there is no compiler (or
 * MESHFARM_LAUNCHER=js), the agent uses launcher.mjs: same protocol, same behaviour, slower spawns.
 */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const SOURCE = fileURLToPath(new URL('./launcher.c', import.meta.url))

/** The launcher command to use: the native binary's path, or null for the Node launcher. */
export function nativeLauncher (dir: string, log: (line: string) => void): string[] | null {
  if (process.env.MESHFARM_LAUNCHER === 'js') return null
  const version = createHash('sha256').update(readFileSync(SOURCE)).digest('hex').slice(0, 12)
  const binary = join(dir, `launcher-${version}`)
  if (existsSync(binary)) return [binary]
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const cc = process.env.CC ?? 'cc'
  const tmp = `${binary}.${process.pid}.tmp`
  const r = spawnSync(cc, ['-O2', '-o', tmp, SOURCE], { encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) {
    rmSync(tmp, { force: true })
    const why = r.error != null ? r.error.message : (r.stderr.split('\n').find(l => l.includes('error')) ?? `exit ${String(r.status)}`)
    log(`agent: using the Node task launcher (no native one: ${cc}: ${why.trim()})`)
    return null
  }
  renameSync(tmp, binary)
  return [binary]
}
