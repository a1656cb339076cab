/** Where bubblewrap is installed, if it is (MESHFARM_BWRAP overrides; "none" hides it). */
import { accessSync, constants } from 'node:fs'
import { join } from 'node:path'

export function findBwrap (env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.MESHFARM_BWRAP === 'none') return null
  const candidates = env.MESHFARM_BWRAP != null ? [env.MESHFARM_BWRAP] : (env.PATH ?? '/usr/bin:/bin').split(':').filter(Boolean).map(d => join(d, 'bwrap'))
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK)
      return c
    } catch {}
  }
  return null
}
