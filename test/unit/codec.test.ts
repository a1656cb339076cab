/**
 * The protocol decoder against hostile input: random bytes, mutated frames, oversize and truncated frames,
 * unknown types and wrong field types. Everything must be refused with a PROTOCOL error, nothing else.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { streamPair } from '@libp2p/utils'
import { Channel, decodeMessage, encodeMessage } from '../../shared/protocol/codec.ts'
import { CLIENT_REQUESTS } from '../../shared/protocol/schema.ts'
import { checkTaskSpec } from '../../shared/protocol/schema.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'

/** A small seeded PRNG (mulberry32) so failures reproduce. */
function prng (seed: number): () => number {
  return () => {
    seed |= 0
    seed = seed + 0x6D2B79F5 | 0
    let t = Math.imul(seed ^ seed >>> 15, 1 | seed)
    t = t + Math.imul(t ^ t >>> 7, 61 | t) ^ t
    return ((t ^ t >>> 14) >>> 0) / 4294967296
  }
}

function expectProtocolError (fn: () => unknown, what: string): void {
  try {
    fn()
  } catch (err) {
    assert.ok(isMeshfarmError(err), `${what}: threw a non-meshfarm error: ${String(err)}`)
    assert.equal(err.code, 'PROTOCOL', what)
    assert.ok(!err.message.includes('\n'), 'one line')
  }
}

const VALID = [
  { t: 'client.ping' },
  { t: 'client.status', jobId: 3 },
  { t: 'client.cancel', jobId: 1 },
  { t: 'client.results', jobId: 1, after: 0, limit: 10 },
  { t: 'client.submit.tasks', tasks: [{ index: 0, commands: ['true'] }] }
]

test('fuzz: 5,000 random byte strings are decoded or refused with PROTOCOL, never anything else', () => {
  const rand = prng(42)
  for (let i = 0; i < 5000; i++) {
    const bytes = new Uint8Array(Math.floor(rand() * 64))
    for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rand() * 256)
    expectProtocolError(() => decodeMessage(bytes, CLIENT_REQUESTS), `random #${i}`)
  }
})

test('fuzz: 5,000 mutations of valid messages are decoded or refused with PROTOCOL', () => {
  const rand = prng(7)
  for (let i = 0; i < 5000; i++) {
    const body = encodeMessage(VALID[i % VALID.length]).subarray(4).slice()
    const flips = 1 + Math.floor(rand() * 4)
    for (let f = 0; f < flips; f++) body[Math.floor(rand() * body.length)] = Math.floor(rand() * 256)
    expectProtocolError(() => decodeMessage(body, CLIENT_REQUESTS), `mutation #${i}`)
  }
})

test('unknown types, missing and mistyped fields are refused', () => {
  const cases: unknown[] = [
    null, 42, 'text', [], { }, { t: 7 }, { t: 'agent.hello' }, { t: 'client.nope' },
    { t: 'client.cancel' }, { t: 'client.cancel', jobId: 'one' }, { t: 'client.cancel', jobId: Infinity },
    { t: 'client.results', jobId: 1, after: 0 }, { t: 'client.submit.tasks', tasks: 'all of them' }
  ]
  for (const c of cases) {
    const body = encodeMessage(c as object).subarray(4)
    assert.throws(() => decodeMessage(body, CLIENT_REQUESTS), (err: unknown) => isMeshfarmError(err) && err.code === 'PROTOCOL', JSON.stringify(c))
  }
})

test('hostile task specs are refused: path escapes, NUL bytes, wrong types', () => {
  const base = { index: 0, name: 'x', commands: ['true'], cores: 1, gpus: 0, memoryMb: 0, timeoutMs: 0, env: {}, constraints: {}, inputs: [], outputs: [] }
  const hash = 'a'.repeat(64)
  const bad: Array<Record<string, unknown>> = [
    { inputs: [{ name: '../../etc/passwd', hash, size: 1 }] },
    { inputs: [{ name: '/etc/passwd', hash, size: 1 }] },
    { inputs: [{ name: 'a\u0000b', hash, size: 1 }] },
    { inputs: [{ name: 'ok', hash: 'not-a-hash', size: 1 }] },
    { outputs: ['../up.txt'] },
    { commands: [] },
    { commands: ['a\u0000b'] },
    { cores: 0 },
    { cores: 1.5 },
    { env: { A: 1 } },
    { index: 5 }
  ]
  for (const b of bad) {
    assert.throws(() => checkTaskSpec({ ...base, ...b }, 0), (err: unknown) => isMeshfarmError(err) && ['PROTOCOL', 'UNSAFE_PATH'].includes(err.code), JSON.stringify(b))
  }
  assert.equal(checkTaskSpec(base, 0).name, 'x')
})

test('a channel refuses an oversize frame from its header, before buffering it', async () => {
  const [a, b] = await streamPair()
  const reader = new Channel(b, { accept: CLIENT_REQUESTS, maxFrameBytes: 1024 })
  const header = new Uint8Array(4)
  new DataView(header.buffer).setUint32(0, 1 << 30)
  a.send(header)
  await assert.rejects(reader.read(), /exceeds the limit/)
})

test('a channel reports a truncated frame, and a clean end between frames as end of stream', async () => {
  const [a, b] = await streamPair()
  const reader = new Channel(b, { accept: CLIENT_REQUESTS })
  const frame = encodeMessage({ t: 'client.ping' })
  a.send(frame)
  a.send(frame.subarray(0, 5))
  await a.close()
  assert.deepEqual(await reader.read(), { t: 'client.ping' })
  await assert.rejects(reader.read(), /truncated frame/)
  const [c, d] = await streamPair()
  const clean = new Channel(d, { accept: CLIENT_REQUESTS })
  c.send(frame)
  await c.close()
  assert.deepEqual(await clean.read(), { t: 'client.ping' })
  assert.equal(await clean.read(), null)
})
