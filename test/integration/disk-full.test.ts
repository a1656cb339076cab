/**
 * Disk full, for real: the coordinator's state folder on a 4 MiB tmpfs (root only; skipped elsewhere). An
 * upload that does not fit fails with one line saying whose disk is full, nothing half-written stays behind,
 * and the coordinator keeps serving.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalMesh } from '../../bin/local-mesh.ts'
import { runCli, runCliJson } from '../helpers/cli.ts'

function canMount (): boolean {
  if (process.getuid?.() !== 0) return false
  const probe = mkdtempSync(join(tmpdir(), 'meshfarm-mount-'))
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe]).status === 0
  if (ok) spawnSync('umount', [probe])
  rmSync(probe, { recursive: true, force: true })
  return ok
}

test('a full coordinator disk: one clear line, nothing half-stored, the coordinator keeps serving', { skip: canMount() ? false : 'needs root and tmpfs mounts' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-diskfull-'))
  const coordinatorHome = join(dir, 'mesh', 'coordinator')
  mkdirSync(coordinatorHome, { recursive: true })
  assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', coordinatorHome]).status, 0)
  const mesh = await startLocalMesh({ dir: join(dir, 'mesh'), agents: [{ ip: '127.0.0.2', hostname: 'df', slots: 1 }] })
  try {
    writeFileSync(join(dir, 'big.bin'), randomBytes(8 << 20))
    writeFileSync(join(dir, 'job.yaml'), 'name: big\nshared: [big.bin]\ntasks:\n  - command: "wc -c big.bin"\n')
    const r = await runCli(mesh.clientHome, ['submit', 'job.yaml', '--wait'], { cwd: dir })
    assert.equal(r.code, 8, r.stderr)
    const lines = r.stderr.trim().split('\n')
    assert.equal(lines.length, 1, r.stderr)
    // The job is stored before its files (its tasks start as their files arrive): the upload that cannot be stored
    // cancels it, and says so in the one line.
    assert.match(lines[0], /^error: job (\d+) cancelled: an input file could not be uploaded: disk full on .* no space left; nothing was stored$/)
    assert.deepEqual(readdirSync(join(coordinatorHome, 'coordinator', 'blobs', 'tmp')), [], 'no partial upload left')
    const jobs = await runCliJson(mesh.clientHome, ['status']) as Array<{ state: string, counts: { done: number, running: number } }>
    assert.deepEqual(jobs.map(j => [j.state, j.counts.done, j.counts.running]), [['cancelled', 0, 0]], 'the job was cancelled before any task ran')
    // Still serving: a job without the big file runs.
    writeFileSync(join(dir, 'small.yaml'), 'name: small\ntasks:\n  - command: "echo fine"\n')
    const ok = await runCli(mesh.clientHome, ['submit', 'small.yaml', '--wait'], { cwd: dir })
    assert.equal(ok.code, 0, ok.stderr)
  } finally {
    await mesh.stop()
    spawnSync('umount', [coordinatorHome])
    rmSync(dir, { recursive: true, force: true })
  }
})
