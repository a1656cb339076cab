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

export interface FetchOptions {
  /** Keep following a running job until it ends (submit --wait uses this). */
  follow?: boolean
  onProgress?: (p: { tasks: number, total: number, bytes: number }) => void
  concurrency?: number
}

export interface FetchReport {
  dest: string
  tasks: number
  skipped: number
  files: number
  bytes: number
  failed: number
}

interface Target { ref: FileRef, path: string }

export async function fetchResults (client: MeshClient, jobId: number, dest: string, opts: FetchOptions = {}): Promise<FetchReport> {
  const { job, summary } = await client.job(jobId)
  await mkdir(dest, { recursive: true })
  if (job.specText !== '') await writeFile(join(dest, checkRelativeName(job.specFile, 'spec file')), job.specText)
  const report: FetchReport = { dest, tasks: 0, skipped: 0, files: 0, bytes: 0, failed: 0 }
  // Identical contents (empty stdout, say) are downloaded once and copied locally.
  const local = new Map<string, string>()
  const fetchOne = async (record: TaskRecord): Promise<void> => {
    const { folder, jsonPath, targets } = placeRecord(dest, job.layout, record)
    if (await alreadyComplete(jsonPath, record)) {
      report.skipped++
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
    await writeFile(jsonPath, JSON.stringify(record, null, 2) + '\n')
    if (record.state !== 'done') report.failed++
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

/** Where a task's files go in the results folder. */
export function placeRecord (dest: string, layout: ResultLayout, record: TaskRecord): { folder: string, jsonPath: string, targets: Target[] } {
  const name = checkRelativeName(record.name.replaceAll('/', '_'), 'task name')
  const targets: Target[] = []
  if (layout === 'flat') {
    if (record.stdout != null) targets.push({ ref: record.stdout, path: join(dest, `${name}.stdout`) })
    if (record.stderr != null) targets.push({ ref: record.stderr, path: join(dest, `${name}.stderr`) })
    for (const o of record.outputs) targets.push({ ref: o, path: join(dest, checkRelativeName(o.name, 'output')) })
    return { folder: dest, jsonPath: join(dest, `${name}.task.json`), targets }
  }
  const folder = join(dest, name)
  if (record.stdout != null) targets.push({ ref: record.stdout, path: join(folder, 'stdout') })
  if (record.stderr != null) targets.push({ ref: record.stderr, path: join(folder, 'stderr') })
  for (const o of record.outputs) targets.push({ ref: o, path: join(folder, checkRelativeName(o.name, 'output')) })
  return { folder, jsonPath: join(folder, 'task.json'), targets }
}

async function alreadyComplete (jsonPath: string, record: TaskRecord): Promise<boolean> {
  try {
    const old = JSON.parse(await readFile(jsonPath, 'utf8')) as TaskRecord
    return old.id === record.id && old.attempts === record.attempts && old.state === record.state
  } catch {
    return false
  }
}

/** Verifies a fetched folder against its task.json files (used by tests and `fetch --verify`). */
export async function verifyFile (path: string, ref: FileRef): Promise<boolean> {
  const { hash } = await hashFile(path)
  return hash === ref.hash
}
