/**
 * Nothing lost: agents killed, frozen and drained, the coordinator killed mid-job, a task that kills its
 * agents, a corrupt database. Real processes on loopback; every check is what a user would see.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalMesh, type LocalMesh, type LocalAgentSpec } from '../../bin/local-mesh.ts'
import { connect, type MeshClient } from '../../shared/client/client.ts'
import { parseTasklist, parseJobYaml } from '../../shared/client/spec.ts'
import type { TaskRecord } from '../../shared/protocol/messages.ts'
import type { MeshEvent } from '../../shared/protocol/events.ts'
import { runCli, until } from '../helpers/cli.ts'
import { notCommittedOnce } from '../helpers/ledger.ts'

const FAST = ['--agent-lost', '3s', '--heartbeat', '500ms', '--crash-limit', '2']

async function withMesh (agents: LocalAgentSpec[], fn: (mesh: LocalMesh, client: MeshClient, dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-fail-'))
  const mesh = await startLocalMesh({ dir, coordinatorArgs: FAST, agents })
  const client = await connect({ home: mesh.clientHome })
  try {
    await fn(mesh, client, dir)
  } finally {
    await client.close()
    await mesh.stop()
    if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
  }
}

async function allRecords (client: MeshClient, jobId: number): Promise<TaskRecord[]> {
  const out: TaskRecord[] = []
  let after = 0
  while (true) {
    const page = await client.tasks(jobId, { after, limit: 1000 })
    out.push(...page.tasks)
    if (page.next == null) return out
    after = page.next
  }
}

function tasklist (dir: string, name: string, lines: string[]): ReturnType<typeof parseTasklist> {
  const file = join(dir, `${name}.txt`)
  writeFileSync(file, lines.join('\n') + '\n')
  return parseTasklist(lines.join('\n'), file, dir)
}

test('kill -9 of an agent mid-task: every task still completes, once; a watcher hears the agent is lost', async () => {
  await withMesh([{ ip: '127.0.0.2', hostname: 'a1', slots: 2 }, { ip: '127.0.0.3', hostname: 'a2', slots: 2 }], async (mesh, client, dir) => {
    const watcher = await connect({ home: mesh.clientHome })
    const heard: MeshEvent[] = []
    const abort = new AbortController()
    const watching = watcher.events({ after: Number.MAX_SAFE_INTEGER, follow: true, signal: abort.signal }, es => { heard.push(...es) })
    const job = tasklist(dir, 'k', Array.from({ length: 8 }, (_, i) => `sleep 1.5; echo ${i} > out.txt`))
    const { jobId } = await client.submit(job)
    await until(async () => (await client.status(jobId))[0].counts.running >= 4, 20_000, 'four tasks running')
    const victim = mesh.agents.find(a => a.output().includes('agent: a1 '))!
    victim.child.kill('SIGKILL')
    // Its connection is gone at once: peers says so while the coordinator waits out the lost-agent timeout.
    await until(async () => (await client.peers()).find(p => p.hostname === 'a1')?.state === 'disconnected', 3_000, 'the killed agent shown disconnected')
    try {
      await until(() => heard.some(e => e.type === 'agent.lost'), 20_000, 'the watcher to hear agent.lost')
    } finally {
      abort.abort()
      await watching
      await watcher.close()
    }
    const lost = heard.filter(e => e.type.startsWith('agent.'))
    assert.deepEqual(lost.map(e => [e.type, e.host]), [['agent.lost', 'a1']], 'one agent.lost, for the killed agent')
    assert.ok(heard.some(e => e.type === 'task.started' && e.jobId === jobId), 'the watcher followed the job before')
    const summary = await client.watch(jobId)
    assert.equal(summary.state, 'done')
    assert.equal(summary.counts.done, 8)
    assert.equal((await client.peers()).find(p => p.hostname === 'a1')?.state ?? 'lost', 'lost', 'then lost')
    const records = await allRecords(client, jobId)
    assert.deepEqual(notCommittedOnce(mesh.coordinatorHome, jobId), [], 'each task committed exactly once, counted where commits happen')
    assert.ok(records.some(r => r.attempts === 2), 'the killed agent\'s tasks ran again elsewhere')
    assert.ok(records.every(r => r.state === 'done' && r.exitCode === 0))
  })
})

// The task writes a ledger outside its folder (the test's own), which an isolated task cannot: these agents run
// tasks unisolated, as the agent's user.
const UNISOLATED = ['--isolation', 'none']

test('an agent frozen past the timeout: its tasks move, its late result is refused and its stale task stopped', async () => {
  await withMesh([{ ip: '127.0.0.2', hostname: 'f1', slots: 1, extraArgs: UNISOLATED }, { ip: '127.0.0.3', hostname: 'f2', slots: 1, extraArgs: UNISOLATED }], async (mesh, client, dir) => {
    const ledger = join(dir, 'ledger.txt')
    const first = join(dir, 'first-attempt')
    // The first attempt would run for a minute: it can only end by being stopped. Later attempts are quick.
    // (SIGSTOP freezes the agent, not its task: the task keeps running under its launcher.)
    const job = tasklist(dir, 'freeze', [`echo start $MESHFARM_ATTEMPT_ID $$ >> ${ledger}; if mkdir ${first} 2>/dev/null; then sleep 60; else sleep 1; fi; echo end $MESHFARM_ATTEMPT_ID >> ${ledger}`])
    const { jobId } = await client.submit(job)
    await until(async () => (await client.status(jobId))[0].counts.running === 1, 20_000, 'task running')
    const [running] = await allRecords(client, jobId)
    const frozen = mesh.agents.find(a => a.output().includes(running.peerId!))!
    const other = mesh.agents.find(a => a !== frozen)!
    frozen.child.kill('SIGSTOP')
    // Declared lost after 3 s; the task starts again on the other agent.
    const starts = (): string[] => readFileSync(ledger, 'utf8').split('\n').filter(l => l.startsWith('start'))
    await until(() => starts().length === 2, 20_000, 'second attempt started')
    const stalePid = Number(starts()[0].split(' ')[2])
    frozen.child.kill('SIGCONT')
    const summary = await client.watch(jobId)
    assert.equal(summary.counts.done, 1)
    // The stale attempt is stopped once its agent is back: its shell goes away without writing its end.
    await until(() => !existsSync(`/proc/${stalePid}`), 20_000, 'the stale attempt stopped')
    const lines = readFileSync(ledger, 'utf8').trim().split('\n')
    assert.equal(lines.filter(l => l.startsWith('end')).length, 1, `only the second attempt ended by itself: ${lines.join(' | ')}`)
    const [rec] = await allRecords(client, jobId)
    assert.equal(rec.attempts, 2)
    assert.ok(other.output().includes('connected to coordinator'))
    assert.notEqual(rec.peerId, running.peerId, 'the result committed is the second attempt\'s')
    assert.deepEqual(notCommittedOnce(mesh.coordinatorHome, jobId), [])
  })
})

test('kill -9 of the coordinator during a job of 300 tasks: nothing lost, nothing duplicated', async () => {
  await withMesh([{ ip: '127.0.0.2', hostname: 'c1', slots: 2 }, { ip: '127.0.0.3', hostname: 'c2', slots: 2 }], async (mesh, client, dir) => {
    const job = tasklist(dir, 'many', Array.from({ length: 300 }, (_, i) => `sleep 0.02; echo ${i}`))
    const { jobId } = await client.submit(job)
    await until(async () => (await client.status(jobId))[0].counts.done >= 60, 60_000, '60 tasks done')
    mesh.coordinator.child.kill('SIGKILL')
    await mesh.coordinator.exited
    await new Promise(resolve => setTimeout(resolve, 1000))
    await mesh.startCoordinator()
    const summary = await client.watch(jobId)
    assert.equal(summary.state, 'done')
    assert.equal(summary.counts.done, 300)
    const records = await allRecords(client, jobId)
    assert.equal(records.length, 300)
    assert.deepEqual(notCommittedOnce(mesh.coordinatorHome, jobId), [], 'each of the 300 committed exactly once, across the restart')
    for (const r of records) assert.equal(readStdout(r), undefined)
    const dest = join(dir, 'results')
    const report = await client.fetch(jobId, dest)
    assert.equal(report.tasks, 300)
    assert.equal(readFileSync(join(dest, 'task-123', 'stdout'), 'utf8'), '123\n')
  })
})

function readStdout (r: TaskRecord): string | undefined {
  return r.state !== 'done' ? `task ${r.id} is ${r.state}` : undefined
}

test('a task that kills every agent it touches is failed at the crash limit, and the mesh stays up', async () => {
  // An isolated task cannot signal its agent (another user, another pid namespace): only an unisolated one can.
  await withMesh([{ ip: '127.0.0.2', hostname: 'k1', slots: 1, extraArgs: UNISOLATED }, { ip: '127.0.0.3', hostname: 'k2', slots: 1, extraArgs: UNISOLATED }], async (mesh, client, dir) => {
    const file = join(dir, 'crash.yaml')
    // The task runs a moment before it kills its agent, so its start is known: only a task that was running when
    // its agent died counts as a crash (agents that restart report the ones that did; see core.test.ts).
    const text = 'name: crash\ntasks:\n  - name: killer\n    command: "sleep 1; kill -9 $MESHFARM_AGENT_PID; sleep 5"\n'
    writeFileSync(file, text)
    const { jobId } = await client.submit(parseJobYaml(text, file, dir))
    const summary = await client.watch(jobId)
    assert.equal(summary.state, 'failed')
    const [rec] = await allRecords(client, jobId)
    assert.equal(rec.failure?.kind, 'crash-limit')
    assert.equal(rec.attempts, 2)
    for (const a of mesh.agents) assert.notEqual(a.child.exitCode ?? a.child.signalCode, null, 'both agents were killed')
    assert.ok((await client.ping()).rttMs >= 0, 'the coordinator still answers')
  })
})

test('drain: the agent finishes its tasks, takes no new ones, and leaves without a crash', async () => {
  await withMesh([{ ip: '127.0.0.2', hostname: 'd1', slots: 2 }, { ip: '127.0.0.3', hostname: 'd2', slots: 2 }], async (mesh, client, dir) => {
    const job = tasklist(dir, 'drain', Array.from({ length: 10 }, () => 'sleep 1'))
    const { jobId } = await client.submit(job)
    await until(async () => (await client.status(jobId))[0].counts.running >= 4, 20_000, 'four running')
    const r = await runCli(mesh.clientHome, ['drain', 'd1'])
    assert.equal(r.code, 0, r.stderr)
    const d1 = mesh.agents.find(a => a.output().includes('d1 '))!
    assert.equal(await d1.exited, 0, 'the drained agent stopped by itself')
    const summary = await client.watch(jobId)
    assert.equal(summary.counts.done, 10)
    const records = await allRecords(client, jobId)
    assert.ok(records.every(x => x.attempts === 1), 'no task was cut short or retried')
    assert.ok(records.filter(x => x.host === 'd1').length >= 2)
  })
})

test('a corrupt coordinator database is reported in one line, not a crash loop', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-corrupt-'))
  try {
    const home = join(dir, 'coord')
    assert.equal((await runCli(home, ['init', '--no-mdns'])).code, 0)
    mkdirSync(join(home, 'coordinator'), { recursive: true })
    writeFileSync(join(home, 'coordinator', 'state.db'), Buffer.alloc(8192, 0x5a))
    const r = await runCli(home, ['coordinator', '--listen', '/ip4/127.0.0.1/tcp/0'])
    assert.equal(r.code, 8)
    const lines = r.stderr.trim().split('\n')
    assert.equal(lines.length, 1, r.stderr)
    assert.match(lines[0], /^error: the coordinator database .*state\.db cannot be used: .*move it aside/)
    assert.ok(existsSync(join(home, 'coordinator', 'state.db')), 'the damaged file is left for inspection')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a second agent on the same state folder is refused in one line, and the first keeps working', async () => {
  await withMesh([{ ip: '127.0.0.2', hostname: 'solo', slots: 1 }], async (mesh, client, dir) => {
    const home = join(mesh.dir, 'agent-solo')
    const r = await runCli(home, ['agent', '--listen', '/ip4/127.0.0.2/tcp/0', '--allow-root'])
    assert.equal(r.code, 2)
    const lines = r.stderr.trim().split('\n')
    assert.equal(lines.length, 1, r.stderr)
    assert.match(lines[0], /another agent \(pid \d+\) already uses/)
    const { jobId } = await client.submit(tasklist(dir, 'solo', ['echo still here']))
    assert.equal((await client.watch(jobId)).counts.done, 1)
  })
})
