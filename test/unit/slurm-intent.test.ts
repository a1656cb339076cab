import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IntentLog, parseIntentLog, reconcile, type ChunkProbe, type IntentEntry } from '../../node/bridge/slurm/intent-log.ts'
import type { QueueEntry } from '../../node/bridge/slurm/batch-system.ts'

const entry = (key: string, o: Partial<IntentEntry> = {}): IntentEntry => ({ key, chunkDir: `/w/${key.replace(/:/g, '_')}`, intendedAt: 1, jobId: null, closed: false, ...o })
function q (jobId: string, label: string, state = 'PENDING'): [string, QueueEntry] {
  const [arrayJobId] = jobId.split('_')
  return [jobId, { jobId, arrayJobId, arrayIndex: jobId.includes('_') ? Number(jobId.split('_')[1]) : null, state, reason: 'None', nodes: '', name: label, comment: label }]
}
const nothing: ChunkProbe = { submitterRunning: false, tracedJobId: null }

test('reconcile: follow what the log knows, adopt what squeue shows, resubmit only what never reached Slurm', () => {
  const entries = [
    entry('mf:b1:7:0', { jobId: '100' }), // logged id, still listed
    entry('mf:b1:7:1', { jobId: '101' }), // logged id, forgotten by Slurm
    entry('mf:b1:7:2'), // killed after sbatch answered, before the id was logged
    entry('mf:b1:7:3'), // killed while its sbatch still runs
    entry('mf:b1:7:4'), // ran and was forgotten, id never logged
    entry('mf:b1:7:5'), // killed between intent and sbatch
    entry('mf:b1:6:0', { jobId: '90', closed: true }) // done and reported
  ]
  const queue = new Map([q('100_0', 'mf:b1:7:0', 'RUNNING'), q('100_1', 'mf:b1:7:0'), q('102_0', 'mf:b1:7:2'), q('102_1', 'mf:b1:7:2'),
    q('90_0', 'mf:b1:6:0', 'COMPLETED'), q('95_0', 'mf:b1:5:0'), q('300', 'mf:other:7:0'), q('301', 'wrap')])
  const probes = new Map<string, ChunkProbe>([['mf:b1:7:3', { submitterRunning: true, tracedJobId: null }], ['mf:b1:7:4', { submitterRunning: false, tracedJobId: '99' }], ['mf:b1:7:5', nothing]])
  const actions = reconcile('b1', entries, queue, probes)
  const by = (key: string): string => { const a = actions.find(x => 'key' in x && x.key === key); return a == null ? 'none' : `${a.kind}${'jobId' in a ? ` ${a.jobId}` : ''}` }
  assert.equal(by('mf:b1:7:0'), 'follow 100')
  assert.equal(by('mf:b1:7:1'), 'follow 101')
  assert.equal(by('mf:b1:7:2'), 'adopt 102')
  assert.equal(by('mf:b1:7:3'), 'wait')
  assert.equal(by('mf:b1:7:4'), 'adopt 99')
  assert.equal(by('mf:b1:7:5'), 'resubmit')
  assert.equal(by('mf:b1:6:0'), 'none', 'closed chunks are not acted on')
  const leave = actions.filter(a => a.kind === 'leave')
  assert.deepEqual(leave.map(a => a.kind === 'leave' ? a.jobId : ''), ['95'], 'an unknown job under our label is left alone; others\' jobs are not ours at all')
  assert.equal(actions.filter(a => a.kind === 'resubmit').length, 1, 'never a second sbatch for a chunk Slurm has seen')
})

test('reconcile: two arrays under one label (a duplicate from long ago): the lowest is adopted, the other left, none cancelled', () => {
  const actions = reconcile('b1', [entry('mf:b1:7:0')], new Map([q('120_0', 'mf:b1:7:0'), q('110_0', 'mf:b1:7:0')]), new Map())
  assert.deepEqual(actions.map(a => a.kind), ['adopt'])
  assert.equal(actions[0].kind === 'adopt' && actions[0].jobId, '110')
})

test('intent log: durable records, a torn last line dropped, a bad line elsewhere named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-intent-'))
  try {
    const path = join(dir, 'intents.log')
    const log = IntentLog.open(path)
    log.intend('mf:b1:7:0', '/w/0', 1)
    log.submitted('mf:b1:7:0', '100', 2)
    log.intend('mf:b1:7:1', '/w/1', 3)
    log.intend('mf:b1:7:2', '/w/2', 4)
    log.submitted('mf:b1:7:2', '102', 5)
    log.closed('mf:b1:7:2', 6)
    assert.throws(() => log.intend('mf:b1:7:0', '/w/0', 7), /already intended/)
    log.close()
    appendFileSync(path, '{"t":"submitted","key":"mf:b1:7:1","jo')
    const again = IntentLog.open(path)
    assert.deepEqual(again.open().map(e => [e.key, e.jobId]), [['mf:b1:7:0', '100'], ['mf:b1:7:1', null]], 'torn id record dropped: the chunk is intended only')
    assert.equal(again.all().length, 3)
    again.submitted('mf:b1:7:1', '101', 8) // written after the cut-off torn line, on a line of its own
    again.close()
    assert.equal(IntentLog.open(path).get('mf:b1:7:1')?.jobId, '101')
    const again2 = IntentLog.open(path)
    again2.compact(10)
    again2.close()
    assert.equal(readFileSync(path, 'utf8').trim().split('\n').length, 4, 'closed chunk gone after compaction: two intents, two ids')
    assert.deepEqual(IntentLog.open(path).open().map(e => [e.key, e.jobId]), [['mf:b1:7:0', '100'], ['mf:b1:7:1', '101']])
    writeFileSync(path, '{"t":"intent","key":"mf:b1:7:0","chunkDir":"/w","at":1}\nnot json\n{"t":"closed","key":"mf:b1:7:0","at":2}\n')
    assert.throws(() => IntentLog.open(path), /intents\.log: line 2: not an intent record/)
    assert.throws(() => parseIntentLog('{"t":"submitted","key":"mf:b1:7:0","jobId":"1","at":1}\n', 'f'), /f: line 1: submitted for mf:b1:7:0 without an intent/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
