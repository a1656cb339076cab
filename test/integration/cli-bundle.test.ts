/**
 * The CLI as npm installs it: bin/bundle.mjs builds dist/meshfarm.mjs (postinstall), and bin/meshfarm runs it while
 * no source is newer. Built here into a folder of its own, it must do what the sources do: a coordinator started
 * from the bundle serves its dashboard (files found beside the source that names them), answers `status` and
 * `peers` run from the bundle, and a job submitted through the bundle runs on an agent; `--version` answers
 * without loading the mesh's code.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalMesh } from '../../bin/local-mesh.ts'

const root = join(import.meta.dirname, '..', '..')

test('the bundled CLI runs a coordinator, answers status and peers, and submits a job that an agent runs', { timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-bundle-'))
  let mesh: Awaited<ReturnType<typeof startLocalMesh>> | null = null
  try {
    execFileSync(process.execPath, [join(root, 'bin', 'bundle.mjs'), '--out', join(dir, 'dist')], { encoding: 'utf8' })
    const bundle = join(dir, 'dist', 'meshfarm.mjs')
    const run = (args: string[]): { code: number, stdout: string, stderr: string } => {
      const r = spawnSync(process.execPath, [bundle, ...args], { encoding: 'utf8', timeout: 60_000 })
      return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
    }
    assert.equal(run(['--version']).stdout.trim(), '0.1.0')

    // The bundle as the coordinator (with its dashboard) and the sources as the agent: the two speak one protocol.
    mesh = await startLocalMesh({ dir: join(dir, 'mesh'), agents: [], coordinatorArgs: ['--dashboard', '0'], coordinatorEntry: bundle })
    await mesh.startAgent({ ip: '127.0.0.2', hostname: 'bundle-agent', slots: 2, cores: 2 })
    const url = mesh.coordinator.output().match(/dashboard: listening on (http:\/\/127\.0\.0\.1:\d+)/)?.[1]
    assert.ok(url != null, `the coordinator serves a dashboard: ${mesh.coordinator.output().slice(-500)}`)
    assert.equal((await fetch(url)).status, 200, 'its static files were found from the bundle')

    const peers = run(['--home', mesh.clientHome, 'peers', '--json'])
    assert.equal(peers.code, 0, peers.stderr)
    assert.deepEqual((JSON.parse(peers.stdout) as Array<{ hostname: string }>).map(p => p.hostname), ['bundle-agent'])

    const list = join(dir, 'tasks.txt')
    writeFileSync(list, 'echo one > out.txt\necho two > out.txt\n')
    const submitted = run(['--home', mesh.clientHome, 'submit', list, '--output', 'out.txt', '--wait', '--results', join(dir, 'results'), '--json'])
    assert.equal(submitted.code, 0, submitted.stderr)
    const { jobId, summary } = JSON.parse(submitted.stdout) as { jobId: number, summary: { counts: { done: number } } }
    assert.equal(summary.counts.done, 2)
    assert.equal(readFileSync(join(dir, 'results', 'task-1', 'out.txt'), 'utf8').trim(), 'two')
    const status = run(['--home', mesh.clientHome, 'status', String(jobId), '--json'])
    assert.equal(status.code, 0, status.stderr)
    assert.equal((JSON.parse(status.stdout) as Array<{ state: string }>)[0].state, 'done')
  } finally {
    await mesh?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
