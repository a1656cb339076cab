import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventHub, findLastSeq, type FrameSink } from '../../coordinator/dashboard/event-hub.ts'
import { MemoryMesh } from '../helpers/memory-mesh.ts'

/** A page that reads everything at once, recording the frames it got. */
class Page implements FrameSink {
  frames: string[] = []
  killed = false
  async write (frame: string): Promise<void> { this.frames.push(...frame.split(/(?<=\n\n)/)) }
  kill (): void { this.killed = true }
  /** Ids of the event frames (not hello/reset/heartbeat). */
  seqs (): number[] {
    return this.frames.filter(f => f.startsWith('id: ')).map(f => Number(/^id: (\d+)/.exec(f)![1]))
  }
}

/** A page that never reads: its first write never completes. */
class StuckPage implements FrameSink {
  writes = 0
  killed = false
  async write (): Promise<void> { this.writes++; await new Promise(() => {}) }
  kill (): void { this.killed = true }
}

const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.resolve() }

function scripted (): { mesh: MemoryMesh, agent: string, job: number } {
  const mesh = new MemoryMesh()
  const agent = mesh.addAgent('alpha')
  const job = mesh.submit({ peerId: 'p1', name: 'ana' }, 'sweep', 5)
  return { mesh, agent, job }
}

test('a new stream gets hello with the current seq, then live events in order', { timeout: 10_000 }, async () => {
  const { mesh, agent, job } = scripted()
  const hub = new EventHub(mesh)
  const page = new Page()
  hub.open(page, null)
  mesh.start(job, 0, agent)
  mesh.finish(job, 0)
  await settle()
  assert.match(page.frames[0], /^retry: 2000\nevent: hello\nid: 2\ndata: \{"seq":2,"resumed":false\}\n\n$/)
  assert.deepEqual(page.seqs(), [3, 4])
  assert.equal(JSON.parse(page.frames[2].split('data: ')[1]).type, 'task.finished')
  hub.stop()
})

test('a stream resuming after Last-Event-ID gets exactly the events it missed, then live ones', { timeout: 10_000 }, async () => {
  const { mesh, agent, job } = scripted()
  const hub = new EventHub(mesh)
  for (let i = 0; i < 5; i++) { mesh.start(job, i, agent); mesh.finish(job, i) }
  const page = new Page()
  hub.open(page, 4)
  mesh.tick(1000)
  mesh.addAgent('beta')
  await settle()
  assert.match(page.frames[0], /event: hello\nid: 4\ndata: \{"seq":4,"resumed":true\}/)
  const all = mesh.events.map(e => e.seq)
  assert.deepEqual(page.seqs(), all.filter(s => s > 4), 'nothing missed, nothing twice')
  hub.stop()
})

test('two pages see the same events in the same order', { timeout: 10_000 }, async () => {
  const { mesh, agent, job } = scripted()
  const hub = new EventHub(mesh)
  const a = new Page()
  const b = new Page()
  hub.open(a, null)
  hub.open(b, 0)
  for (let i = 0; i < 5; i++) { mesh.start(job, i, agent); mesh.finish(job, i, { exitCode: i % 2 }) }
  await settle()
  assert.deepEqual(a.seqs(), mesh.events.map(e => e.seq).filter(s => s > 2))
  assert.deepEqual(b.seqs(), mesh.events.map(e => e.seq))
  hub.stop()
})

test('a page that does not read is dropped; the others and the mesh go on', { timeout: 10_000 }, async () => {
  const { mesh } = scripted()
  const logs: string[] = []
  const hub = new EventHub(mesh, { maxQueuedBytes: 4000, log: l => logs.push(l) })
  const stuck = new StuckPage()
  const good = new Page()
  const stuckHandle = hub.open(stuck, null)
  hub.open(good, null)
  // Events over time, as a mesh makes them: the reading page keeps up, the stuck one falls behind.
  for (let i = 0; i < 20; i++) {
    mesh.flood(10, 10)
    await settle()
  }
  await stuckHandle.done
  assert.ok(stuck.killed)
  assert.equal(stuck.writes, 1, 'only the first write was ever attempted')
  assert.equal(hub.streams, 1)
  assert.equal(good.seqs().length, 200)
  assert.ok(logs.some(l => /dropped a slow event stream/.test(l)))
  hub.stop()
})

test('a resume further back than the backlog limit gets reset; a page that throws is dropped', { timeout: 10_000 }, async () => {
  const { mesh } = scripted()
  mesh.flood(30, 1)
  const hub = new EventHub(mesh, { maxBacklog: 10 })
  const page = new Page()
  hub.open(page, 1)
  await settle()
  assert.match(page.frames[0], /event: reset\nid: 32\ndata: \{"seq":32\}/, 'reset carries the seq the page continues from')
  assert.deepEqual(page.seqs(), [])
  mesh.flood(1, 1)
  await settle()
  assert.deepEqual(page.seqs(), [33])
  // A gap with few but large events is a reset too: replaying it would overflow the page's queue.
  const small = new EventHub(mesh, { maxQueuedBytes: 1000 })
  const p2 = new Page()
  small.open(p2, 25)
  await settle()
  assert.match(p2.frames[0], /event: reset/)
  small.stop()
  const broken: FrameSink = { write: async () => { throw new Error('socket gone') }, kill: () => {} }
  const h = hub.open(broken, null)
  await h.done
  assert.equal(hub.streams, 1)
  hub.stop()
  assert.equal(hub.streams, 0)
})

test('the hub finds the last seq of a source that cannot say it, and unsubscribes on stop', () => {
  const { mesh } = scripted()
  mesh.flood(12_345, 0)
  const noLast = Object.assign(Object.create(mesh) as MemoryMesh, { lastSeq: undefined })
  assert.equal(findLastSeq(noLast), 12_347)
  const hub = new EventHub(noLast)
  assert.equal(hub.lastSeq, 12_347)
  hub.stop()
  const page = new Page()
  hub.open(page, null)
  mesh.flood(1, 0)
  assert.equal(hub.lastSeq, 12_347, 'no longer listening')
})
