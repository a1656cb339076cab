import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { checkRelativeName, isInside, resolveInside, writeFileAtomic } from '../../shared/files/safe-path.ts'
import { hashBytes, hashFile } from '../../shared/files/hash.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'

function isCode (code: string) {
  return (err: unknown): boolean => isMeshfarmError(err) && err.code === code
}

let root: string
let outside: string
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'meshfarm-safe-'))
  outside = await mkdtemp(path.join(tmpdir(), 'meshfarm-outside-'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
  await rm(outside, { recursive: true, force: true })
})

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

describe('resolveInside', () => {
  test('returns an absolute path inside root', async () => {
    const p = await resolveInside(root, 'sub/./file.txt')
    assert.equal(p, path.join(root, 'sub', 'file.txt'))
  })

  test('refuses a symlink component pointing outside', async () => {
    await symlink(outside, path.join(root, 'evil'))
    await assert.rejects(resolveInside(root, 'evil/passwd'), isCode('UNSAFE_PATH'))
    await assert.rejects(resolveInside(root, 'evil'), isCode('UNSAFE_PATH'))
  })

  test('refuses a deeper symlink too', async () => {
    await mkdir(path.join(root, 'd1/d2'), { recursive: true })
    await symlink('/', path.join(root, 'd1/d2/up'))
    await assert.rejects(resolveInside(root, 'd1/d2/up/etc/passwd'), /symlink/)
  })

  test('refuses hostile names', async () => {
    await assert.rejects(resolveInside(root, '../x'), isCode('UNSAFE_PATH'))
  })
})

describe('writeFileAtomic', () => {
  test('writes content and returns its hash', async () => {
    const data = new TextEncoder().encode('hello meshfarm\n')
    const res = await writeFileAtomic(root, 'out/deep/hello.txt', data, hashBytes(data))
    assert.deepEqual(res, { hash: hashBytes(data), size: data.length })
    const file = path.join(root, 'out/deep/hello.txt')
    assert.equal(await readFile(file, 'utf8'), 'hello meshfarm\n')
    assert.deepEqual(await hashFile(file), res)
    assert.deepEqual(await readdir(path.join(root, 'out/deep')), ['hello.txt'])
  })

  test('accepts an async iterable and overwrites', async () => {
    async function * gen (): AsyncIterable<Uint8Array> {
      for (let i = 0; i < 100; i++) yield new Uint8Array(1000).fill(i)
    }
    const res = await writeFileAtomic(root, 'out/deep/hello.txt', gen())
    assert.equal(res.size, 100_000)
    assert.deepEqual(await hashFile(path.join(root, 'out/deep/hello.txt')), res)
  })

  test('hash mismatch leaves no file', async () => {
    await assert.rejects(
      writeFileAtomic(root, 'mm/bad.bin', new Uint8Array([1, 2, 3]), 'f'.repeat(64)),
      isCode('HASH_MISMATCH')
    )
    assert.deepEqual(await readdir(path.join(root, 'mm')), [])
  })

  test('never writes through a symlink', async () => {
    const victim = path.join(outside, 'victim.txt')
    await writeFile(victim, 'original')
    await symlink(outside, path.join(root, 'linkdir'))
    await symlink(victim, path.join(root, 'linkfile'))
    await assert.rejects(writeFileAtomic(root, 'linkdir/victim.txt', new Uint8Array([65])), isCode('UNSAFE_PATH'))
    await assert.rejects(writeFileAtomic(root, 'linkdir/new/x.txt', new Uint8Array([65])), isCode('UNSAFE_PATH'))
    await assert.rejects(writeFileAtomic(root, 'linkfile', new Uint8Array([65])), isCode('UNSAFE_PATH'))
    assert.equal(await readFile(victim, 'utf8'), 'original')
    assert.deepEqual((await readdir(outside)).sort(), ['victim.txt'])
  })

  test('concurrent writes of one name do not corrupt', async () => {
    const versions = Array.from({ length: 20 }, (_, i) => new Uint8Array(256 * 1024).fill(i))
    const results = await Promise.all(versions.map(async v => await writeFileAtomic(root, 'race/same.bin', v)))
    const final = await readFile(path.join(root, 'race/same.bin'))
    const finalHash = hashBytes(final)
    assert.ok(results.some(r => r.hash === finalHash), 'final file is one whole version')
    assert.deepEqual(await readdir(path.join(root, 'race')), ['same.bin'], 'no temp files left')
  })
})

/** mulberry32: small seeded PRNG so the fuzz run is reproducible. */
function prng (seed: number): () => number {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

test('fuzz: 5000 random names are refused or land inside root', async () => {
  const fuzzRoot = path.join(root, 'fuzz')
  await mkdir(fuzzRoot)
  const alphabet = ['.', '.', '/', '/', '\\', '\0', 'a', 'b', 'é', '日', '\uD800', '\n', ':', 'C', ' ', '~', '%', '\u202E']
  const rand = prng(12345)
  let accepted = 0
  for (let i = 0; i < 5000; i++) {
    const len = 1 + Math.floor(rand() * 12)
    let name = ''
    for (let j = 0; j < len; j++) name += alphabet[Math.floor(rand() * alphabet.length)]
    let resolved: string
    try {
      resolved = await resolveInside(fuzzRoot, name)
    } catch (err) {
      assert.ok(isMeshfarmError(err) && err.code === 'UNSAFE_PATH', `unexpected error for ${JSON.stringify(name)}: ${String(err)}`)
      continue
    }
    accepted++
    assert.ok(isInside(fuzzRoot, resolved), `${JSON.stringify(name)} -> ${resolved}`)
    assert.equal(resolved, path.join(fuzzRoot, checkRelativeName(name, 'x')))
  }
  assert.ok(accepted > 100, `some names accepted (${accepted})`)
})
