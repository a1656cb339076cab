/** Placing and collecting files in folders a task controls, without following what it planted there. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, lstatSync, linkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDir, openInside, placeAt } from '../../node/safe-fs.ts'
import { collectOutputs } from '../../node/outputs.ts'

function tmp (): { dir: string, done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-safefs-'))
  return { dir, done: () => { rmSync(dir, { recursive: true, force: true }) } }
}

test('placing a file never writes through a symlink planted at its name or on its path', async () => {
  const { dir, done } = tmp()
  try {
    const task = join(dir, 'task')
    const outside = join(dir, 'outside')
    mkdirSync(task)
    mkdirSync(outside)
    writeFileSync(join(dir, 'src'), 'data')
    writeFileSync(join(outside, 'victim'), 'precious')
    symlinkSync(join(outside, 'victim'), join(task, 'in.txt'))
    symlinkSync(outside, join(task, 'models'))
    const root = await openDir(task)
    try {
      await placeAt(root, 'in.txt', join(dir, 'src'), 'copy', 0o755)
      assert.equal(readFileSync(join(outside, 'victim'), 'utf8'), 'precious', 'the existing name is left, its target untouched')
      await assert.rejects(placeAt(root, 'models/m.bin', join(dir, 'src'), 'link', 0o755), /symlink or file in its path/)
      await placeAt(root, 'deep/er/m.bin', join(dir, 'src'), 'link', 0o755)
      assert.equal(readFileSync(join(task, 'deep/er/m.bin'), 'utf8'), 'data')
      assert.equal(lstatSync(join(task, 'deep/er')).mode & 0o777, 0o755)
    } finally {
      await root.close()
    }
    await assert.rejects(openDir(join(task, 'models')), /not a folder/)
  } finally { done() }
})

test('outputs: regular files inside the folder only; refused names fail the task; missing plain names are listed', async () => {
  const { dir, done } = tmp()
  try {
    const task = join(dir, 'task')
    mkdirSync(join(task, 'sub'), { recursive: true })
    writeFileSync(join(dir, 'secret'), 'secret')
    writeFileSync(join(task, 'ok.txt'), 'ok')
    writeFileSync(join(task, 'sub', 'b.txt'), 'b')
    writeFileSync(join(task, 'bad\tname.txt'), 'tab')
    symlinkSync(join(dir, 'secret'), join(task, 'leak.txt'))
    symlinkSync(dir, join(task, 'up'))
    const c = await collectOutputs(task, ['*.txt', 'sub/*.txt', 'up/secret', 'never.txt', 'gone/*.dat'], null)
    assert.deepEqual(c.outputs.map(o => o.name).sort(), ['ok.txt', 'sub/b.txt'])
    assert.match(c.problem ?? '', /^output name not allowed: output: control character in name/)
    assert.deepEqual(c.missing, ['up/secret', 'never.txt'], 'plain names never written (or not regular files inside); globs are not listed')
    assert.equal(await openInside(task, join(task, 'up', 'secret')), null)
  } finally { done() }
})

test('a slot user\'s output that is a hard link to a file it does not own is refused', { skip: process.getuid?.() !== 0 ? 'needs root to own files as another user' : false }, async () => {
  const { dir, done } = tmp()
  try {
    const task = join(dir, 'task')
    mkdirSync(task)
    writeFileSync(join(dir, 'root-owned'), 'root')
    linkSync(join(dir, 'root-owned'), join(task, 'linked.txt'))
    writeFileSync(join(task, 'own.txt'), 'own')
    const c = await collectOutputs(task, ['*.txt'], 12345)
    assert.deepEqual(c.outputs.map(o => o.name), ['own.txt'], 'a file with one link is kept; the hard link to another\'s file is not')
  } finally { done() }
})
