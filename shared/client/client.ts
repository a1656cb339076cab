/**
 * The TypeScript API, also what the CLI uses: `import { connect } from 'meshfarm'`.
 *
 *   const mesh = await connect()                  // finds the coordinator through the mesh
 *   const { jobId } = await mesh.submitFile('sweep.yaml')
 *   await mesh.watch(jobId, s => console.log(s.counts))
 *   await mesh.fetch(jobId, './results')
 *   await mesh.close()
 */
import { existsSync, statSync } from 'node:fs'
import type { PeerId } from '@libp2p/interface'
import { MAX_FRAME_BYTES } from '../protocol/constants.ts'
import { blockFrames } from '../protocol/task-blocks.ts'
import { encodeMessage } from '../protocol/codec.ts'
import { MeshfarmError, errorMessage, isMeshfarmError } from '../util/errors.ts'
import { resolveHome } from '../local/home.ts'
import { identityFor } from '../local/identity.ts'
import { createMeshNode, type MeshNode } from '../net/mesh.ts'
import { loadMeshConfig, type MeshConfig } from '../local/mesh-config.ts'
import { findCoordinator } from '../net/discovery.ts'
import type { Role, AgentSummary, FileRef, JobHeader, JobSummary, TaskRecord, TaskSpec, TaskState } from '../protocol/messages.ts'
import { openClientChannel, raiseIfError, request } from '../net/rpc.ts'
import { uploadBlob } from '../net/blob-protocol.ts'
import { runLimited } from '../util/limit.ts'
import { hashFile } from '../files/hash.ts'
import { parseJobFile, type ParsedJob, type SpecDefaults, type LocalInput } from './spec.ts'
import { fetchResults, type FetchOptions, type FetchReport } from './fetch.ts'
import { followEvents, followLogs } from './streams.ts'
import type { MeshEvent } from '../protocol/events.ts'

/** How long connect() looks for the coordinator unless told (the CLI passes MESHFARM_DISCOVERY_MS, compiled). */
const DISCOVERY_MS = 10_000
const UPLOAD_CONCURRENCY = 16

export interface ConnectOptions {
  /** State folder (default MESHFARM_HOME or ~/.meshfarm). */
  home?: string
  /** How long to look for the coordinator (default: MESHFARM_DISCOVERY_MS or 10 s). */
  timeoutMs?: number
  /** Overrides the mesh's bootstrap list. */
  bootstrap?: string[]
}

export interface SubmitProgress {
  phase: 'hashing' | 'uploading' | 'submitting'
  done: number
  total: number
  /** While uploading: the job, already stored, whose tasks wait for these files. */
  jobId?: number
}

export async function connect (opts: ConnectOptions = {}): Promise<MeshClient> {
  const home = resolveHome(opts.home)
  let mesh = loadMeshConfig(home)
  if (opts.bootstrap != null) mesh = { ...mesh, bootstrap: opts.bootstrap }
  const node = await createMeshNode({ mesh, listen: [], privateKey: await identityFor(home, mesh.coordinator, 'operator') })
  try {
    const coordinator = await findCoordinator(node, mesh, opts.timeoutMs ?? DISCOVERY_MS)
    return new MeshClient(node, mesh, coordinator)
  } catch (err) {
    await node.stop()
    throw err
  }
}

export class MeshClient {
  readonly node: MeshNode
  readonly mesh: MeshConfig
  readonly coordinator: PeerId

  constructor (node: MeshNode, mesh: MeshConfig, coordinator: PeerId) {
    this.node = node
    this.mesh = mesh
    this.coordinator = coordinator
  }

  async ping (): Promise<{ peerId: string, version: string, rttMs: number }> {
    const t0 = performance.now()
    const r = await request(this.node, this.coordinator, { t: 'client.ping' }, 'reply.pong')
    return { peerId: r.peerId, version: r.version, rttMs: performance.now() - t0 }
  }

  async submitFile (path: string, overrides?: SpecDefaults, onProgress?: (p: SubmitProgress) => void): Promise<{ jobId: number, total: number }> {
    return await this.submit(parseJobFile(path, overrides), onProgress)
  }

