/**
 * One schema per message: every message type of every protocol has a valid example here (the test fails when a
 * type is added without one), is accepted as is, and is refused with one line naming the message and the field
 * when a nested field is wrong, before any handler could see it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  AGENT_MESSAGES, BLOB_REPLIES, BLOB_REQUESTS, CLIENT_REPLIES, CLIENT_REQUESTS, COORD_MESSAGES, ROSTER_MESSAGES,
  checkAttemptResult, checkTaskBlock, checkTaskSpec, type MessageSet
} from '../../shared/protocol/schema.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'
import { specsOf, toBlock, type TaskBlock } from '../../shared/protocol/task-blocks.ts'

const HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const FILE = { name: 'out.txt', hash: HASH, size: 0 }
const RESOURCES = { hostname: 'a', os: 'linux', cores: 2, physicalCores: 2, memoryMb: 1000, slots: 2, gpus: [{ index: 0, model: 'x', memoryMb: 10 }], labels: { site: 'lab' }, runsAsRoot: false }
const TASK = { index: 0, name: 't', commands: ['true'], env: {}, inputs: [FILE], outputs: ['out.txt'], timeoutMs: 0, constraints: {}, cores: 1, gpus: 0, memoryMb: 0 }
const HEADER = { name: 'j', layout: 'per-task', shared: [], retries: 0, specText: '', specFile: 'j.yaml' }
const RESULT = { attemptId: 1, jobId: 1, index: 0, state: 'done', exitCode: 0, signal: null, startedAt: 1, endedAt: 2, stdout: FILE, stderr: FILE, outputs: [] }

/** Each message: a valid example, and a path to a nested field with a wrong value. */
const EXAMPLES: Record<string, { ok: Record<string, unknown>, bad: [path: string, value: unknown] }> = {
  'agent.hello': { ok: { resources: RESOURCES, running: [1], pending: [], draining: false }, bad: ['resources.slots', 1e12] },
  'agent.heartbeat': { ok: { running: [1, 2] }, bad: ['running.0', -1] },
  'agent.started': { ok: { attemptIds: [1] }, bad: ['attemptIds.0', 'one'] },
  'agent.results': { ok: { results: [RESULT] }, bad: ['results', 'many'] },
  'agent.update': { ok: { resources: RESOURCES, status: { harvest: { lending: false, ownerPresent: true, reason: 'owner back' }, notes: ['x'] } }, bad: ['resources.gpus.0.index', 'zero'] },
  'agent.suspended': { ok: { attemptIds: [1] }, bad: ['attemptIds', {}] },
  'agent.continued': { ok: { attemptIds: [1] }, bad: ['attemptIds.0', 1.5] },
  'agent.vacated': { ok: { attemptIds: [1], kind: 'vacate', reason: 'owner back' }, bad: ['kind', 'evict'] },
  'agent.logs': { ok: { requestId: 1, data: new Uint8Array(3), offset: 0, eof: false }, bad: ['data', 'text'] },
  'coord.welcome': { ok: { heartbeatMs: 2000 }, bad: ['heartbeatMs', 0] },
  'coord.assign': { ok: { assignments: [{ attemptId: 1, jobId: 1, index: 0, task: TASK, shared: [], gpuIds: [], cores: 1, owner: 'alice' }] }, bad: ['assignments.0.task.cores', 0] },
  'coord.cancel': { ok: { attemptIds: [1], reason: 'stop' }, bad: ['reason', 7] },
  'coord.ack': { ok: { attemptIds: [1], refused: [] }, bad: ['refused', null] },
  'coord.drain': { ok: {}, bad: ['extra', 1] },
  'coord.members': { ok: { peerIds: [PEER] }, bad: ['peerIds.0', '../../etc/passwd'] },
  'coord.logs': { ok: { requestId: 1, attemptId: 1, stream: 'stdout', offset: 0, maxBytes: 100 }, bad: ['stream', 'stdin'] },
  'coord.backlog': { ok: { groups: [{ tasks: 40, cores: 1, memoryMb: 0, gpus: 0, timeoutMs: 600_000 }], truncated: false }, bad: ['groups.0.cores', 0] },
  'client.ping': { ok: {}, bad: ['x', 1] },
  'client.blobs.missing': { ok: { hashes: [HASH] }, bad: ['hashes.0', 'abc'] },
  'client.submit.begin': { ok: { job: HEADER, total: 1 }, bad: ['job.layout', 'sideways'] },
  'client.submit.tasks': { ok: { tasks: [TASK] }, bad: ['tasks', 'all'] },
  'client.submit.block': { ok: { first: 0, count: 2, base: { commands: ['true'], env: {}, inputs: [], outputs: [], timeoutMs: 0, constraints: {}, cores: 1, gpus: 0, memoryMb: 0 }, cols: { name: ['a', 'b'], affinity: ['x', null] } }, bad: ['cols.name.1', 5] },
  'client.submit.end': { ok: {}, bad: ['x', true] },
  'client.status': { ok: { jobId: 1 }, bad: ['jobId', 0] },
  'client.tasks': { ok: { jobId: 1, after: 0, limit: 10, states: ['queued'] }, bad: ['states.0', 'sleeping'] },
  'client.peers': { ok: {}, bad: ['x', 1] },
  'client.cancel': { ok: { jobId: 1 }, bad: ['jobId', 'one'] },
  'client.results': { ok: { jobId: 1, after: 0, limit: 10 }, bad: ['limit', 0] },
  'client.job': { ok: { jobId: 1 }, bad: ['jobId', -3] },
  'client.watch': { ok: { jobId: 1 }, bad: ['jobId', null] },
  'client.events': { ok: { after: 0, follow: true }, bad: ['follow', 'yes'] },
  'client.logs': { ok: { jobId: 1, index: 0, stream: 'stderr', offset: 0, follow: false }, bad: ['index', -1] },
  'client.why': { ok: { jobId: 1 }, bad: ['index', 'first'] },
  'client.hold': { ok: { jobId: 1, release: false }, bad: ['release', 0] },
  'client.drain': { ok: { peerId: 'host-a' }, bad: ['peerId', 'x'.repeat(300)] },
  'client.invite': { ok: { role: 'agent', ttlMs: 60000, name: 'lab-07' }, bad: ['role', 'root'] },
  'client.join': { ok: { peerId: PEER, name: 'ws' }, bad: ['peerId', 'not a peer id'] },
  'client.access.list': { ok: {}, bad: ['x', 1] },
  'client.access.add': { ok: { peerId: PEER, roles: ['submitter'] }, bad: ['roles.0', 'owner'] },
  'client.access.remove': { ok: { peerId: PEER }, bad: ['peerId', 5] },
  'client.dashboard': { ok: {}, bad: ['x', 1] },
  'reply.pong': { ok: { peerId: PEER, version: '1', time: 1 }, bad: ['time', 'now'] },
  'reply.blobs.missing': { ok: { hashes: [HASH] }, bad: ['hashes.0', 'x'] },
  'reply.submitted': { ok: { jobId: 1, total: 1 }, bad: ['total', -1] },
  'reply.status': { ok: { jobs: [{ jobId: 1, name: 'j', state: 'active', total: 1 }] }, bad: ['jobs.0.total', 'n'] },
  'reply.tasks': { ok: { tasks: [{ jobId: 1, index: 0, state: 'done' }], next: null }, bad: ['tasks.0.state', 'odd'] },
  'reply.peers': { ok: { agents: [{ peerId: PEER, hostname: 'a' }] }, bad: ['agents.0.hostname', 1] },
  'reply.cancelled': { ok: { jobId: 1, tasks: 0 }, bad: ['tasks', 'all'] },
  'reply.results': { ok: { records: [], next: 0, more: false, jobState: 'done' }, bad: ['more', 1] },
  'reply.job': { ok: { job: { name: 'j' }, summary: { jobId: 1, name: 'j', state: 'done', total: 1 } }, bad: ['summary.jobId', 'x'] },
  'reply.progress': { ok: { summary: { jobId: 1, name: 'j', state: 'done', total: 1 } }, bad: ['summary', 3] },
  'reply.events': { ok: { from: 0, events: [{ seq: 1, time: 1, type: 'task.started' }] }, bad: ['events.0.seq', -1] },
  'reply.logs': { ok: { data: new Uint8Array(1), offset: 0, eof: true, state: 'running' }, bad: ['eof', 'no'] },
  'reply.why': { ok: { reasons: [{ state: 'queued', reason: 'held' }] }, bad: ['reasons.0.reason', 3] },
  'reply.held': { ok: { jobId: 1, tasks: 2 }, bad: ['tasks', '2'] },
  'reply.drained': { ok: { peerId: PEER }, bad: ['peerId', 1] },
  'reply.invite': { ok: { invite: 'meshfarm-invite:x', expiresAt: 1 }, bad: ['expiresAt', 'soon'] },
  'reply.joined': { ok: { role: 'agent' }, bad: ['role', 1] },
  'reply.access': { ok: { peers: [{ peerId: PEER, roles: ['admin'], addedAt: 0 }] }, bad: ['peers.0.roles', 'admin'] },
  'reply.dashboard': { ok: { url: 'http://127.0.0.1:1/', code: 'abc', expiresAt: 1 }, bad: ['code', 1] },
  'reply.error': { ok: { code: 'NOT_FOUND', message: 'no job 3' }, bad: ['message', null] },
  'reply.ok': { ok: {}, bad: ['x', 1] },
  'blob.get': { ok: { hash: HASH, offset: 0 }, bad: ['hash', '../x'] },
  'blob.put': { ok: { hash: HASH, size: 1 }, bad: ['size', -1] },
  'blob.header': { ok: { size: 1, offset: 0 }, bad: ['offset', 'start'] },
  'blob.stored': { ok: { hash: HASH }, bad: ['hash', 1] },
  'blob.error': { ok: { code: 'NOT_FOUND', message: 'no' }, bad: ['code', 404] },
  'blob.sources': { ok: { hash: HASH }, bad: ['hash', 'x'] },
  'blob.have': { ok: { hash: HASH }, bad: ['hash', 7] },
  'blob.bulk': { ok: { size: 9, offset: 0, length: 9, port: 4000, token: new Uint8Array(32), key: new Uint8Array(32) }, bad: ['token', new Uint8Array(31)] },
  'blob.sources.reply': { ok: { size: 9, start: 0, peers: [{ peerId: PEER, addrs: ['/ip4/10.0.0.2/tcp/7341'] }] }, bad: ['peers.0.peerId', 'not a peer'] },
  'blob.have.reply': { ok: { size: 9, complete: false, chunks: new Uint8Array(1) }, bad: ['chunks', new Uint8Array(513)] },
  'roster.query': { ok: {}, bad: ['x', 1] },
  'roster.answer': { ok: { coordinator: { peerId: PEER, addrs: ['/ip4/127.0.0.1/tcp/1'] } }, bad: ['coordinator.addrs.0', 7] }
}

