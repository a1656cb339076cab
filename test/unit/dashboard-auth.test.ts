import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createLoginCodes, formatCode, normalizeCode } from '../../coordinator/dashboard/login-codes.ts'
import { createSessions } from '../../coordinator/dashboard/sessions.ts'
import type { DashboardUser } from '../../coordinator/dashboard/source.ts'

const ana: DashboardUser = { peerId: 'peer-ana', name: 'ana', role: 'submitter' }
const bo: DashboardUser = { peerId: 'peer-bo', name: 'bo', role: 'admin' }

test('a login code is redeemed once, for whom it was issued', () => {
  const codes = createLoginCodes()
  const a = codes.issue(ana, 1000)
  const b = codes.issue(bo, 1000)
  assert.match(a.code, /^([0-9A-HJKMNP-TV-Z]{4}-){7}[0-9A-HJKMNP-TV-Z]{4}$/)
  assert.notEqual(a.code, b.code)
  assert.deepEqual(codes.redeem(b.code, 2000), bo)
  assert.equal(codes.redeem(b.code, 2001), null, 'a second use fails')
  assert.deepEqual(codes.redeem(a.code.toLowerCase().replaceAll('-', ' '), 2002), ana, 'case, spaces and dashes do not matter')
  assert.equal(codes.live(2003), 0)
})

test('a login code expires, and wrong or hostile codes redeem nothing', () => {
  const codes = createLoginCodes({ ttlMs: 60_000 })
  const { code, expiresAt } = codes.issue(ana, 0)
  assert.equal(expiresAt, 60_000)
  for (const bad of ['', 'x', code.slice(0, -1), code.slice(0, -1) + (code.endsWith('0') ? '1' : '0'), code + 'A', 'I'.repeat(32), '\u0000'.repeat(32), 'A'.repeat(100_000)]) {
    assert.equal(codes.redeem(bad, 1), null, JSON.stringify(bad.slice(0, 40)))
  }
  assert.equal(codes.live(1), 1, 'wrong guesses do not use the code up')
  assert.equal(codes.redeem(code, 60_000), null, 'expired at expiresAt')
  assert.equal(codes.live(60_000), 0)
})

test('live codes are bounded: the oldest goes first', () => {
  const codes = createLoginCodes({ maxLive: 3 })
  const issued = [0, 1, 2, 3].map(i => codes.issue({ ...ana, name: `n${i}` }, i).code)
  assert.equal(codes.live(10), 3)
  assert.equal(codes.redeem(issued[0], 10), null)
  assert.equal(codes.redeem(issued[3], 10)?.name, 'n3')
})

test('codes: 160 random bits in Crockford base32', () => {
  assert.equal(formatCode(Buffer.alloc(20)), '0000-0000-0000-0000-0000-0000-0000-0000')
  assert.equal(formatCode(Buffer.alloc(20, 0xff)), 'ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ')
  assert.equal(normalizeCode('zzzz zzzz-zzzzzzzz zzzz zzzz zzzz zzzz'), 'ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ')
  assert.equal(normalizeCode('UUUU-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ'), null, 'U is not in the alphabet')
  const seen = new Set(Array.from({ length: 200 }, () => createLoginCodes().issue(ana, 0).code))
  assert.equal(seen.size, 200)
})

test('sessions: 256-bit ids, idle and absolute expiry, bounded', () => {
  const s = createSessions({ idleMs: 100, maxAgeMs: 1000, max: 2 })
  const id = s.create(ana, 0)
  assert.match(id, /^[A-Za-z0-9_-]{43}$/)
  assert.equal(Buffer.from(id, 'base64url').length, 32)
  assert.deepEqual(s.get(id, 50)?.user, ana)
  assert.deepEqual(s.get(id, 140)?.user, ana, 'use refreshes the idle timer')
  assert.equal(s.get(id, 240), null, 'idle too long')
  const id2 = s.create(ana, 0)
  for (let t = 90; t < 1000; t += 90) assert.ok(s.get(id2, t) != null)
  assert.equal(s.get(id2, 1000), null, 'absolute lifetime ends it even when used')
  for (const bad of [undefined, '', 'x', id.slice(0, 42), id + 'A', '../' + id.slice(3), id.replace(/./, '!')]) assert.equal(s.get(bad, 0), null)
})

test('sessions: the least recently used is evicted; logout ends one', () => {
  const s = createSessions({ max: 2 })
  const a = s.create(ana, 0)
  const b = s.create(bo, 1)
  assert.ok(s.get(a, 2) != null)
  const c = s.create(ana, 3)
  assert.equal(s.get(b, 4), null, 'b was least recently used')
  assert.ok(s.get(a, 4) != null)
  s.end(c)
  assert.equal(s.get(c, 5), null)
  assert.equal(s.size(), 1)
})
