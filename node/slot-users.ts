/**
 * Slot users, as HTCondor has them: a root agent runs each slot's tasks as its own unprivileged system user
 * (meshfarm-slot1, meshfarm-slot2, ...; group meshfarm-slots), created with useradd when missing.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { MeshfarmError } from '../shared/util/errors.ts'
import type { SlotUser } from './backend/launch-plan.ts'

const run = promisify(execFile)
const GROUP = 'meshfarm-slots'

export function slotUserName (slot: number): string {
  return `meshfarm-slot${slot + 1}`
}

async function lookup (name: string): Promise<SlotUser | null> {
  try {
    const uid = Number((await run('id', ['-u', name])).stdout.trim())
    const gid = Number((await run('id', ['-g', name])).stdout.trim())
    return Number.isInteger(uid) && uid > 0 && Number.isInteger(gid) && gid > 0 ? { name, uid, gid } : null
  } catch {
    return null
  }
}

/** Several agents may start at once: useradd then finds /etc/passwd locked, or the user just made. */
async function withRetries<T> (what: string, fn: () => Promise<T | null>): Promise<T> {
  let last = ''
  for (let i = 0; i < 30; i++) {
    try {
      const v = await fn()
      if (v != null) return v
    } catch (err) {
      last = ((err as { stderr?: string }).stderr ?? (err as Error).message).trim().split('\n')[0]
    }
    await new Promise(resolve => setTimeout(resolve, 50 + Math.random() * 200))
  }
  throw new MeshfarmError('FORBIDDEN', `cannot create the slot user ${what}: ${last}`)
}

/** The users for slots 0..count-1, created when missing. */
export async function ensureSlotUsers (count: number, log: (line: string) => void): Promise<SlotUser[]> {
  const users: SlotUser[] = []
  let created = 0
  for (let slot = 0; slot < count; slot++) {
    const name = slotUserName(slot)
    let user = await lookup(name)
    if (user == null) {
      user = await withRetries(name, async () => {
        await run('groupadd', ['-f', '--system', GROUP]).catch(() => {})
        await run('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--gid', GROUP, name]).catch(() => {})
        return await lookup(name)
      })
      created++
    }
    users.push(user)
  }
  if (created > 0) log(`agent: created ${created} slot user(s) (${slotUserName(0)}..${slotUserName(count - 1)})`)
  return users
}