const SETS: Array<[string, MessageSet]> = [
  ['agent', AGENT_MESSAGES], ['coord', COORD_MESSAGES], ['client', CLIENT_REQUESTS], ['reply', CLIENT_REPLIES],
  ['blob requests', BLOB_REQUESTS], ['blob replies', BLOB_REPLIES], ['roster', ROSTER_MESSAGES]
]

function withField (obj: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const copy = structuredClone(obj)
  const keys = path.split('.')
  let at: any = copy
  for (const k of keys.slice(0, -1)) at = at[k]
  at[keys[keys.length - 1]] = value
  return copy
}

test('every message type has an example here', () => {
  for (const [, set] of SETS) for (const type of set.types) assert.ok(EXAMPLES[type] != null, `no example for ${type}`)
})

test('every message type accepts its valid example and refuses a bad nested field, naming it in one line', () => {
  for (const [, set] of SETS) {
    for (const type of set.types) {
      const { ok, bad } = EXAMPLES[type]
      const good = { t: type, ...ok }
      assert.deepEqual(set.check(good), good, `${type} accepted`)
      const wrong = withField(good, bad[0], bad[1])
      assert.throws(() => set.check(wrong), (err: unknown) => {
        assert.ok(isMeshfarmError(err) && err.code === 'PROTOCOL', `${type}: a PROTOCOL error`)
        assert.ok(err.message.startsWith(`${type}: `), `${type}: names the message (${err.message})`)
        const top = bad[0].split('.')[0]
        assert.ok(err.message.includes(top), `${type}: names the field ${bad[0]} (${err.message})`)
        assert.ok(!err.message.includes('\n'), 'one line')
        return true
      })
    }
  }
})

