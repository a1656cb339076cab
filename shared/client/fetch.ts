/**
 * Brings a job's results into a folder on this machine: the job ticket. Per task (default layout) a folder with
 * its outputs, stdout, stderr and task.json; in the flat layout (as opalsTask's flat mode) all outputs in one
 * folder. Every file is hash-checked; task.json is written last, so a task with a task.json is complete, and a
 * broken fetch resumes: complete tasks are skipped and partial files continue from where they stopped.
 */
import { copyFile, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FileRef, ResultLayout, TaskRecord } from '../protocol/messages.ts'
import { downloadBlob } from '../net/blob-protocol.ts'
import { checkRelativeName } from '../files/safe-path.ts'
import { hashFile } from '../files/hash.ts'
import { runLimited } from '../util/limit.ts'
import { request, withReconnect } from '../net/rpc.ts'
import type { MeshClient } from './client.ts'
import { HostNumbers, ictasksFolder, toIctasksTask } from './ictasks.ts'

export interface FetchOptions {
  /** Keep following a running job until it ends (submit --wait uses this). */
  follow?: boolean
  onProgress?: (p: { tasks: number, total: number, bytes: number }) => void
  concurrency?: number
  /** Another layout than the job's (`fetch --layout ictasks`). */
  layout?: ResultLayout
  /** ictasks' stdout/stderr file names (stdout_filename/stderr_filename), for the ictasks layout. */
  logNames?: { stdout: string, stderr: string }
  /** Places each task's files instead of the layout (`meshfarm parallel` puts outputs beside the originals). */
  place?: (record: TaskRecord) => Placement
  /** Called once a task's files are all here (and again for one found complete from an earlier fetch). */
  onTask?: (record: TaskRecord, placed: Placement) => void | Promise<void>
}

export interface FetchReport {
  dest: string
  tasks: number
  skipped: number
  files: number
  bytes: number
  failed: number
}

export interface Target { ref: FileRef, path: string }