  /**
   * Hashes the job's files and submits the job; the files the coordinator lacks are uploaded after it is stored
   * (in task order), so each task starts as soon as its own files have arrived rather than after the last one.
   * Resolves once the job is durable and every file is uploaded; a failed upload cancels the job and throws.
   */
  async submit (job: ParsedJob, onProgress?: (p: SubmitProgress) => void, opts: { priority?: number, allowUnplaceable?: boolean } = {}): Promise<{ jobId: number, total: number }> {
    const names = new Set<string>()
    for (const t of job.tasks) {
      if (names.has(t.name)) throw new MeshfarmError('SPEC_INVALID', `${job.specFile}: tasks[${t.index}].name: '${t.name}' is used by two tasks`)
      names.add(t.name)
    }
    const refs = await this.hashInputs(job, onProgress)
    const toRef = (i: LocalInput): FileRef => ({ name: i.name, ...refs.get(i.src)! })
    const missing = await request(this.node, this.coordinator, { t: 'client.blobs.missing', hashes: [...new Set([...refs.values()].map(r => r.hash))] }, 'reply.blobs.missing')
    const need = new Set(missing.hashes)
    const uploads = [...refs.entries()].filter(([, r]) => need.delete(r.hash))
    const header: JobHeader = {
      name: job.name, label: job.label, layout: job.layout, retries: job.retries, shared: job.shared.map(toRef),
      specText: job.specText, specFile: job.specFile,
      ...(opts.priority != null ? { priority: opts.priority } : {}),
      ...(opts.allowUnplaceable === true ? { allowUnplaceable: true } : {}),
      ...(job.perAgent != null ? { perAgent: job.perAgent } : {}),
      ...(job.logNames != null ? { logNames: { ...job.logNames } } : {}),
      ...(uploads.length > 0 ? { inputsToFollow: true } : {})
    }
    const tasks: TaskSpec[] = job.tasks.map(t => ({ ...t, inputs: t.inputs.map(toRef) }))
    const submitted = await this.sendJob(header, tasks, onProgress)
    let uploaded = 0
    onProgress?.({ phase: 'uploading', done: 0, total: uploads.length, jobId: submitted.jobId })
    try {
      // Several at once: a thousand small inputs must not cost a thousand round trips one after another.
      await runLimited(uploads, UPLOAD_CONCURRENCY, async ([src, r]) => {
        await uploadBlob(this.node, this.coordinator, r.hash, r.size, src)
        onProgress?.({ phase: 'uploading', done: ++uploaded, total: uploads.length, jobId: submitted.jobId })
      })
    } catch (err) {
      // Its tasks would wait for a file that is not coming: the job goes, and the user hears why.
      await this.cancel(submitted.jobId).catch(() => {})
      throw new MeshfarmError(isMeshfarmError(err) ? err.code : 'FILE_MISSING', `job ${submitted.jobId} cancelled: an input file could not be uploaded: ${errorMessage(err)}`)
    }
    return submitted
  }

  /** The job's header and its tasks in blocks, over one channel; resolves once the coordinator has stored it. */
  private async sendJob (header: JobHeader, tasks: TaskSpec[], onProgress?: (p: SubmitProgress) => void): Promise<{ jobId: number, total: number }> {
    const ch = await openClientChannel(this.node, this.coordinator)
    try {
      await ch.write({ t: 'client.submit.begin', job: header, total: tasks.length })
      // In blocks: what the tasks share said once, what differs as columns (a million tasks, a hundred frames).
      onProgress?.({ phase: 'submitting', done: 0, total: tasks.length })
      for (const { frame, done } of blockFrames(tasks, MAX_FRAME_BYTES, encodeMessage)) {
        await ch.writeRaw(frame)
        onProgress?.({ phase: 'submitting', done, total: tasks.length })
      }
      await ch.write({ t: 'client.submit.end' })
      const reply = await ch.expect()
      raiseIfError(reply)
      if (reply.t !== 'reply.submitted') throw new MeshfarmError('PROTOCOL', `expected reply.submitted, got ${reply.t}`)
      return { jobId: reply.jobId, total: reply.total }
    } finally {
      await ch.close()
    }
  }

  private async hashInputs (job: ParsedJob, onProgress?: (p: SubmitProgress) => void): Promise<Map<string, { hash: string, size: number }>> {
    const paths = new Set<string>()
    for (const s of job.shared) paths.add(s.src)
    for (const t of job.tasks) for (const i of t.inputs) paths.add(i.src)
    const refs = new Map<string, { hash: string, size: number }>()
    let done = 0
    for (const p of paths) {
      if (!existsSync(p) || !statSync(p).isFile()) throw new MeshfarmError('FILE_MISSING', `${p}: no such file`)
      onProgress?.({ phase: 'hashing', done: done++, total: paths.size })
      refs.set(p, await hashFile(p))
    }
    return refs
  }

  async status (jobId?: number): Promise<JobSummary[]> {
    return (await request(this.node, this.coordinator, { t: 'client.status', jobId }, 'reply.status')).jobs
  }

  async tasks (jobId: number, opts: { after?: number, limit?: number, states?: TaskState[] } = {}): Promise<{ tasks: TaskRecord[], next: number | null }> {
    const r = await request(this.node, this.coordinator, { t: 'client.tasks', jobId, after: opts.after ?? 0, limit: opts.limit ?? 1000, states: opts.states }, 'reply.tasks')
    return { tasks: r.tasks, next: r.next }
  }

