/**
 * Forward mode: the bridge offers a partition's capacity and sends the tasks it gets to Slurm as job arrays
 * (ForwardBackend). Its intent log lives in the agent's state folder; after a restart it adopts what Slurm still
 * runs (forward-recover.ts). The tick refreshes the partition's capacity and says what waits in Slurm, and why.
 */
import { join } from 'node:path'
import { MeshfarmError } from '../../../shared/util/errors.ts'
import type { BatchSystem, PartitionInfo, SlurmConfig } from './batch-system.ts'
import { IntentLog } from './intent-log.ts'
import { chunkLimit } from './script.ts'
import { ForwardBackend } from './forward.ts'
import { recoverForward } from './forward-recover.ts'
import { describeOffer, describePartition, partitionLimits, partitionOffer, type OfferBase } from './offer.ts'
import type { BridgeConfig } from './bridge-config.ts'
import type { BridgeMode } from './mode.ts'

/** The partition's capacity is read again this often (nodes go down, come back). */
const PARTITION_REFRESH_MS = 60_000

export const SLURM_ISOLATION = 'isolation: tasks run in Slurm as this user, with no sandbox of meshfarm\'s (Slurm gives none beyond the user\'s account: they can read what this user can, the state folder included)'

/** A bridge's name in Slurm job names and comments: the end of its peer id. */
export function bridgeIdOf (peerId: string): string {
  return peerId.slice(-12).replace(/[^A-Za-z0-9]/g, '_')
}

/** The partition, or one line: an unknown one is the user's mistake (exit 2), anything else Slurm's. */
export async function readPartition (batch: BatchSystem, name: string): Promise<PartitionInfo> {
  const p = await batch.partition(name)
  if (p.ok) return p.value
  if (/Invalid partition name/i.test(p.error.message)) throw new MeshfarmError('BAD_ARGUMENT', `--partition ${name}: ${p.error.message.replace(/^\w+: /, '')} (sinfo lists the partitions)`)
  throw new MeshfarmError('REMOTE', p.error.message)
}

export async function forwardMode (batch: BatchSystem, slurm: SlurmConfig, config: BridgeConfig, offer: OfferBase, say: (line: string) => void): Promise<BridgeMode> {
  const name = config.partition!
  let partition = await readPartition(batch, name)
  if (partition.state !== 'UP') say(`bridge: partition ${name} is ${partition.state}: no tasks are taken until it is UP`)
  let resources = partitionOffer(partition, config.maxJobs, offer)
  let backend: ForwardBackend | null = null
  let checkedAt = Date.now()
  const limit = chunkLimit(slurm)
  return {
    resources,
    describe: describeOffer(resources, `forward to ${describePartition(partition)}, as job arrays of up to ${limit} tasks, one squeue every ${config.pollMs / 1000} s`),
    runner: {
      isolationLine: SLURM_ISOLATION,
      create: async ctx => {
        const intents = IntentLog.open(join(ctx.paths.state, 'slurm-intents.log'))
        const bridgeId = bridgeIdOf(ctx.peerId)
        backend = new ForwardBackend({
          batch, intents, bridgeId, workDir: ctx.paths.work, partition: partitionLimits(partition), chunkLimit: limit, pollMs: config.pollMs, say: ctx.log,
          placement: { partition: name, ...(config.account != null ? { account: config.account } : {}), extraArgs: [...config.sbatchArgs] },
          ...(config.throttle != null ? { throttle: config.throttle } : {})
        })
        const adopted = await recoverForward(backend, { batch, intents, bridgeId, pending: ctx.pending, say: ctx.log, now: Date.now })
        return { backend, adopted }
      }
    },
    attach: () => {},
    tick: async now => {
      let changed = false
      if (now - checkedAt >= PARTITION_REFRESH_MS) {
        checkedAt = now
        const p = await batch.partition(name)
        if (p.ok) {
          partition = p.value
          const next = partitionOffer(partition, config.maxJobs, offer)
          if (JSON.stringify(next) !== JSON.stringify(resources)) { resources = next; changed = true }
          backend?.setPartition(partitionLimits(partition))
        }
      }
      return { ...(changed ? { resources } : {}), notes: backend?.notes() ?? [] }
    },
    close: async () => {}
  }
}