test('a message of another protocol is refused by type, not by a field', () => {
  assert.throws(() => AGENT_MESSAGES.check({ t: 'client.ping' }), /unexpected message type "client.ping"/)
  assert.throws(() => CLIENT_REQUESTS.check({ t: 'agent.hello' }), /unexpected message type/)
})

test('results are checked one by one: a malformed body fails its task by name, unreadable ids are dropped', () => {
  assert.deepEqual(checkAttemptResult(RESULT), { ok: RESULT })
  const badName = checkAttemptResult({ ...RESULT, outputs: [{ ...FILE, name: 'a\\b' }] })
  assert.ok(badName != null && 'refused' in badName)
  assert.equal(badName.refused.attemptId, 1)
  assert.match(badName.refused.why, /backslash/)
  const tab = checkAttemptResult({ ...RESULT, outputs: [{ ...FILE, name: 'a\tb' }] })
  assert.ok(tab != null && 'refused' in tab && /control character/.test(tab.refused.why))
  const noTimes = checkAttemptResult({ ...RESULT, startedAt: undefined })
  assert.ok(noTimes != null && 'refused' in noTimes && /startedAt/.test(noTimes.refused.why))
  assert.equal(checkAttemptResult({ ...RESULT, attemptId: 'x' }), null)
  assert.equal(checkAttemptResult(null), null)
})

