/** Fair share's memory of usage: core-seconds that decay with a half-life, on a scripted clock. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { UsageBook, charged, decayed, loadOf } from '../../coordinator/fair-share.ts'

const H = 3_600_000 // a one-hour half-life, to keep the numbers readable

test('usage halves after one half-life, quarters after two, and does not grow back before it was charged', () => {
  const book = new UsageBook(H)
  book.charge('alice', 1000, 0)
  assert.equal(book.usage('alice', 0), 1000)
  assert.equal(book.usage('alice', H), 500)
  assert.equal(book.usage('alice', 2 * H), 250)
  assert.ok(Math.abs(book.usage('alice', H / 2) - 1000 / Math.SQRT2) < 1e-9, 'smooth in between, not in steps')
  assert.equal(book.usage('alice', -H), 1000, 'a clock that steps back does not inflate usage')
  assert.equal(book.usage('bob', H), 0, 'a member never charged has no usage')
})

test('new usage adds to what is left of the old; nothing negative or zero is charged', () => {
  const book = new UsageBook(H)
  book.charge('alice', 1000, 0)
  book.charge('alice', 100, H) // 500 left of the first, plus 100
  assert.equal(book.usage('alice', H), 600)
  assert.equal(book.usage('alice', 2 * H), 300)
  book.charge('alice', -50, 2 * H)
  book.charge('alice', 0, 2 * H)
  assert.equal(book.usage('alice', 2 * H), 300)
  assert.deepEqual(charged(undefined, 10, 5), { coreSeconds: 10, at: 5 })
  assert.equal(decayed({ coreSeconds: 80, at: 0 }, 3 * H, H), 10)
})

test('load: running cores plus decayed usage over one half-life; who used more lately weighs more, less so as time passes', () => {
  // Ten cores for a whole half-life weigh like ten cores running now.
  assert.equal(loadOf(0, { coreSeconds: 10 * H / 1000, at: 0 }, 0, H), 10)
  assert.equal(loadOf(2, { coreSeconds: 10 * H / 1000, at: 0 }, H, H), 7)
  const book = new UsageBook(H)
  book.charge('alice', 10 * H / 1000, 0)
  book.charge('bob', 1 * H / 1000, 0)
  assert.ok(book.load('alice', 0, 0) > book.load('bob', 4, 0), 'alice\'s past outweighs bob\'s four running cores now')
  // Four half-lives on, alice's past weighs 10/16 of a core: bob running four now weighs more.
  assert.ok(book.load('alice', 0, 4 * H) < book.load('bob', 4, 4 * H))
})

test('the book reports its records to persist once per change, and starts from persisted ones', () => {
  const book = new UsageBook(H)
  assert.equal(book.takeDirty(), null)
  book.charge('alice', 100, 0)
  const saved = book.takeDirty()
  assert.deepEqual(saved, [['alice', { coreSeconds: 100, at: 0 }]])
  assert.equal(book.takeDirty(), null, 'nothing new since')
  const restored = new UsageBook(H, saved!)
  assert.equal(restored.usage('alice', H), 50, 'a restart keeps the decay going from the saved time')
})