  async peers (): Promise<AgentSummary[]> {
    return (await request(this.node, this.coordinator, { t: 'client.peers' }, 'reply.peers')).agents
  }

  async cancel (jobId: number): Promise<number> {
    return (await request(this.node, this.coordinator, { t: 'client.cancel', jobId }, 'reply.cancelled')).tasks
  }

  async drain (peer: string): Promise<void> {
    await request(this.node, this.coordinator, { t: 'client.drain', peerId: peer }, 'reply.drained')
  }

  async invite (role: Role, ttlMs: number, name?: string): Promise<{ invite: string, expiresAt: number }> {
    const r = await request(this.node, this.coordinator, { t: 'client.invite', role, ttlMs, name }, 'reply.invite')
    return { invite: r.invite, expiresAt: r.expiresAt }
  }

  async accessList (): Promise<Array<{ peerId: string, roles: string[], name?: string }>> {
    return (await request(this.node, this.coordinator, { t: 'client.access.list' }, 'reply.access')).peers
  }

  async accessAdd (peerId: string, roles: Role[], name?: string): Promise<void> {
    await request(this.node, this.coordinator, { t: 'client.access.add', peerId, roles, name }, 'reply.ok')
  }

  async accessRemove (peerId: string): Promise<void> {
    await request(this.node, this.coordinator, { t: 'client.access.remove', peerId }, 'reply.ok')
  }

  async job (jobId: number): Promise<{ job: JobHeader, summary: JobSummary }> {
    const r = await request(this.node, this.coordinator, { t: 'client.job', jobId }, 'reply.job')
    return { job: r.job, summary: r.summary }
  }

  /** Calls onProgress as the job advances; resolves with the final summary when no task is left to run. */
  async watch (jobId: number, onProgress?: (s: JobSummary) => void): Promise<JobSummary> {
    let away = 0
    while (true) {
      let ch
      try {
        ch = await openClientChannel(this.node, this.coordinator)
      } catch (err) {
        // The coordinator is restarting: keep trying for a while, it keeps every job.
        if ((away += 1000) > 120_000) throw err
        await new Promise(resolve => setTimeout(resolve, 1000))
        continue
      }
      away = 0
      try {
        await ch.write({ t: 'client.watch', jobId })
        while (true) {
          const reply = await ch.read()
          if (reply == null) break
          raiseIfError(reply)
          if (reply.t !== 'reply.progress') continue
          onProgress?.(reply.summary)
          if (reply.summary.state !== 'active') return reply.summary
        }
      } catch (err) {
        if (isMeshfarmError(err) && err.code !== 'PROTOCOL') throw err
      } finally {
        await ch.close()
      }
      // The stream broke (the coordinator restarted): look again.
      await new Promise(resolve => setTimeout(resolve, 500))
    }
  }

  /**
   * Follows the event stream after `after` (0: from the oldest kept), one job's or all, calling onEvents with
   * each batch in order. Rides out coordinator restarts, resuming after the last event seen: nothing is missed
   * or repeated. With follow false, resolves once the history is read; else runs until `signal` aborts.
   */
  async events (opts: { after?: number, jobId?: number, follow?: boolean, signal?: AbortSignal }, onEvents: (events: MeshEvent[]) => void | Promise<void>): Promise<number> {
    return await followEvents(this, opts, onEvents)
  }

  /** A task's stdout or stderr from `offset`; with follow, until the task has ended. Returns the offset reached. */
  async logs (jobId: number, index: number, opts: { stream?: 'stdout' | 'stderr', offset?: number, follow?: boolean }, onData: (data: Uint8Array) => void): Promise<number> {
    return await followLogs(this, jobId, index, opts, onData)
  }

  async why (jobId: number, index?: number): Promise<Array<{ index?: number, name?: string, state: string, reason: string }>> {
    return (await request(this.node, this.coordinator, { t: 'client.why', jobId, index }, 'reply.why')).reasons
  }

  /** Holds (release false) or releases a job or one of its tasks; returns how many tasks it concerned. */
  async hold (jobId: number, index: number | undefined, release: boolean): Promise<number> {
    return (await request(this.node, this.coordinator, { t: 'client.hold', jobId, index, release }, 'reply.held')).tasks
  }

  async dashboard (): Promise<{ url: string, code: string, expiresAt: number }> {
    const r = await request(this.node, this.coordinator, { t: 'client.dashboard' }, 'reply.dashboard')
    return { url: r.url, code: r.code, expiresAt: r.expiresAt }
  }

  async fetch (jobId: number, dest: string, opts: FetchOptions = {}): Promise<FetchReport> {
    return await fetchResults(this, jobId, dest, opts)
  }

  async close (): Promise<void> {
    await this.node.stop()
  }
}