test('tasks are checked at their place, with names that stay inside the task folder', () => {
  assert.equal(checkTaskSpec(TASK, 0).name, 't')
  assert.throws(() => checkTaskSpec(TASK, 1), /task 1: index 0 out of order/)
  assert.throws(() => checkTaskSpec({ ...TASK, outputs: ['../x'] }, 0), /'\.\.' segment/)
  assert.throws(() => checkTaskSpec({ ...TASK, inputs: [{ ...FILE, name: '/etc/passwd' }] }, 0), /absolute path/)
  assert.throws(() => checkTaskSpec({ ...TASK, commands: ['a\u0000b'] }, 0), /NUL/)
  assert.throws(() => checkTaskSpec({ ...TASK, cores: 1e12 }, 0), /task 0: cores/)
  assert.throws(() => checkTaskSpec({ ...TASK, inputs: [{ ...FILE, size: 3, data: new Uint8Array(1) }] }, 0), /inline data of 1 bytes for a file of 3/)
})

test('a block of tasks is checked at its place and refused whole, naming the first bad task and field in one line', () => {
  const specs = [0, 1, 2].map(i => ({ ...TASK, index: i, name: `t${i}`, outputs: [`out${i}.txt`] }))
  const block = (): TaskBlock => structuredClone(toBlock(specs))
  assert.deepEqual(specsOf(checkTaskBlock(block(), 0, 3)), specs, 'a valid block comes back as its tasks')
  const refused = (b: TaskBlock, re: RegExp, first = 0, total = 3): void => {
    assert.throws(() => checkTaskBlock(b, first, total), (err: unknown) => isMeshfarmError(err) && ['PROTOCOL', 'UNSAFE_PATH'].includes(err.code) && re.test(err.message) && !err.message.includes('\n'), re.source)
  }
  refused(block(), /tasks 0-2: expected task 5 next/, 5)
  refused(block(), /more tasks than the announced 2/, 0, 2)
  refused({ ...block(), cols: { ...block().cols, name: ['a'] } }, /name: 1 values for 3 tasks/)
  const noCommands = block()
  delete noCommands.base.commands
  refused(noCommands, /commands: missing/)
  refused({ ...block(), base: { ...block().base, name: 'x' } }, /name: given for the block and for each task/)
  refused({ ...block(), cols: { ...block().cols, outputs: [['a'], ['../../etc/passwd'], ['c']] } }, /task 1\.outputs\[0\].*'\.\.' segment/)
  const nul = block()
  delete nul.base.commands
  refused({ ...nul, cols: { ...nul.cols, commands: [['true'], ['true'], ['a\u0000b']] } }, /task 2: a command holds a NUL byte/)
  refused({ ...block(), base: { ...block().base, env: { A: 'x\u0000' } } }, /tasks 0-2: a variable holds a NUL byte/)
  refused({ ...block(), base: { ...block().base, inputs: [{ ...FILE, name: '/etc/passwd' }] } }, /tasks 0-2\.inputs\[0\].*absolute path/)
  const cores = block()
  delete cores.base.cores
  refused({ ...cores, cols: { ...cores.cols, cores: [1, null, 1] } }, /task 1: cores: missing/)
  // The message's own schema refuses what is not a task's field, or a value out of bounds, before this check.
  assert.throws(() => CLIENT_REQUESTS.check({ t: 'client.submit.block', ...block(), cols: { ...block().cols, shell: ['x', 'y', 'z'] } }), /client.submit.block: cols.*unknown field/)
  assert.throws(() => CLIENT_REQUESTS.check({ t: 'client.submit.block', ...block(), count: 20_000 }), /client.submit.block: count/)
})

