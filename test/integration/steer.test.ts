/**
 * Seeing and steering a shared mesh, with real processes: two watchers see the same events in the same order and
 * one that loses its connection misses nothing; `logs -f` shows a running task's output; `why` names the missing
 * resource and an unplaceable task is refused at submit; fair share lets a second person's small job finish while
 * the first person's big one still runs; hold and release of a job and of one task; members' names, given at
 * invite or join, where people look.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { CLI_ENTRY, TS_ARGS } from '../../bin/processes.ts'
import { connect, type MeshClient } from '../../shared/client/client.ts'
import type { MeshEvent } from '../../shared/protocol/events.ts'
import type { JobSummary } from '../../shared/protocol/data.ts'
import type { TaskRecord } from '../../shared/protocol/messages.ts'
import { runCli, runCliJson, until } from '../helpers/cli.ts'

let mesh: LocalMesh
let dir: string
let alice: string
let bob: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-steer-'))
  mesh = await startLocalMesh({ dir, agents: [{ ip: '127.0.0.2', hostname: 'w1', slots: 1 }, { ip: '127.0.0.3', hostname: 'w2', slots: 1 }], coordinatorArgs: ['--prefetch', '0'] })
  alice = await mesh.newHome('alice')
  bob = await mesh.newHome('bob')
})

after(async () => {
  await mesh?.stop()
  if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})

function tasklist (name: string, lines: string[]): string {
  const folder = join(dir, name)
  mkdirSync(folder, { recursive: true })
  const file = join(folder, `${name}.txt`)
  writeFileSync(file, lines.join('\n') + '\n')
  return file
}

async function status (home: string, jobId: number): Promise<JobSummary> {
  return (await runCliJson<JobSummary[]>(home, ['status', String(jobId)]))[0]
}

test('two watchers see the same events in the same order; one that loses its coordinator misses nothing', { timeout: 120_000 }, async () => {
  const a = await connect({ home: alice })
  const b = await connect({ home: bob })
  const seen: Record<'a' | 'b', MeshEvent[]> = { a: [], b: [] }
  const abort = new AbortController()
  let jobId = -1
  const watch = async (c: MeshClient, who: 'a' | 'b'): Promise<number> => await c.events({ after: Number.MAX_SAFE_INTEGER, follow: true, signal: abort.signal }, events => {
    seen[who].push(...events)
    if (events.some(e => e.type === 'job.done' && e.jobId === jobId) && seen.a.some(e => e.type === 'job.done') && seen.b.some(e => e.type === 'job.done')) abort.abort()
  })
  try {
    const watching = [watch(a, 'a'), watch(b, 'b')]
    const file = tasklist('watched', Array.from({ length: 6 }, (_, i) => `sleep 0.3; echo ${i}`))
    jobId = (await runCliJson<{ jobId: number }>(alice, ['submit', file])).jobId
    await until(() => seen.a.some(e => e.type === 'task.finished'), 30_000, 'a first task finished')
    // The coordinator dies and comes back mid-job: both watchers reconnect and resume from their last event.
    mesh.coordinator.child.kill('SIGKILL')
    await mesh.coordinator.exited
    await mesh.startCoordinator()
    await Promise.all(watching)
    const ofJob = (es: MeshEvent[]): string[] => es.filter(e => e.jobId === jobId).map(e => `${e.seq} ${e.type} ${e.index ?? ''}`)
    assert.deepEqual(ofJob(seen.a), ofJob(seen.b), 'the same events, in the same order')
    // Nothing missed: what the store holds for the job, from its first event on.
    const all: MeshEvent[] = []
    await a.events({ after: 0, jobId, follow: false }, es => { all.push(...es) })
    assert.deepEqual(ofJob(seen.a), ofJob(all))
    assert.equal(seen.a.filter(e => e.jobId === jobId && e.type === 'task.finished').length, 6)
    assert.ok(seen.a.every((e, i) => i === 0 || e.seq > seen.a[i - 1].seq), 'strictly increasing, no repeats')
  } finally {
    abort.abort()
    await a.close()
    await b.close()
  }
})

test('watch --json prints one event per line, and stops at the end of the job', async () => {
  const file = tasklist('watch-json', ['echo one', 'echo two'])
  const { jobId } = await runCliJson<{ jobId: number }>(alice, ['submit', file])
  const r = await runCli(alice, ['watch', String(jobId), '--since', '0', '--json'])
  assert.equal(r.code, 0, r.stderr)
  const lines = r.stdout.trim().split('\n').map(l => JSON.parse(l) as MeshEvent)
  assert.ok(lines.length >= 4)
  assert.equal(lines.at(-1)?.type, 'job.done')
  assert.ok(lines.every(e => e.jobId === jobId && typeof e.seq === 'number'))
})

test('logs -f shows a task\'s output while it runs, from the agent that runs it', async () => {
  const file = tasklist('logs', ['for i in 1 2 3; do echo line$i; sleep 0.5; done; sleep 60'])
  const { jobId } = await runCliJson<{ jobId: number }>(alice, ['submit', file])
  const child = spawn(process.execPath, [...TS_ARGS, CLI_ENTRY, '--home', alice, 'logs', `${jobId}.0`, '-f'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  try {
    await until(() => out.includes('line3'), 30_000, 'the third line while the task runs')
    assert.equal((await status(alice, jobId)).counts.running, 1, 'the task is still running')
    assert.equal(out, 'line1\nline2\nline3\n')
  } finally {
    await runCli(alice, ['cancel', String(jobId)])
    child.kill()
  }
  // After the end, the log comes from the coordinator's store.
  const later = await runCli(alice, ['logs', String(jobId), '0'])
  assert.equal(later.code, 0)
})

test('why names the requirement no agent meets; an unplaceable task is refused at submit unless kept for later', async () => {
  const file = tasklist('gpu64', ['nvidia-smi'])
  const refused = await runCli(alice, ['submit', file, '--gpus', '64'])
  assert.equal(refused.code, 2)
  assert.match(refused.stderr, /^error: task 0 \(task-0\) needs 64 GPUs; the largest agent has 0; nothing was submitted \(--allow-unplaceable keeps/)
  const kept = await runCliJson<{ jobId: number }>(alice, ['submit', file, '--gpus', '64', '--allow-unplaceable'])
  const why = await runCliJson<Array<{ reason: string }>>(alice, ['why', String(kept.jobId)])
  assert.match(why[0].reason, /needs 64 GPUs; the largest agent has 0/)
  await runCli(alice, ['cancel', String(kept.jobId)])
})

test('fair share: a second person\'s small job finishes while the first person\'s big job still runs', async () => {
  const big = tasklist('big', Array.from({ length: 30 }, () => 'sleep 1'))
  const { jobId: bigJob } = await runCliJson<{ jobId: number }>(alice, ['submit', big])
  await until(async () => (await status(alice, bigJob)).counts.running === 2, 30_000, 'alice\'s job fills the mesh')
  const small = tasklist('small', ['echo a', 'echo b'])
  const { jobId: smallJob } = await runCliJson<{ jobId: number }>(bob, ['submit', small])
  // Bob's tasks wait only for a slot to free, not behind alice's 28 queued tasks.
  const why = await runCliJson<Array<{ reason: string }>>(bob, ['why', String(smallJob)])
  assert.doesNotMatch(why.map(w => w.reason).join(' '), /28 of/)
  await until(async () => (await status(bob, smallJob)).state === 'done', 30_000, 'bob\'s job done')
  const bigNow = await status(alice, bigJob)
  assert.equal(bigNow.state, 'active', 'alice\'s job is still running')
  assert.ok(bigNow.counts.done < 25, `bob did not wait for alice's job (${bigNow.counts.done} of 30 done)`)
  // Alice, waiting behind bob, is told why: see the hold test, where the wait lasts long enough to ask.
  await runCli(alice, ['cancel', String(bigJob)])
})

test('hold and release of a job and of one task; a person waiting behind another is told why (fair share)', async () => {
  // A box with one GPU joins. GPUs are not queued at agents beyond what they have, so with its GPU busy the
  // tasks that need it wait here, in the coordinator's queue, where holds and fair share apply.
  await mesh.startAgent({ ip: '127.0.0.4', hostname: 'g1', slots: 1, gpus: '0' })
  const gpu = ['--gpus', '1']
  const { jobId: blockJob } = await runCliJson<{ jobId: number }>(alice, ['submit', tasklist('blocker', ['sleep 60']), ...gpu])
  await until(async () => (await status(alice, blockJob)).counts.running === 1, 30_000, 'the GPU busy')
  const { jobId } = await runCliJson<{ jobId: number }>(bob, ['submit', tasklist('held', ['echo held-then-run']), ...gpu])
  const { jobId: partly } = await runCliJson<{ jobId: number }>(bob, ['submit', tasklist('partly', ['echo runs', 'echo waits']), ...gpu, '--priority', '5'])
  // Among bob's own jobs, the later one with the higher priority goes first.
  assert.match((await runCliJson<Array<{ reason: string }>>(bob, ['why', String(jobId)]))[0].reason, /; 2 of bob's tasks are ahead of it$/)
  // Alice, who used the mesh most, waits behind bob, who used less: she is told so, by name.
  const { jobId: other } = await runCliJson<{ jobId: number }>(alice, ['submit', tasklist('other', ['echo other']), ...gpu])
  const aliceWhy = await runCliJson<Array<{ reason: string }>>(alice, ['why', String(other)])
  assert.match(aliceWhy.map(w => w.reason).join(' '), /fair share: 3 tasks of bob go first \(they have used less lately\)/)
  assert.equal((await runCli(bob, ['hold', String(jobId)])).code, 0)
  const one = await runCli(bob, ['hold', `${partly}.1`])
  assert.equal(one.code, 0, one.stderr)
  assert.match(one.stdout, new RegExp(`^task ${partly}\\.1: held`))
  await runCli(alice, ['cancel', String(blockJob)])
  // The GPU is free now: other tasks run to their end, so the scheduler has had its chances at the held ones.
  await until(async () => (await status(alice, other)).state === 'done' && (await status(bob, partly)).counts.done === 1, 30_000, 'the unheld tasks done')
  assert.equal((await status(bob, jobId)).counts.queued, 1, 'the held job did not start')
  const why = await runCliJson<Array<{ reason: string }>>(bob, ['why', String(jobId)])
  assert.match(why.map(w => w.reason).join(' '), /the job is held \(meshfarm release \d+\)/)
  const partlyNow = await status(bob, partly)
  assert.deepEqual([partlyNow.state, partlyNow.counts.done, partlyNow.counts.held], ['active', 1, 1], 'only the held task waits')
  assert.deepEqual(await runCliJson<Array<{ reason: string }>>(bob, ['why', String(partly), '1']), [{ index: 1, state: 'held', reason: `held (meshfarm release ${partly} 1)` }])
  assert.equal((await runCli(alice, ['release', String(jobId)])).code, 6, 'only its owner or an admin may release it')
  assert.equal((await runCli(alice, ['release', `${partly}.1`])).code, 6, 'nor one of its tasks')
  assert.equal((await runCli(bob, ['release', String(jobId)])).code, 0)
  assert.equal((await runCli(bob, ['release', String(partly), '1'])).code, 0)
  await until(async () => (await status(bob, jobId)).state === 'done' && (await status(bob, partly)).state === 'done', 30_000, 'the released job and task done')
})

test('people, not peer ids: the name given at invite (or else at join) shows in access list, status, peers and task.json', async () => {
  const join1 = async (who: string, inviteArgs: string[], name: string): Promise<string> => {
    const { invite } = await runCliJson<{ invite: string }>(mesh.clientHome, ['invite', '--role', 'submitter', ...inviteArgs])
    const file = join(dir, `${who}.invite`)
    writeFileSync(file, invite + '\n', { mode: 0o600 })
    const home = join(dir, who)
    const r = await runCli(home, ['join', file, '--name', name])
    assert.equal(r.code, 0, r.stderr)
    return home
  }
  // The admin's name wins over the one the joiner gives; without one, the joiner's.
  const carol = await join1('carol', ['--name', 'lab-07-owner'], 'carol-laptop')
  await join1('dave', [], 'dave')
  const list = await runCli(mesh.clientHome, ['access', 'list'])
  assert.match(list.stdout, /│ peer +│ name +│ roles +│/)
  assert.match(list.stdout, /│ 12D3\w+ +│ lab-07-owner +│ submitter +│/)
  assert.match(list.stdout, /│ 12D3\w+ +│ dave +│ submitter +│/)
  assert.doesNotMatch(list.stdout, /carol-laptop/)
  const results = join(dir, 'carol-results')
  const { summary: done } = await runCliJson<{ summary: JobSummary }>(carol, ['submit', tasklist('named', ['echo hi']), '--wait', '--results', results])
  assert.equal(done.ownerName, 'lab-07-owner')
  assert.match((await runCli(carol, ['status', String(done.jobId)])).stdout, /lab-07-owner/)
  const taskJson = readdirSync(results, { recursive: true, encoding: 'utf8' }).filter(f => f.endsWith('task.json'))
  assert.equal(taskJson.length, 1)
  assert.equal((JSON.parse(readFileSync(join(results, taskJson[0]), 'utf8')) as TaskRecord).owner, 'lab-07-owner')
  // Agents are members too: peers shows the name each was given beside its host name.
  assert.match((await runCli(carol, ['peers'])).stdout, /\bw1 \(agent-w1\)/)
})
