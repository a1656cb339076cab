/**
 * The chaos soak's ledger: the coordinator's commit stream followed live, and the final check that every task has
 * exactly one committed, correct result, seen from the database, the coordinator's views and the fetched folder.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import type { MeshClient } from '../../shared/client/client.ts'
import { request, withReconnect } from '../../shared/net/rpc.ts'
import { errorMessage } from '../../shared/util/errors.ts'
import type { TaskRecord } from '../../shared/protocol/messages.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Follows the coordinator's commit stream (as fetch does) across its restarts; counts how often each task appears. */
export async function followCommits (client: MeshClient, jobId: number, seen: Map<number, number>, stop: () => boolean, log: (line: string) => void): Promise<void> {
  let cursor = 0
  while (!stop()) {
    let page
    try {
      page = await withReconnect(async () => await request(client.node, client.coordinator, { t: 'client.results', jobId, after: cursor, limit: 1000 }, 'reply.results'))
    } catch (err) {
      log(`commit stream: ${errorMessage(err)}; trying again`)
      await sleep(1000)
      continue
    }
    for (const r of page.records) seen.set(r.index, (seen.get(r.index) ?? 0) + 1)
    cursor = page.next
    if (page.more) continue
    if (page.jobState !== 'active') return
    await sleep(250)
  }
}

async function committedRecords (client: MeshClient, jobId: number): Promise<TaskRecord[]> {
  const out: TaskRecord[] = []
  let cursor = 0
  while (true) {
    const page = await withReconnect(async () => await request(client.node, client.coordinator, { t: 'client.results', jobId, after: cursor, limit: 1000 }, 'reply.results'))
    out.push(...page.records)
    cursor = page.next
    if (!page.more) return out
  }
}

async function taskRecords (client: MeshClient, jobId: number): Promise<TaskRecord[]> {
  const out: TaskRecord[] = []
  let after = 0
  while (true) {
    const page = await withReconnect(async () => await client.tasks(jobId, { after, limit: 1000 }))
    out.push(...page.tasks)
    if (page.next == null) return out
    after = page.next
  }
}

export interface Verdict {
  done: number
  failed: number
  lost: number
  duplicated: number
  /** Tasks whose committed result came from a second or later attempt: the chaos did reach them. */
  retried: number
  wrong: string[]
  problems: string[]
  /** Tasks credited with more crashes than attempts that really died. */
  falseCrashes: number
  diedAttempts: number
}

/** Checks every task has exactly one committed, correct result, from the coordinator's view and the fetched folder. */
export interface LedgerPlaces {
  /** The soak's folder (results are fetched into `results/` there). */
  dir: string
  /** The file every task appends `start <index> <attempt>` and `end <index> <attempt>` to. */
  ledger: string
  coordinatorHome: string
  tasks: number
  /** Each task's input hash, by index. */
  inputHashes: string[]
}

