/**
 * Allocation mode (`--in-allocation`, inside salloc or an sbatch script): the bridge offers the allocation it runs
 * in and runs tasks into it as srun steps. It never takes a task whose time limit passes the allocation's end
 * (maxTaskMs shrinks as the end approaches, sent with agent.update). At the drain (--drain-before the end, or
 * Slurm's USR1 from `--signal=B:USR1@120`), running tasks that cannot finish and everything not yet running go
 * back to the mesh (vacated: never lost, never counted against them); the bridge then stops, and with it the
 * allocation is released.
 */
import { MeshfarmError } from '../../../shared/util/errors.ts'
import type { BatchSystem } from './batch-system.ts'
import { allocationFromEnv } from './allocation.ts'
import { shortDuration } from './hostlist.ts'
import { allocationShape, tasksToVacate, type AllocationShape } from './steps-plan.ts'
import { StepBackend } from './steps.ts'
import { allocationOffer, describeOffer, type OfferBase } from './offer.ts'
import { SLURM_ISOLATION } from './forward-mode.ts'
import type { BridgeConfig } from './bridge-config.ts'
import type { BridgeMode } from './mode.ts'
import type { AgentService } from '../../agent.ts'

/** A running task that ends this close to the allocation's end is handed back rather than killed by Slurm. */
const END_MARGIN_MS = 10_000

export async function readAllocation (batch: BatchSystem, env: Record<string, string | undefined>): Promise<AllocationShape> {
  const fromEnv = allocationFromEnv(env)
  const d = await batch.details(fromEnv.jobId)
  if (!d.ok) throw new MeshfarmError('REMOTE', d.error.message)
  const job = d.value.find(x => x.jobId === fromEnv.jobId) ?? d.value[0]
  if (job == null) throw new MeshfarmError('NOT_FOUND', `--in-allocation: Slurm does not know job ${fromEnv.jobId}`)
  // The environment says exactly which CPUs each node has; scontrol adds the memory, GPUs and end.
  return { ...allocationShape(job), jobId: fromEnv.jobId, nodes: fromEnv.nodes }
}

/** Rounded down to 10 s, so the offer is not sent again at every poll as the end comes closer. */
const coarse = (ms: number | null): number | null => ms == null ? null : Math.floor(ms / 10_000) * 10_000