test('hostile blocks: counts past the bounds, columns longer or shorter than the block, a block past the end', () => {
  const specs = [0, 1].map(i => ({ ...TASK, index: i, name: `t${i}` }))
  const block = (): TaskBlock => structuredClone(toBlock(specs))
  const wire = (b: Record<string, unknown>): unknown => ({ t: 'client.submit.block', ...block(), ...b })
  const schemaRefuses = (b: Record<string, unknown>, re: RegExp): void => {
    assert.throws(() => CLIENT_REQUESTS.check(wire(b)), (err: unknown) => isMeshfarmError(err) && re.test(err.message) && !err.message.includes('\n'), re.source)
  }
  // Counts a peer could use to make the coordinator allocate or loop: refused by the message's schema.
  for (const count of [10_001, 1e9, 2 ** 53, -1, 0, 1.5, Number.NaN, Infinity]) schemaRefuses({ count }, /client.submit.block: count/)
  for (const first of [-1, 2 ** 31, 1e300, 0.5]) schemaRefuses({ first }, /client.submit.block: first/)
  schemaRefuses({ cols: { name: Array.from({ length: 10_001 }, (_, i) => `t${i}`) } }, /client.submit.block: cols.name/)
  assert.throws(() => CLIENT_REQUESTS.check({ t: 'client.submit.begin', job: {}, total: 1e12 }), /client.submit.begin: /)
  // Within the schema's bounds but not the block's own: one line naming the block, never a throw from deep inside.
  const refused = (b: TaskBlock, re: RegExp, first = 0, total = 2): void => {
    assert.doesNotThrow(() => CLIENT_REQUESTS.check({ t: 'client.submit.block', ...b }))
    assert.throws(() => checkTaskBlock(b, first, total), (err: unknown) => isMeshfarmError(err) && re.test(err.message) && !err.message.includes('\n'), re.source)
  }
  refused({ ...block(), count: 10_000 }, /name: 2 values for 10000 tasks/, 0, 10_000)
  refused({ ...block(), cols: { name: ['a', 'b', 'c'] } }, /name: 3 values for 2 tasks/)
  refused({ ...block(), cols: { name: ['a'] } }, /name: 1 values for 2 tasks/)
  const mixed = block()
  delete mixed.base.cores
  refused({ ...mixed, cols: { ...mixed.cols, cores: [1, 1, 1] } }, /cores: 3 values for 2 tasks/)
  refused({ ...block(), first: 2 ** 31 - 2 }, /expected task 0 next/)
  refused({ ...block(), first: 2 ** 31 - 2 }, /more tasks than the announced 10000000/, 2 ** 31 - 2, 10_000_000)
  refused({ ...block(), first: 1, count: 1, cols: { name: ['only'] } }, /more tasks than the announced 1/, 1, 1)
})