export async function verify (client: MeshClient, jobId: number, seen: Map<number, number>, places: LedgerPlaces): Promise<Verdict> {
  const { dir, ledger, coordinatorHome, inputHashes, tasks } = places
  const problems: string[] = []
  const wrong: string[] = []
  // Where commits happen: the database's commit counter and crash count per task.
  const db = new DatabaseSync(join(coordinatorHome, 'coordinator', 'state.db'), { readOnly: true })
  const rows = db.prepare('SELECT idx, commits, crashes FROM task_state WHERE job_id = ? ORDER BY idx').all(jobId) as Array<{ idx: number, commits: number, crashes: number }>
  db.close()
  for (const r of rows) if (r.commits > 1) seen.set(r.idx, Math.max(seen.get(r.idx) ?? 0, r.commits))
  const lines = readFileSync(ledger, 'utf8').split('\n')
  const begun = new Set(lines.filter(l => l.startsWith('start ')).map(l => l.slice('start '.length)))
  const endedSet = new Set(lines.filter(l => l.startsWith('end ')).map(l => l.slice('end '.length)))
  const died = new Map<number, number>()
  for (const b of begun) if (!endedSet.has(b)) died.set(Number(b.split(' ')[0]), (died.get(Number(b.split(' ')[0])) ?? 0) + 1)
  const falseCrashes = rows.filter(r => r.crashes > (died.get(r.idx) ?? 0))
  for (const r of falseCrashes.slice(0, 3)) problems.push(`task ${r.idx} counted ${r.crashes} crash(es), but ${died.get(r.idx) ?? 0} of its attempts died`)
  // The coordinator's view: the commit stream from its start, the task records, the status counts.
  const committed = await committedRecords(client, jobId)
  const perIndex = new Map<number, TaskRecord[]>()
  for (const r of committed) perIndex.set(r.index, [...(perIndex.get(r.index) ?? []), r])
  for (const [index, rs] of perIndex) {
    if (rs.length > 1) seen.set(index, Math.max(seen.get(index) ?? 0, rs.length))
    if (index < 0 || index >= tasks) problems.push(`a committed result for task ${index}, which the job does not have`)
  }
  const duplicated = [...seen.values()].filter(n => n > 1).length
  const done = [...perIndex.values()].filter(rs => rs.some(r => r.state === 'done')).length
  const failedRecords = committed.filter(r => r.state !== 'done')
  const failed = new Set(failedRecords.map(r => r.index)).size
  const lost = tasks - perIndex.size
  for (const r of failedRecords.slice(0, 3)) problems.push(`task ${r.index} ${r.state}: ${r.failure?.kind ?? '?'}: ${r.failure?.message ?? ''}`)

  const records = await taskRecords(client, jobId)
  const notDone = records.filter(r => r.state !== 'done' || r.exitCode !== 0)
  if (records.length !== tasks) problems.push(`the coordinator lists ${records.length} task records for ${tasks} tasks`)
  if (notDone.length > 0) problems.push(`${notDone.length} task records are not done with exit code 0 (e.g. ${notDone[0].id}: ${notDone[0].state})`)
  const [status] = await withReconnect(async () => await client.status(jobId))
  if (status.state !== 'done' || status.counts.done !== tasks) problems.push(`status says job ${status.state} with ${status.counts.done} of ${status.total} done`)
  if (status.counts.done !== done) problems.push(`status counts ${status.counts.done} done, the commit stream holds ${done}`)

  // The fetched folder: one folder per task, its output naming the task and an attempt that ran to its end.
  const dest = join(dir, 'results')
  const report = await client.fetch(jobId, dest)
  if (report.tasks !== committed.length) problems.push(`fetch brought ${report.tasks} tasks, the coordinator committed ${committed.length}`)
  const ends = new Set(readFileSync(ledger, 'utf8').split('\n'))
  const folders = readdirSync(dest).filter(n => existsSync(join(dest, n, 'task.json')))
  if (folders.length !== tasks) problems.push(`the results folder has ${folders.length} task folders for ${tasks} tasks`)
  for (const r of committed) {
    if (r.state !== 'done') continue
    const folder = join(dest, r.name)
    const read = (name: string): string => { try { return readFileSync(join(folder, name), 'utf8').trim() } catch { return '(missing)' } }
    const out = read('out.txt')
    const stdout = read('stdout')
    const [index, attempt, hash] = out.split(' ')
    if (r.name !== `t${r.index}`) wrong.push(`${r.id} is named ${r.name}`)
    else if (Number(index) !== r.index || attempt == null) wrong.push(`${r.id}: out.txt says ${JSON.stringify(out)}`)
    else if (hash !== inputHashes[r.index]) wrong.push(`${r.id}: its input arrived as ${hash?.slice(0, 12)}, not ${inputHashes[r.index].slice(0, 12)}`)
    else if (stdout !== out) wrong.push(`${r.id}: stdout ${JSON.stringify(stdout)} differs from out.txt ${JSON.stringify(out)}`)
    else if (!ends.has(`end ${index} ${attempt}`)) wrong.push(`${r.id}: the result of attempt ${attempt}, which never ran to its end`)
    else {
      const json = JSON.parse(readFileSync(join(folder, 'task.json'), 'utf8')) as TaskRecord
      if (json.index !== r.index || json.attempts !== r.attempts) wrong.push(`${r.id}: task.json is of ${json.id} attempt ${json.attempts}`)
    }
  }
  const retried = committed.filter(r => r.attempts > 1).length
  return { done, failed, lost, duplicated, retried, wrong, problems, falseCrashes: falseCrashes.length, diedAttempts: [...died.values()].reduce((a, b) => a + b, 0) }
}
