/**
 * Auto mode (`--auto-alloc max=4,time=2h,idle=5m`): the bridge asks Slurm for allocations when the mesh has a
 * backlog that fits the partition (coord.backlog), runs tasks into them as srun steps (StepBackend), drains them
 * before their end, releases idle ones, backs off after failures and pauses after repeated ones until
 * `meshfarm bridge resume`. The decisions are autoalloc.ts's (pure); this file observes (one squeue per poll),
 * carries the actions out and says every decision in the log and the status notes. Holder allocations carry the
 * bridge's label (`mfa:<bridge>:<n>`), so a restarted bridge finds and keeps them.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { MeshfarmError, errorMessage } from '../../../shared/util/errors.ts'
import type { BatchSystem, QueueEntry } from './batch-system.ts'
import { buildHolderScript, holderLabel } from './allocation.ts'
import { decideAutoAlloc, INITIAL_STATE, onAllocationEnded, onSubmitted, resume, type AllocationView, type AutoAllocState, type BacklogGroup, type PartitionView } from './autoalloc.ts'
import { shortDuration } from './hostlist.ts'
import { TERMINAL_SLURM_STATES } from './outcome.ts'
import { allocationShape, tasksToVacate } from './steps-plan.ts'
import { StepBackend } from './steps.ts'
import { allocationOffer, describeOffer, partitionLimits, type OfferBase } from './offer.ts'
import { bridgeIdOf, readPartition, SLURM_ISOLATION } from './forward-mode.ts'
import type { BridgeConfig } from './bridge-config.ts'
import type { BacklogMessage, BridgeMode } from './mode.ts'
import type { AgentService } from '../../agent.ts'

interface Holder { jobId: string, label: string, state: 'pending' | 'running', reason: string, added: boolean, releasing: boolean }

const END_MARGIN_MS = 10_000
const PARTITION_REFRESH_MS = 60_000

export async function autoMode (batch: BatchSystem, config: BridgeConfig, offer: OfferBase, say: (line: string) => void): Promise<BridgeMode> {
  const limits = config.autoAlloc!
  if (limits.nodesPerAllocation !== 1) throw new MeshfarmError('BAD_ARGUMENT', '--auto-alloc: nodes: only 1 node per allocation for now')
  const name = config.partition!
  let partition = await readPartition(batch, name)
  let checkedAt = Date.now()
  const view = (): PartitionView => ({ ...partitionLimits(partition), state: partition.state })
  let state: AutoAllocState = { ...INITIAL_STATE }
  let backlog: BacklogGroup[] = []
  const holders = new Map<string, Holder>()
  let backend: StepBackend | null = null
  let agent: AgentService | null = null
  let bridgeId = ''
  let logDir = ''
  let said = ''
  let sent = ''
  let n = Date.now()
  /** What an allocation would offer: the offer's shape before one is held, so `why` shows waiting, not "never". */
  const potential = (): { cpus: number, memoryMb: number, gpus: number, maxTaskMs: number } => {
    const p = view()
    const time = Math.min(limits.timeLimitMs, p.maxTimeMs ?? Infinity)
    return { cpus: p.cpusPerNode, memoryMb: p.memoryMbPerNode, gpus: p.gpusPerNode, maxTaskMs: Math.max(0, time - config.drainBeforeMs) }
  }
  const offerNow = (): ReturnType<typeof allocationOffer> => {
    const c = backend!.capacity(name)
    const pot = potential()
    const shape = { partition: name, cpus: Math.max(c.cpus, pot.cpus), memoryMb: Math.max(c.memoryMb, pot.memoryMb), gpus: Math.max(c.gpus, pot.gpus), maxTaskMs: c.cpus > 0 ? c.maxTaskMs : pot.maxTaskMs }
    return { ...allocationOffer(shape, offer), slots: c.cpus }
  }

  /** One squeue: holders found by label (after a restart too), started, ended. */
  const observe = async (queue: ReadonlyMap<string, QueueEntry>, now: number): Promise<void> => {
    const prefix = `mfa:${bridgeId}:`
    for (const q of queue.values()) {
      if (!q.name.startsWith(prefix) || TERMINAL_SLURM_STATES.has(q.state) || holders.has(q.jobId)) continue
      holders.set(q.jobId, { jobId: q.jobId, label: q.name, state: 'pending', reason: q.reason, added: false, releasing: false })
      say(`bridge: allocation ${q.jobId} (${q.name}) found in Slurm (${q.state}): kept`)
    }
    for (const h of [...holders.values()]) {
      const q = queue.get(h.jobId)
      if (q == null || TERMINAL_SLURM_STATES.has(q.state)) {
        const ran = backend!.allocations().find(a => a.jobId === h.jobId)?.ranTasks ?? 0
        backend!.remove(h.jobId)
        holders.delete(h.jobId)
        const failed = q != null && !h.releasing && !['COMPLETED', 'CANCELLED', 'TIMEOUT'].includes(q.state)
        say(`bridge: allocation ${h.jobId} ended (${q?.state ?? 'no longer listed'}${q != null && q.reason !== 'None' ? `, ${q.reason}` : ''}) after ${ran} task(s)`)
        state = onAllocationEnded(state, { ranTasks: ran > 0, failed, message: `allocation ${h.jobId}: ${q?.state ?? 'gone'} (${q?.reason ?? ''})` }, limits, now)
        continue
      }
      h.reason = q.reason
      if (q.state === 'RUNNING' && !h.added) {
        const d = await batch.details(h.jobId)
        const job = d.ok ? d.value.find(x => x.jobId === h.jobId) : undefined
        if (job == null) continue
        const shape = allocationShape(job)
        backend!.add(shape)
        h.added = true
        h.state = 'running'
        say(`bridge: allocation ${h.jobId} running on ${shape.nodes.map(x => `${x.name} (${x.cpus} CPUs)`).join(', ')}${shape.endsAt != null ? `, ends in ${shortDuration(shape.endsAt - now)}` : ''}`)
      }
    }
  }

  /** Allocations near their end: no new steps, tasks that cannot finish go back, released once empty. */
  const drainEnding = async (now: number): Promise<void> => {
    for (const a of backend!.allocations()) {
      if (a.endsAt == null || now < a.endsAt - config.drainBeforeMs) continue
      if (!a.draining) {
        backend!.drain(a.jobId)
        const back = tasksToVacate(backend!.running(), new Map([[a.jobId, a.endsAt]]), new Set([a.jobId]), END_MARGIN_MS)
        say(`bridge: allocation ${a.jobId} ends in ${shortDuration(Math.max(0, a.endsAt - now))}: draining; ${back.length} task(s) go back to the mesh`)
        if (back.length > 0) agent!.reactor.vacate(back, 'vacate', `allocation ${a.jobId} ends before they could finish`, now)
      }
      if (a.runningTasks === 0) await release(a.jobId, 'drained before its end')
    }
  }

  const release = async (jobId: string, why: string): Promise<void> => {
    const h = holders.get(jobId)
    if (h == null || h.releasing) return
    backend!.drain(jobId)
    const r = await batch.cancel([jobId])
    if (!r.ok) { say(`bridge: releasing allocation ${jobId}: ${r.error.message}; trying again`); return }
    h.releasing = true
    say(`bridge: allocation ${jobId} released: ${why}`)
  }

  const submit = async (reason: string, now: number): Promise<void> => {
    const p = view()
    const label = holderLabel(bridgeId, n++)
    const time = Math.min(limits.timeLimitMs, p.maxTimeMs ?? Infinity)
    let r
    try {
      const script = buildHolderScript({
        bridgeId, n: n - 1, logDir, partition: name, ...(config.account != null ? { account: config.account } : {}), extraArgs: [...config.sbatchArgs],
        resources: { cores: p.cpusPerNode, memoryMb: 0, gpus: p.gpusPerNode, timeLimitMs: time }
      })
      r = await batch.submit({ script, cwd: logDir })
    } catch (err) {
      r = { ok: false as const, error: { kind: 'permanent' as const, message: `sbatch: ${errorMessage(err)}` } }
    }
    state = onSubmitted(state, r.ok ? { ok: true } : { ok: false, error: r.error }, limits, now)
    if (r.ok) {
      holders.set(r.value, { jobId: r.value, label, state: 'pending', reason: 'submitted', added: false, releasing: false })
      say(`bridge: ${reason}: allocation ${r.value} (${label}, ${p.cpusPerNode} CPUs for ${shortDuration(time)})`)
    } else {
      say(`bridge: allocation not submitted: ${r.error.message} (${r.error.kind}; ${state.consecutiveFailures} failure(s) in a row)${state.paused != null ? `; auto-allocation paused: ${state.paused}; \`meshfarm bridge resume\` lifts it` : ''}`)
    }
  }

  const initial = { ...allocationOffer({ partition: name, ...potential() }, offer), slots: 0 }
  return {
    resources: initial,
    describe: describeOffer(initial, `auto-allocation in partition ${name} (max ${limits.maxAllocations} allocations, ${shortDuration(limits.timeLimitMs)} each, released after ${shortDuration(limits.idleTimeoutMs)} idle), tasks as srun steps`),
    runner: {
      isolationLine: SLURM_ISOLATION,
      create: async ctx => {
        bridgeId = bridgeIdOf(ctx.peerId)
        logDir = join(ctx.paths.work, 'allocations')
        mkdirSync(logDir, { recursive: true })
        backend = new StepBackend({ workDir: ctx.paths.work, drainBeforeMs: config.drainBeforeMs, say: ctx.log })
        return { backend, adopted: [] }
      },
      onMessage: msg => {
        if (msg.t !== 'coord.backlog') return
        backlog = (msg as BacklogMessage).groups.map(g => ({ tasks: g.tasks, cores: g.cores, memoryMb: g.memoryMb, gpus: g.gpus, timeoutMs: g.timeoutMs > 0 ? g.timeoutMs : null }))
      }
    },
    attach: a => { agent = a },
    tick: async now => {
      if (backend == null || agent == null) return { notes: [] }
      if (now - checkedAt >= PARTITION_REFRESH_MS) {
        checkedAt = now
        const p = await batch.partition(name)
        if (p.ok) partition = p.value
      }
      const q = await batch.queue()
      if (q.ok) await observe(q.value, now)
      await drainEnding(now)
      const stuck = backend.unplaceable()
      if (stuck.length > 0) agent.reactor.vacate(stuck, 'vacate', 'no allocation has room for them before its end', now)
      const allocations: AllocationView[] = [...holders.values()].filter(h => !h.releasing).map(h => {
        const a = backend!.allocations().find(x => x.jobId === h.jobId)
        return a != null && !a.draining
          ? { id: h.jobId, state: 'running', slots: a.cpus, runningTasks: a.runningTasks, idleSince: a.idleSince }
          : { id: h.jobId, state: 'pending', slots: view().cpusPerNode, runningTasks: 0, idleSince: null }
      })
      const decision = q.ok ? decideAutoAlloc(state, { backlog, allocations, partition: view() }, limits, now) : { actions: [], reasons: [`no allocation decided: ${q.error.message}`], wakeAt: null }
      for (const a of decision.actions) {
        if (a.kind === 'release') await release(a.allocationId, a.reason.replace(/^allocation \S+ released: /, ''))
        else await submit(a.reason, now)
      }
      const reasons = decision.reasons.join('; ')
      if (reasons !== said) { said = reasons; if (reasons !== '') say(`bridge: ${reasons}`) }
      const pending = [...holders.values()].filter(h => h.state === 'pending' && !h.releasing).map(h => `allocation ${h.jobId} pending (${h.reason})`)
      const running = backend.allocations().map(a => `allocation ${a.jobId}: ${a.runningTasks} step(s) running${a.draining ? ', draining' : ''}${a.endsAt != null ? `, ends in ${shortDuration(Math.max(0, a.endsAt - now))}` : ''}`)
      const paused = state.paused != null ? [`auto-allocation paused: ${state.paused}; \`meshfarm bridge resume\` lifts it`] : []
      const next = offerNow()
      const changed = JSON.stringify(next) !== sent
      sent = JSON.stringify(next)
      return { ...(changed ? { resources: next } : {}), notes: [...paused, ...pending, ...decision.reasons.filter(r => !r.includes('paused')), ...running].slice(0, 20) }
    },
    resume: () => {
      const was = state.paused
      state = resume(state)
      return was != null ? `auto-allocation resumed (was paused: ${was})` : 'auto-allocation was not paused; failures forgotten'
    },
    // A clean stop gives every allocation back (the agent has handed its tasks back already); a killed bridge
    // leaves them, and its restart finds them by label.
    close: async () => {
      const ids = [...holders.keys()]
      if (ids.length === 0) return
      const r = await batch.cancel(ids)
      say(r.ok ? `bridge: stopping: allocation(s) ${ids.join(', ')} released` : `bridge: stopping: releasing ${ids.join(', ')}: ${r.error.message}`)
    }
  }
}
