import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  COORDINATOR, DEFAULT_LIMITS, chunkDone, comingBitmap, doneBitmap, fetchEnded, fetchStarted, hasChunk, isComplete, newPlan, nextFetches, sourceFailed,
  type ChunkPlan, type ChunkSource
} from '../../shared/files/chunk-plan.ts'

const src = (id: string, have: Uint8Array | 'all' = 'all'): ChunkSource => ({ id, have, busy: 0, failures: 0, restUntil: 0 })
const LIMITS = { perPeer: 2, perCoordinator: 2, total: 6, coordinatorRun: 1 }

function bits (count: number, held: number[]): Uint8Array {
  const b = new Uint8Array(Math.ceil(count / 8))
  for (const i of held) b[i >> 3] |= 1 << (i & 7)
  return b
}

/** Runs a plan to the end: every pick starts and succeeds at once, except those `fail` says fail. */
function run (plan: ChunkPlan, sources: ChunkSource[], fail: (chunk: number, source: string) => 'ok' | 'gone' | 'tampered', now = 0): Map<string, number> {
  const served = new Map<string, number>()
  for (let step = 0; step < 1000 && !isComplete(plan); step++) {
    const picks = nextFetches(plan, sources, now, LIMITS)
    assert.ok(picks.length > 0 || sources.every(s => s.restUntil > now), `step ${step}: something to do`)
    const chunks = picks.map(p => p.chunk)
    assert.equal(new Set(chunks).size, chunks.length, 'no chunk asked twice at once')
    for (const p of picks) {
      const s = sources.find(x => x.id === p.source)!
      assert.ok(hasChunk(s.have, p.chunk), `${p.source} holds chunk ${p.chunk}`)
      fetchStarted(plan, s, p.chunk)
    }
    for (const p of picks) {
      const s = sources.find(x => x.id === p.source)!
      const outcome = fail(p.chunk, p.source)
      if (outcome === 'ok') {
        chunkDone(plan, s, p.chunk)
        served.set(p.source, (served.get(p.source) ?? 0) + 1)
      } else {
        sourceFailed(s, now, outcome === 'tampered')
      }
      fetchEnded(plan, s, p.chunk)
    }
    now += 1000
  }
  assert.ok(isComplete(plan), 'the plan completes')
  return served
}

test('with no peers, the coordinator sends every chunk from the asker\'s start, one fetch at a time', () => {
  const plan = newPlan(10, 7)
  const first = nextFetches(plan, [src(COORDINATOR)], 0, LIMITS)
  assert.deepEqual(first, [{ chunk: 7, count: 1, source: COORDINATOR }])
  assert.equal(run(plan, [src(COORDINATOR)], () => 'ok').get(COORDINATOR), 10)
})

test('chunks a peer holds come from the peer; the coordinator sends only what no peer holds', () => {
  const plan = newPlan(8, 0)
  const peer = src('p1', bits(8, [0, 1, 2, 3]))
  const picks = nextFetches(plan, [src(COORDINATOR), peer], 0, LIMITS)
  assert.ok(picks.filter(p => p.source === 'p1').every(p => p.chunk <= 3))
  assert.ok(picks.filter(p => p.source === COORDINATOR).every(p => p.chunk >= 4), JSON.stringify(picks))
  const served = run(plan, [src(COORDINATOR), peer], () => 'ok')
  assert.equal(served.get('p1'), 4)
  assert.equal(served.get(COORDINATOR), 4)
})

test('a peer whose chunk does not match the manifest is never asked again; its chunk comes from elsewhere', () => {
  const plan = newPlan(12, 0)
  const bad = src('liar')
  const good = src('good')
  const served = run(plan, [src(COORDINATOR), bad, good], (_, s) => s === 'liar' ? 'tampered' : 'ok')
  assert.equal(served.get('liar') ?? 0, 0)
  assert.equal(bad.restUntil, Infinity)
  assert.equal(bad.failures, 2, 'its two chunks in flight failed, then it was asked no more')
  assert.ok((served.get('good') ?? 0) > 0)
})

