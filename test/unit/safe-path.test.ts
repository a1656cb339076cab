import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { checkRelativeName, isInside } from '../../shared/files/safe-path.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'

describe('checkRelativeName', () => {
  const hostile: Array<[string, RegExp]> = [
    ['', /empty/],
    ['.', /empty/],
    ['./', /empty/],
    ['..', /'\.\.'/],
    ['../x', /'\.\.'/],
    ['a/../../b', /'\.\.'/],
    ['a/..', /'\.\.'/],
    ['/etc/passwd', /absolute/],
    ['C:\\x', /absolute/],
    ['c:x', /absolute/],
    ['\\\\server\\share', /absolute/],
    ['a\\b', /backslash/],
    ['a\0b', /control/],
    ['a\nb', /control/],
    ['a\x7fb', /control/],
    ['x\uD800y', /unicode/],
    ['a/' + 'x'.repeat(256), /segment longer/],
    ['é'.repeat(128), /segment longer/], // 256 bytes in UTF-8
    [Array(33).fill('d').join('/'), /more than 32/],
    [Array(20).fill('y'.repeat(250)).join('/'), /longer than 4096/]
  ]
  for (const [name, why] of hostile) {
    test(`refuses ${JSON.stringify(name.slice(0, 30))}`, () => {
      assert.throws(() => checkRelativeName(name, 'input'), (err: unknown) => {
        assert.ok(isMeshfarmError(err))
        assert.equal(err.code, 'UNSAFE_PATH')
        assert.match(err.message, /^input: /)
        assert.match(err.message, why)
        assert.ok(!err.message.includes('\n'), 'one line')
        return true
      })
    })
  }

  test('normalizes harmless names', () => {
    assert.equal(checkRelativeName('a/./b', 'x'), 'a/b')
    assert.equal(checkRelativeName('./a//b/', 'x'), 'a/b')
    assert.equal(checkRelativeName('data.csv', 'x'), 'data.csv')
    assert.equal(checkRelativeName('..hidden/x..y', 'x'), '..hidden/x..y')
    assert.equal(checkRelativeName('résumé/日本.txt', 'x'), 'résumé/日本.txt')
    assert.equal(checkRelativeName('x'.repeat(255), 'x'), 'x'.repeat(255))
    assert.equal(checkRelativeName(Array(32).fill('d').join('/'), 'x'), Array(32).fill('d').join('/'))
  })
})

describe('isInside', () => {
  test('lexical containment', () => {
    assert.equal(isInside('/r', '/r/a'), true)
    assert.equal(isInside('/r', '/r/a/../b'), true)
    assert.equal(isInside('/r', '/r'), false)
    assert.equal(isInside('/r', '/r/..'), false)
    assert.equal(isInside('/r', '/rx/a'), false)
    assert.equal(isInside('/r', '/etc'), false)
    assert.equal(isInside('/r', '/r/..foo'), true)
  })
})
