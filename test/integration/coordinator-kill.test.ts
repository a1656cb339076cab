/**
 * The fast paths keep the guarantee "nothing acknowledged before it is durable": a coordinator killed with SIGKILL
 * in the middle of a burst of trivial tasks (results batched, commits grouped, no row per placement) comes back
 * with every result it had acknowledged, unchanged, and the job then finishes with each task committed once, by an
 * attempt that really ran to its end. Real processes on loopback: a coordinator, one agent, the client API.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { connect, type MeshClient } from '../../shared/client/client.ts'
import type { ParsedJob, ParsedTask } from '../../shared/client/spec.ts'
import type { TaskRecord } from '../../shared/protocol/messages.ts'
import { request, withReconnect } from '../../shared/net/rpc.ts'

const TASKS = 3000
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Every committed result after `cursor`, in commit order: what the coordinator has acknowledged as durable. */
async function commitsAfter (client: MeshClient, jobId: number, cursor: number): Promise<{ records: TaskRecord[], next: number, active: boolean }> {
  const records: TaskRecord[] = []
  while (true) {
    const page = await withReconnect(async () => await request(client.node, client.coordinator, { t: 'client.results', jobId, after: cursor, limit: 1000 }, 'reply.results'))
    records.push(...page.records)
    cursor = page.next
    if (!page.more) return { records, next: cursor, active: page.jobState === 'active' }
  }
}

test('kill -9 of the coordinator during a burst of trivial tasks loses no acknowledged result', { timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-kill-'))
  let mesh: LocalMesh | null = null
  let client: MeshClient | null = null
  try {
    mesh = await startLocalMesh({ dir, agents: [{ ip: '127.0.0.2', hostname: 'burst', slots: 4, cores: 4, extraArgs: ['--isolation', 'none'] }] })
    client = await connect({ home: mesh.clientHome })
    const ledger = join(dir, 'ledger')
    // Each task appends `end <index> <attempt>` as its last act and prints its attempt (its stdout is then its own).
    const tasks: ParsedTask[] = Array.from({ length: TASKS }, (_, i) => ({
      index: i, name: `t${i}`, commands: [`echo "end ${i} $MESHFARM_ATTEMPT_ID" >> '${ledger}'; echo $MESHFARM_ATTEMPT_ID`],
      cores: 1, gpus: 0, memoryMb: 0, timeoutMs: 0, env: {}, inputs: [], outputs: [], constraints: {}
    }))
    const job: ParsedJob = { name: 'burst', layout: 'per-task', retries: 0, shared: [], tasks, specText: '# burst\n', specFile: 'burst.test' }
    const { jobId } = await client.submit(job)

    // Follow the commit stream until a good part of the burst is committed, then kill -9 mid-stream.
    const acked = new Map<number, TaskRecord>()
    let cursor = 0
    while (acked.size < TASKS / 4) {
      const page = await commitsAfter(client, jobId, cursor)
      for (const r of page.records) acked.set(r.index, r)
      cursor = page.next
      assert.ok(page.active, 'the burst ended before the coordinator could be killed in it: make it larger')
      await sleep(20)
    }
    await mesh.coordinator.stop('SIGKILL')
    console.log(`killed with ${acked.size} of ${TASKS} results acknowledged`)
    assert.ok(acked.size < TASKS, 'killed during the burst')
    await mesh.startCoordinator()

    // Read back at once: each result acknowledged before the kill is there, the same record (same attempt, same
    // output); then the job is followed to its end.
    const after = new Map<number, TaskRecord[]>()
    const take = (records: TaskRecord[]): void => { for (const r of records) after.set(r.index, [...(after.get(r.index) ?? []), r]) }
    let page = await commitsAfter(client, jobId, 0)
    take(page.records)
    const lost = [...acked.keys()].filter(i => after.get(i) == null)
    assert.deepEqual(lost.slice(0, 5), [], `${lost.length} acknowledged results are gone after the restart`)
    for (const [i, r] of acked) assert.deepEqual(after.get(i), [r], `task ${i}: its acknowledged result changed after the restart`)
    const deadline = performance.now() + 120_000
    while (page.active || page.records.length > 0) {
      assert.ok(performance.now() < deadline, `the job did not finish within 2 minutes of the restart (${after.size} of ${TASKS} committed)`)
      await sleep(100)
      page = await commitsAfter(client, jobId, page.next)
      take(page.records)
    }

    // The job then finishes: every task committed exactly once, done, by an attempt that ran to its end.
    assert.equal(after.size, TASKS)
    const twice = [...after.values()].filter(rs => rs.length > 1)
    assert.equal(twice.length, 0, `${twice.length} tasks committed twice`)
    // An attempt's stdout is its id: the committed stdout's hash names the attempt, which must have ended.
    const endedBy = new Map<string, number>()
    for (const line of readFileSync(ledger, 'utf8').split('\n')) {
      const [, i, attempt] = line.split(' ')
      if (attempt != null) endedBy.set(createHash('sha256').update(`${attempt}\n`).digest('hex'), Number(i))
    }
    for (const [i, [r]] of after) {
      assert.equal(r.state, 'done', `task ${i}: ${r.state}`)
      assert.equal(endedBy.get(r.stdout?.hash ?? ''), i, `task ${i}: committed with an attempt that never ran to its end`)
    }
    const [status] = await client.status(jobId)
    assert.equal(status.counts.done, TASKS)
    const db = new DatabaseSync(join(mesh.coordinatorHome, 'coordinator', 'state.db'), { readOnly: true })
    const commits = db.prepare('SELECT COUNT(*) AS n, MAX(commits) AS most FROM task_state WHERE job_id = ? AND seq IS NOT NULL').get(jobId) as { n: number, most: number }
    db.close()
    assert.deepEqual({ ...commits }, { n: TASKS, most: 1 }, 'the database holds one commit per task')
  } finally {
    await client?.close()
    await mesh?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