test('a peer that vanishes costs a retry of its chunks elsewhere, not a failure', () => {
  const plan = newPlan(6, 0)
  const gone = src('gone')
  const served = run(plan, [src(COORDINATOR), gone], (_, s) => s === 'gone' ? 'gone' : 'ok')
  assert.equal(served.get(COORDINATOR), 6)
  assert.ok(gone.failures >= 1 && gone.restUntil < Infinity, 'it rests, it is not banned')
})

test('a resting peer is not asked; the limits hold; the bitmap says what is done', () => {
  const plan = newPlan(20, 3)
  const resting = { ...src('r'), restUntil: 5000 }
  const picks = nextFetches(plan, [src(COORDINATOR), resting, src('a'), src('b')], 1000, LIMITS)
  assert.ok(picks.every(p => p.source !== 'r'))
  assert.ok(picks.length <= LIMITS.total)
  for (const id of ['a', 'b']) assert.ok(picks.filter(p => p.source === id).length <= LIMITS.perPeer)
  assert.ok(picks.filter(p => p.source === 'a').every(p => picks.filter(q => q.source === 'b').every(q => q.chunk !== p.chunk)))
  chunkDone(plan, src('a'), 0)
  chunkDone(plan, src('a'), 9)
  assert.deepEqual([...doneBitmap(plan)], [1, 2, 0])
})

test('a chunk on its way from the coordinator to a peer is not taken from the coordinator a second time', () => {
  const plan = newPlan(4, 0)
  const peer = { ...src('p', bits(4, [])), coming: bits(4, [0, 1]) }
  const picks = nextFetches(plan, [src(COORDINATOR), peer], 0, LIMITS)
  assert.deepEqual(picks, [{ chunk: 2, count: 1, source: COORDINATOR }, { chunk: 3, count: 1, source: COORDINATOR }])
  for (const p of picks) fetchStarted(plan, src(COORDINATOR), p.chunk)
  assert.deepEqual([...comingBitmap(plan)], [0b1100])
  // Once the peer has them, they come from the peer.
  peer.have = bits(4, [0, 1])
  peer.coming = bits(4, [])
  assert.deepEqual(nextFetches(plan, [{ ...src(COORDINATOR), busy: 2 }, peer], 0, LIMITS).map(p => p.source), ['p', 'p'])
})

test('with no peers, consecutive chunks come from the coordinator in one run, to the end at most', () => {
  const plan = newPlan(20, 14)
  assert.deepEqual(nextFetches(plan, [src(COORDINATOR)], 0, DEFAULT_LIMITS), [{ chunk: 14, count: 6, source: COORDINATOR }])
  assert.deepEqual(nextFetches(newPlan(20, 0), [src(COORDINATOR)], 0, DEFAULT_LIMITS), [{ chunk: 0, count: 8, source: COORDINATOR }])
  const peer = src('p', bits(20, [3]))
  const picks = nextFetches(newPlan(20, 0), [src(COORDINATOR), peer], 0, DEFAULT_LIMITS)
  assert.deepEqual(picks, [{ chunk: 3, count: 1, source: 'p' }, { chunk: 0, count: 1, source: COORDINATOR }, { chunk: 1, count: 1, source: COORDINATOR }], 'with peers, single chunks')
  // A run counts as one fetch: the peers still get theirs.
  const busy = newPlan(20, 0)
  const c = src(COORDINATOR)
  fetchStarted(busy, c, 0, 8)
  assert.equal(busy.inflight.size, 8)
  chunkDone(busy, c, 0)
  assert.equal(busy.inflight.size, 7, 'a chunk of a run is served to others as soon as it is in')
  fetchEnded(busy, c, 0, 8)
  assert.equal(busy.inflight.size, 0, 'what the run did not deliver goes back')
  assert.equal(c.busy, 0)
})
