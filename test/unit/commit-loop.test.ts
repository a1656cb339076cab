/**
 * The commit loop and the event stream, with a real SQLite store and a real core, no network: effects leave only
 * after the commit, a failing handler is undone whole, a failed commit stops the loop for good, and a watcher
 * that connects late gets every event after its last sequence number, then the live ones, without gaps.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CommitLoop } from '../../coordinator/commit-loop.ts'
import { CoordinatorCore } from '../../coordinator/core.ts'
import { EventFeed, follow } from '../../coordinator/event-feed.ts'
import { Store } from '../../coordinator/store.ts'
import type { CoordMessage, JobHeader, TaskSpec } from '../../shared/protocol/messages.ts'
import type { MeshEvent } from '../../shared/protocol/events.ts'
import { MeshfarmError } from '../../shared/util/errors.ts'

const HEADER: JobHeader = { name: 'j', layout: 'per-task', shared: [], retries: 0, specText: '', specFile: 'j.yaml' }
const tasks = (n: number): TaskSpec[] => Array.from({ length: n }, (_, i) => ({ index: i, name: `t${i}`, commands: ['true'], env: {}, inputs: [], outputs: [], timeoutMs: 0, constraints: {}, cores: 1, gpus: 0, memoryMb: 0 }))
const RESOURCES = { hostname: 'a', os: 'linux', cores: 1, physicalCores: 1, memoryMb: 1000, slots: 1, gpus: [], labels: {}, runsAsRoot: false }

function setup (): { loop: CommitLoop, core: CoordinatorCore, store: Store, feed: EventFeed, delivered: Array<[string, CoordMessage]>, published: MeshEvent[], fatal: MeshfarmError[] } {
  const store = new Store(join(mkdtempSync(join(tmpdir(), 'meshfarm-loop-')), 'state.db'))
  const delivered: Array<[string, CoordMessage]> = []
  const published: MeshEvent[] = []
  const fatal: MeshfarmError[] = []
  const feed = new EventFeed()
  let core!: CoordinatorCore
  const loop = new CommitLoop({
    store,
    deliver: (a, m) => { delivered.push([a, m]) },
    publish: e => { published.push(...e); feed.publish(e) },
    afterHandlers: now => { core.schedulePass(now) },
    resync: now => { core.resync(now) },
    onFatal: err => { fatal.push(err) },
    log: () => {},
    now: () => 1000
  })
  core = loop.runNow(() => new CoordinatorCore(store, loop.comm, { agentLostMs: 1000, crashLimit: 3, prefetch: 0 }, 0))
  return { loop, core, store, feed, delivered, published, fatal }
}

test('assignments and events leave only after the batch has committed', async () => {
  const { loop, core, delivered, published } = setup()
  const done = loop.run(() => {
    core.onAgentHello('A', RESOURCES, [], [], false, [], 1000)
    const id = core.submit('me', HEADER, tasks(2), 1000)
    // Inside the handler nothing has left yet.
    assert.equal(delivered.length, 0)
    assert.equal(published.length, 0)
    return id
  })
  const jobId = await done
  assert.equal(delivered.filter(([, m]) => m.t === 'coord.assign').length, 1, 'the scheduling pass placed the first task')
  assert.deepEqual(published.map(e => e.type), ['agent.joined', 'job.submitted'])
  assert.equal(core.jobSummary(jobId).counts.staging, 1)
})

test('a handler that fails is undone whole: database, memory, messages and events', async () => {
  const { loop, core, store, delivered, published } = setup()
  await loop.run(() => { core.onAgentHello('A', RESOURCES, [], [], false, [], 1000) })
  const before = { events: store.lastEventSeq, next: store.nextJobId(), sent: delivered.length, seen: published.length }
  await assert.rejects(loop.run(() => {
    core.submit('me', HEADER, tasks(1), 1000)
    throw new Error('a bug after the change')
  }), /a bug after the change/)
  assert.equal(store.nextJobId(), before.next, 'no job in the database')
  assert.deepEqual(store.eventsAfter(before.events, 10), [], 'no event stored')
  assert.equal(core.jobSummaries().length, 0, 'no job in memory either (rebuilt from the store)')
  assert.equal(delivered.length, before.sent)
  assert.equal(published.length, before.seen)
  // The loop carries on.
  const jobId = await loop.run(() => core.submit('me', HEADER, tasks(1), 1000))
  assert.equal(core.jobSummary(jobId).total, 1)
})

test('a refusal (thrown before any change) is passed to its caller and the batch commits the rest', async () => {
  const { loop, core } = setup()
  const ok = loop.run(() => core.submit('me', HEADER, tasks(1), 1000))
  const refused = loop.run(() => core.cancelJob(99, 'me', false, 1000))
  await assert.rejects(refused, (err: unknown) => err instanceof MeshfarmError && err.code === 'NOT_FOUND')
  assert.equal(core.jobSummary(await ok).total, 1)
})

test('a commit that fails stops the loop for good, with a disk error naming the database', async () => {
  const { loop, core, store, fatal } = setup()
  await loop.run(() => core.submit('me', HEADER, tasks(1), 1000))
  store.close() // the next COMMIT (in fact BEGIN) fails, as it would on a broken disk
  await assert.rejects(loop.run(() => core.submit('me', HEADER, tasks(1), 1000)), (err: unknown) => err instanceof MeshfarmError && err.code === 'DISK')
  assert.equal(fatal.length, 1)
  assert.match(fatal[0].message, /could not commit/)
  await assert.rejects(loop.run(() => 1), (err: unknown) => err instanceof MeshfarmError && err.code === 'DISK', 'nothing more is accepted')
})

test('a watcher that connects late gets the events after its last sequence number, then the live ones, in order', { timeout: 10_000 }, async () => {
  const { loop, core, store, feed } = setup()
  await loop.run(() => core.submit('me', HEADER, tasks(1), 1000))
  await loop.run(() => core.submit('me', HEADER, tasks(1), 1000))
  const all = store.eventsAfter(0, 100)
  assert.deepEqual(all.map(e => e.type), ['job.submitted', 'job.submitted'])
  const seen: MeshEvent[] = []
  let close!: () => void
  const closed = new Promise<void>(resolve => { close = resolve })
  const following = follow(feed, store, all[0].seq, () => true, async events => {
    seen.push(...events)
    if (seen.length === 2) close()
    return true
  }, closed)
  // A live event, committed while the watcher is reading its history.
  await loop.run(() => core.submit('me', HEADER, tasks(1), 1000))
  assert.equal(await following, 'closed')
  const expected = store.eventsAfter(all[0].seq, 100)
  assert.equal(expected.length, 2)
  assert.deepEqual(seen.map(e => e.seq), expected.map(e => e.seq), 'the missed one, then the live one, each once, in order')
})
