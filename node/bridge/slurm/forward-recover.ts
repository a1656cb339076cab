/**
 * A restarted bridge finds its forward chunks again: the intent log reconciled with one squeue and the disk
 * (chunk-files.ts recover: adopt, follow, wait, or submit what never reached Slurm; cancel nothing), then each open
 * chunk's tasks handed back to the backend to follow, and those still unreported returned for the agent to adopt.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Assignment } from '../../../shared/protocol/messages.ts'
import { MeshfarmError, errorMessage } from '../../../shared/util/errors.ts'
import type { BatchSystem } from './batch-system.ts'
import type { IntentLog } from './intent-log.ts'
import { recover, sbatchRunningIn } from './chunk-files.ts'
import type { ChunkRecord, ForwardBackend } from './forward.ts'

export interface RecoverOptions {
  batch: BatchSystem
  intents: IntentLog
  bridgeId: string
  /** Attempts whose results or vacate notices wait in the agent's outbox: reported, not to be adopted. */
  pending: ReadonlySet<number>
  say: (line: string) => void
  now: () => number
  /** Tries while Slurm answers with transient errors (default 6, about a minute). */
  tries?: number
}

/** Indexes of a chunk already reported (the backend appends to resolved.txt as it resolves them). */
function resolvedIn (dir: string): Set<number> {
  try {
    return new Set(readFileSync(join(dir, 'resolved.txt'), 'utf8').split('\n').filter(l => /^\d+$/.test(l)).map(Number))
  } catch {
    return new Set()
  }
}

function readRecord (dir: string): ChunkRecord {
  const v = JSON.parse(readFileSync(join(dir, 'chunk.json'), 'utf8')) as ChunkRecord
  if (v == null || typeof v !== 'object' || !Array.isArray(v.tasks) || v.spec == null || v.spec.chunkDir !== dir) throw new Error('not a chunk record')
  return v
}

/** Reconciles, hands open chunks to the backend, returns the attempts to adopt. */
export async function recoverForward (backend: ForwardBackend, o: RecoverOptions): Promise<Assignment[]> {
  if (o.intents.open().length === 0) return []
  let r = await recover(o.batch, o.intents, o.bridgeId, o.now)
  for (let i = 1, wait = 2000; !r.ok && r.error.kind === 'transient' && i < (o.tries ?? 6); i++, wait *= 2) {
    o.say(`slurm: restart: ${r.error.message}; trying again in ${wait / 1000} s`)
    await sleep(wait)
    r = await recover(o.batch, o.intents, o.bridgeId, o.now)
  }
  if (!r.ok) throw new MeshfarmError('NO_COORDINATOR', `slurm: cannot find this bridge's jobs again: ${r.error.message}`)
  const adopted: Assignment[] = []
  const tally = new Map<string, number>()
  for (const a of r.value) {
    tally.set(a.kind, (tally.get(a.kind) ?? 0) + 1)
    if (a.kind === 'leave') {
      o.say(`slurm: restart: job ${a.jobId} (${a.label}): ${a.why}`)
      continue
    }
    const entry = o.intents.get(a.key)
    if (entry == null) continue
    let record: ChunkRecord
    try {
      record = readRecord(entry.chunkDir)
    } catch (err) {
      o.say(`slurm: restart: ${a.key}: ${entry.chunkDir}/chunk.json: ${errorMessage(err)}; its tasks go back to the mesh`)
      continue
    }
    const resolved = resolvedIn(entry.chunkDir)
    record.tasks.forEach((t, i) => { if (o.pending.has(t.attemptId)) resolved.add(i) })
    o.say(`slurm: restart: ${a.key}: ${a.kind}${entry.jobId != null ? ` ${entry.jobId}` : ''}: ${a.why}`)
    if (a.kind === 'wait') {
      backend.resume(record, a.key, resolved, async () => {
        while (sbatchRunningIn().has(entry.chunkDir)) await sleep(1000)
      })
    } else {
      backend.follow(record, a.key, o.intents.get(a.key)?.jobId ?? null, resolved)
    }
    record.tasks.forEach((t, i) => { if (!resolved.has(i) && t.assignment != null) adopted.push(t.assignment) })
  }
  o.say(`slurm: restart: ${[...tally].map(([k, n]) => `${n} ${k}`).join(', ')}; ${adopted.length} task(s) adopted, none submitted twice, nothing cancelled`)
  return adopted
}
