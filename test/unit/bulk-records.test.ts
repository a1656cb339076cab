import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { RECORD_BYTES, RecordOpener, RecordSealer, bulkKey } from '../../shared/net/bulk/records.ts'
import { TicketBook, TICKET_TTL_MS, MAX_TICKETS } from '../../shared/net/bulk/tickets.ts'

const HASH = 'ab'.repeat(32)

function sealAll (key: Buffer, data: Buffer): Buffer {
  const sealer = new RecordSealer(key)
  const parts: Buffer[] = []
  for (let pos = 0; pos < data.length || (pos === 0 && data.length === 0); pos += RECORD_BYTES) {
    const end = Math.min(data.length, pos + RECORD_BYTES)
    parts.push(...sealer.seal(data.subarray(pos, end), end >= data.length))
    if (data.length === 0) break
  }
  return Buffer.concat(parts)
}

/** Feeds `wire` to an opener in pieces of `step` bytes; returns the plaintext or the error's message. */
function openAll (key: Buffer, length: number, wire: Buffer, step = 65_536): Buffer | string {
  const opener = new RecordOpener(key, length)
  const out: Buffer[] = []
  try {
    for (let pos = 0; pos < wire.length; pos += step) out.push(...opener.push(wire.subarray(pos, pos + step)))
    opener.end()
    return Buffer.concat(out)
  } catch (err) {
    return (err as Error).message
  }
}

test('records round-trip in pieces of any size', () => {
  const key = bulkKey(randomBytes(32), HASH, 'get', 0, 0)
  for (const size of [0, 1, RECORD_BYTES, RECORD_BYTES + 1, 3 * RECORD_BYTES - 7]) {
    const data = randomBytes(size)
    for (const step of [1, 4093, 1 << 20]) {
      if (step === 1 && size > 100_000) continue
      const got = openAll(key, size, sealAll(key, data), step)
      assert.ok(Buffer.isBuffer(got) && got.equals(data), `size ${size} step ${step}: ${typeof got === 'string' ? got : ''}`)
    }
  }
})

test('an altered, reordered, truncated or extended transfer is refused in one line, before its plaintext is released', () => {
  const one = randomBytes(32)
  const key = bulkKey(one, HASH, 'get', 0, 2 * RECORD_BYTES + 10)
  const data = randomBytes(2 * RECORD_BYTES + 10)
  const wire = sealAll(key, data)
  const flipped = Buffer.from(wire)
  flipped[RECORD_BYTES + 100] ^= 1
  assert.match(openAll(key, data.length, flipped) as string, /^bulk transfer: record 1: a record that failed authentication/)
  const rec = 8 + RECORD_BYTES + 16
  const swapped = Buffer.concat([wire.subarray(rec, 2 * rec), wire.subarray(0, rec), wire.subarray(2 * rec)])
  assert.match(openAll(key, data.length, swapped) as string, /^bulk transfer: record 0: a record that failed authentication/)
  assert.match(openAll(key, data.length, wire.subarray(0, 2 * rec)) as string, /^bulk transfer cut off after 2097152 of 2097162 bytes$/)
  assert.match(openAll(key, data.length, Buffer.concat([wire, Buffer.from([0])])) as string, /^bulk transfer: bytes after the last record$/)
  // The same bytes under a key bound to another blob, direction or range do not open.
  for (const other of [bulkKey(one, 'cd'.repeat(32), 'get', 0, data.length), bulkKey(one, HASH, 'put', 0, data.length), bulkKey(one, HASH, 'get', 1, data.length)]) {
    assert.match(openAll(other, data.length, wire) as string, /failed authentication/)
  }
  // A header that claims an oversized record is refused from the header alone.
  const huge = Buffer.alloc(8)
  huge.writeUInt32BE(0xffffffff, 0)
  assert.match(openAll(key, data.length, huge) as string, /^bulk transfer: record 0: a record of 4294967295 bytes \(at most 1048576\)$/)
  // Opened plaintext only comes out whole records at a time, after the tag.
  const opener = new RecordOpener(key, data.length)
  assert.deepEqual(opener.push(wire.subarray(0, rec - 1)), [])
  assert.equal(opener.push(wire.subarray(rec - 1, rec)).length, 1)
})

test('tickets: one use, from the address they were issued to, within their time; the book is bounded', () => {
  const book = new TicketBook<string>()
  const spec = { peer: 'p1', ip: '10.0.0.2', hash: HASH, direction: 'get' as const, offset: 0, length: 10, work: 'w' }
  book.issue(spec, 't1', 1000)
  assert.deepEqual(book.redeem('t1', '10.0.0.3', 1001), { ok: false, why: 'token of 10.0.0.2 presented from 10.0.0.3' })
  assert.deepEqual(book.redeem('t1', '10.0.0.2', 1002), { ok: false, why: 'unknown or used token' }, 'one try, whatever its outcome')
  book.issue(spec, 't2', 1000)
  assert.equal(book.redeem('t2', '::ffff:10.0.0.2', 1000 + TICKET_TTL_MS - 1).ok, true)
  book.issue(spec, 't3', 1000)
  assert.deepEqual(book.redeem('t3', '10.0.0.2', 1000 + TICKET_TTL_MS), { ok: false, why: 'expired token' })
  book.issue(spec, 't4', 1000)
  book.revoke('p1')
  assert.equal(book.redeem('t4', '10.0.0.2', 1001).ok, false)
  for (let i = 0; i < MAX_TICKETS; i++) assert.ok(book.issue(spec, `x${i}`, 2000) != null)
  assert.equal(book.issue(spec, 'one-too-many', 2000), null)
  assert.equal(book.expire(2000 + TICKET_TTL_MS).length, MAX_TICKETS)
})