export async function fetchResults (client: MeshClient, jobId: number, dest: string, opts: FetchOptions = {}): Promise<FetchReport> {
  const { job, summary } = await client.job(jobId)
  await mkdir(dest, { recursive: true })
  if (job.specText !== '') await writeFile(join(dest, checkRelativeName(job.specFile, 'spec file')), job.specText)
  const report: FetchReport = { dest, tasks: 0, skipped: 0, files: 0, bytes: 0, failed: 0 }
  // Identical contents (empty stdout, say) are downloaded once and copied locally.
  const local = new Map<string, string>()
  const layout = opts.layout ?? job.layout
  // The names the job file gave (ictasks' stdout_filename/stderr_filename) unless the caller names others.
  const logNames = opts.logNames ?? job.logNames
  // ictasks numbers hosts; the numbers are kept beside the results so a resumed fetch gives the same ones.
  const hosts = layout === 'ictasks' ? new HostNumbers(await readHostTable(join(dest, HOSTS_FILE))) : null
  let hostsSaved = Promise.resolve() // one write at a time, each of the table as it is then
  const fetchOne = async (record: TaskRecord): Promise<void> => {
    let hostId = -1
    if (hosts != null) {
      const h = hosts.idOf(record.host)
      hostId = h.id
      if (h.added) await (hostsSaved = hostsSaved.then(async () => await writeFile(join(dest, HOSTS_FILE), JSON.stringify(hosts.toJson(), null, 2) + '\n')))
    }
    const placed = opts.place?.(record) ?? placeRecord(dest, layout, record, { hostId, logNames })
    const { folder, jsonPath, json, targets } = placed
    if (await alreadyComplete(jsonPath, json)) {
      report.skipped++
      await opts.onTask?.(record, placed)
      return
    }
    await mkdir(folder, { recursive: true })
    for (const t of targets) {
      await mkdir(join(t.path, '..'), { recursive: true })
      const have = local.get(t.ref.hash)
      if (have != null && have !== t.path) {
        await copyFile(have, t.path)
      } else {
        const part = `${t.path}.part`
        const offset = (await stat(part).catch(() => null))?.size ?? 0
        if (t.ref.size === 0) await writeFile(part, '')
        else await withReconnect(async () => await downloadBlob(client.node, client.coordinator, t.ref.hash, part, (await stat(part).catch(() => null))?.size ?? offset, n => { report.bytes += n }))
        await rename(part, t.path)
        local.set(t.ref.hash, t.path)
      }
      report.files++
    }
    await writeFile(jsonPath, json)
    if (record.state !== 'done') report.failed++
    await opts.onTask?.(record, placed)
  }

  let cursor = 0
  const total = summary.total
  while (true) {
    const page = await withReconnect(async () => await request(client.node, client.coordinator, { t: 'client.results', jobId, after: cursor, limit: 500 }, 'reply.results'))
    await runLimited(page.records, opts.concurrency ?? 8, async r => {
      await fetchOne(r)
      report.tasks++
      opts.onProgress?.({ tasks: report.tasks, total, bytes: report.bytes })
    })
    cursor = page.next
    if (page.more) continue
    if (page.jobState !== 'active' || opts.follow !== true) break
    // A running job: wait for more results.
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  const final = await withReconnect(async () => await client.status(jobId))
  await writeFile(join(dest, 'job.json'), JSON.stringify(final[0], null, 2) + '\n')
  return report
}

const HOSTS_FILE = 'hosts.json'

export interface PlaceOptions {
  /** The task's host number, for the ictasks layout. */
  hostId?: number
  logNames?: { stdout: string, stderr: string }
}

export interface Placement { folder: string, jsonPath: string, json: string, targets: Target[] }

/**
 * Where a task's files go in the results folder, and its task.json: meshfarm's record, or ictasks' Task
 * (`task_<id>/task.json`, `task_stdout.txt`, `task_stderr.txt`) in the ictasks layout.
 */
export function placeRecord (dest: string, layout: ResultLayout, record: TaskRecord, opts: PlaceOptions = {}): Placement {
  const name = checkRelativeName(record.name.replaceAll('/', '_'), 'task name')
  const targets: Target[] = []
  const outputsIn = (folder: string): void => {
    for (const o of record.outputs) targets.push({ ref: o, path: join(folder, checkRelativeName(o.name, 'output')) })
  }
  const meshfarmJson = JSON.stringify(record, null, 2) + '\n'
  if (layout === 'flat') {
    if (record.stdout != null) targets.push({ ref: record.stdout, path: join(dest, `${name}.stdout`) })
    if (record.stderr != null) targets.push({ ref: record.stderr, path: join(dest, `${name}.stderr`) })
    outputsIn(dest)
    return { folder: dest, jsonPath: join(dest, `${name}.task.json`), json: meshfarmJson, targets }
  }
  if (layout === 'ictasks') {
    const folder = join(dest, checkRelativeName(ictasksFolder(record.name), 'task name'))
    const logs = opts.logNames ?? { stdout: 'task_stdout.txt', stderr: 'task_stderr.txt' }
    if (record.stdout != null) targets.push({ ref: record.stdout, path: join(folder, checkRelativeName(logs.stdout, 'stdout_filename')) })
    if (record.stderr != null) targets.push({ ref: record.stderr, path: join(folder, checkRelativeName(logs.stderr, 'stderr_filename')) })
    outputsIn(folder)
    // ictasks writes task.json with 4-space indents (pydantic's model dump through json.dumps).
    return { folder, jsonPath: join(folder, 'task.json'), json: JSON.stringify(toIctasksTask(record, opts.hostId ?? -1), null, 4) + '\n', targets }
  }
  const folder = join(dest, name)
  if (record.stdout != null) targets.push({ ref: record.stdout, path: join(folder, 'stdout') })
  if (record.stderr != null) targets.push({ ref: record.stderr, path: join(folder, 'stderr') })
  outputsIn(folder)
  return { folder, jsonPath: join(folder, 'task.json'), json: meshfarmJson, targets }
}

/** A task whose task.json (written last) is already what it would be now is complete: skipped on a resumed fetch. */
async function alreadyComplete (jsonPath: string, json: string): Promise<boolean> {
  return await readFile(jsonPath, 'utf8').then(old => old === json, () => false)
}

/** hosts.json of an earlier fetch: host_id -> host name; anything else is ignored (numbering starts over). */
async function readHostTable (path: string): Promise<Record<string, string>> {
  try {
    const raw = JSON.parse(await readFile(path, 'utf8')) as unknown
    if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) return {}
    const entries = Object.entries(raw as Record<string, unknown>)
    const ok = entries.every(([id, host], i) => id === String(i) && typeof host === 'string')
    return ok ? Object.fromEntries(entries) as Record<string, string> : {}
  } catch {
    return {}
  }
}

/** Verifies a fetched folder against its task.json files (used by tests and `fetch --verify`). */
export async function verifyFile (path: string, ref: FileRef): Promise<boolean> {
  const { hash } = await hashFile(path)
  return hash === ref.hash
}
