/**
 * One agent per state folder. Two agents with the same identity would take each other's sessions over and
 * over, and each would delete the other's task folders as leftovers of a crash. The lock is a file holding the
 * owner's pid, created exclusively; a lock whose process is gone (kill -9, a reboot) is taken over.
 */
import { openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { MeshfarmError } from '../shared/util/errors.ts'

export function lockAgentDir (agentDir: string): () => void {
  const path = join(agentDir, 'agent.pid')
  for (let tries = 0; tries < 3; tries++) {
    try {
      const fd = openSync(path, 'wx', 0o600)
      writeSync(fd, `${process.pid}\n`)
      closeSync(fd)
      return () => { try { if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path) } catch {} }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const owner = Number(readFileSync(path, 'utf8').trim())
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
      throw new MeshfarmError('BAD_ARGUMENT', `another agent (pid ${owner}) already uses ${agentDir}; stop it, or give this one its own --home`)
    }
    // Left by an agent that died: take it over.
    try { unlinkSync(path) } catch {}
  }
  throw new MeshfarmError('BAD_ARGUMENT', `cannot lock ${path}`)
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