export async function allocationMode (batch: BatchSystem, config: BridgeConfig, offer: OfferBase, say: (line: string) => void, env: Record<string, string | undefined>): Promise<BridgeMode> {
  let shape = await readAllocation(batch, env)
  const id = shape.jobId
  let backend: StepBackend | null = null
  let agent: AgentService | null = null
  let usr1 = false
  let draining = false
  let endTimer: NodeJS.Timeout | undefined
  let over!: () => void
  const ended = new Promise<void>(resolve => { over = resolve })
  const capacity = (): ReturnType<StepBackend['capacity']> => {
    const c = backend!.capacity(shape.partition)
    return { ...c, maxTaskMs: coarse(c.maxTaskMs) }
  }
  const onUsr1 = (): void => { usr1 = true; say(`bridge: USR1 from Slurm: allocation ${id} ends soon; draining`) }
  process.on('SIGUSR1', onUsr1)
  const armEnd = (): void => {
    clearTimeout(endTimer)
    if (shape.endsAt != null) endTimer = setTimeout(() => { say(`bridge: allocation ${id} has reached its end`); over() }, Math.max(0, shape.endsAt - END_MARGIN_MS / 2 - Date.now()))
  }
  armEnd()
  const initial = allocationOffer({ partition: shape.partition, cpus: shape.nodes.reduce((n, x) => n + x.cpus, 0), memoryMb: shape.memoryMbPerNode * shape.nodes.length, gpus: shape.gpusPerNode * shape.nodes.length, maxTaskMs: coarse(shape.endsAt == null ? null : shape.endsAt - config.drainBeforeMs - Date.now()) }, offer, { allocation: id })
  let sent = JSON.stringify(initial)

  /** Hands back what cannot finish and stops offering; returns the empty offer (the tick sends it). */
  const drain = (now: number): ReturnType<typeof allocationOffer> => {
    draining = true
    backend!.drain(id)
    const running = backend!.running()
    const vacate = new Set(tasksToVacate(running, new Map([[id, shape.endsAt]]), new Set([id]), END_MARGIN_MS))
    const finishing = running.filter(r => !vacate.has(r.attemptId)).map(r => r.attemptId)
    // Everything held that is not a step that can finish: running ones that cannot, and all not yet running.
    const back = agent!.reactor.heldIds().filter(x => !finishing.includes(x))
    say(`bridge: allocation ${id} ends ${shape.endsAt == null ? 'now' : `in ${shortDuration(Math.max(0, shape.endsAt - now))}`}: draining; ${finishing.length} running task(s) finish here, ${back.length} go back to the mesh`)
    const empty = { ...allocationOffer({ ...capacity(), cpus: 0, maxTaskMs: 0 }, offer, { allocation: id }), slots: 0 }
    // The empty offer goes first, so that the coordinator does not hand the vacated tasks straight back.
    agent!.reactor.updateResources(empty)
    if (back.length > 0) agent!.reactor.vacate(back, 'vacate', `allocation ${id} ends before they could finish`, now)
    agent!.reactor.drain()
    return empty
  }

  return {
    resources: initial,
    describe: describeOffer(initial, `in allocation ${id} (${shape.nodes.map(n => `${n.name}:${n.cpus}`).join(' ')}), tasks as srun steps, draining ${shortDuration(config.drainBeforeMs)} before its end`),
    runner: {
      isolationLine: SLURM_ISOLATION,
      create: async ctx => {
        backend = new StepBackend({ workDir: ctx.paths.work, drainBeforeMs: config.drainBeforeMs, say: ctx.log })
        backend.add(shape)
        return { backend, adopted: [] }
      }
    },
    attach: a => { agent = a },
    tick: async now => {
      if (backend == null || agent == null) return { notes: [] }
      const d = await batch.details(id)
      const job = d.ok ? d.value.find(x => x.jobId === id) : undefined
      if (job != null && (job.timeLimitMs == null ? null : job.endAt) !== shape.endsAt) {
        shape = { ...shape, endsAt: job.timeLimitMs == null ? null : job.endAt }
        backend.setEnd(id, shape.endsAt)
        armEnd()
        say(`bridge: allocation ${id} now ends ${shape.endsAt == null ? 'never' : new Date(shape.endsAt).toISOString()}`)
      }
      if (job != null && !['RUNNING', 'COMPLETING'].includes(job.state)) { say(`bridge: allocation ${id} is ${job.state}`); over() }
      const notes = (): string[] => [`allocation ${id}: draining before its end; ${backend!.running().length} task(s) finishing`]
      if (!draining && (usr1 || (shape.endsAt != null && now >= shape.endsAt - config.drainBeforeMs))) return { resources: drain(now), notes: notes() }
      if (draining) return { notes: notes() }
      const stuck = backend.unplaceable()
      if (stuck.length > 0) agent.reactor.vacate(stuck, 'vacate', `allocation ${id} has no room for them before its end`, now)
      const next = allocationOffer(capacity(), offer, { allocation: id })
      const changed = JSON.stringify(next) !== sent
      sent = JSON.stringify(next)
      const left = shape.endsAt == null ? 'no end' : `ends in ${shortDuration(Math.max(0, shape.endsAt - now))}`
      return { ...(changed ? { resources: next } : {}), notes: [`allocation ${id} (${shape.partition}): ${backend.running().length} step(s) running, ${left}`] }
    },
    ended,
    close: async () => {
      clearTimeout(endTimer)
      process.off('SIGUSR1', onUsr1)
    }
  }
}
