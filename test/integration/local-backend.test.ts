/**
 * The local backend with real launchers (both): time limits and the stop grace are TypeScript timers, several
 * commands become one process with the old semantics (in sequence, stop at the first failure, a `cd` does not
 * carry over), suspend and continue.
 */
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { LauncherPool } from '../../node/launcher/pool.ts'
import { NODE_LAUNCHER } from '../../node/launcher/client.ts'
import { nativeLauncher } from '../../node/launcher/native.ts'
import { LocalBackend } from '../../node/backend/local.ts'
import type { BackendTask } from '../../node/backend/backend.ts'
import type { Isolation } from '../../node/backend/launch-plan.ts'
import { readPid, alive, waitFor } from '../helpers/processes.ts'

const NONE: Isolation = { mode: 'none', mounts: null, userns: false, hide: [], slotUsers: null, bwrap: null, inputs: 'link', shared: 'link' }
const buildDir = mkdtempSync(path.join(tmpdir(), 'meshfarm-backend-build-'))
const native = nativeLauncher(buildDir, () => {})
after(() => { rmSync(buildDir, { recursive: true, force: true }) })

for (const [flavour, command] of [['node', NODE_LAUNCHER], ['native', native]] as const) {
  describe(`local backend on the ${flavour} launcher`, { skip: command == null ? 'no C compiler here' : false }, () => {
    let dir: string
    let pool: LauncherPool
    let backend: LocalBackend
    let n = 0
    before(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'meshfarm-backend-'))
      pool = new LauncherPool(1, command!)
      backend = new LocalBackend({ launcher: pool, isolation: NONE, killGraceMs: 300, agentHasGpus: false, agentPid: process.pid })
    })
    after(async () => {
      await backend.close()
      rmSync(dir, { recursive: true, force: true })
    })

    function task (commands: string[], extra: Partial<BackendTask> = {}): BackendTask {
      const id = ++n
      const taskDir = path.join(dir, `t${id}`)
      mkdirSync(path.join(taskDir, 'sub'), { recursive: true })
      return { attemptId: id, jobId: 1, index: id, commands, env: {}, taskDir, jobDir: dir, stdoutPath: path.join(dir, `${id}.out`), stderrPath: path.join(dir, `${id}.err`), timeoutMs: 0, cores: 1, memoryMb: 0, gpuIds: [], slot: 0, ...extra }
    }

    async function run (t: BackendTask): Promise<{ outcome: Awaited<ReturnType<LocalBackend['wait']>>, stdout: string, started: boolean }> {
      let started = false
      backend.start(t, () => { started = true })
      const outcome = await backend.wait(t.attemptId)
      return { outcome, stdout: readFileSync(t.stdoutPath, 'utf8'), started }
    }

    test('several commands: in sequence, a cd does not carry over, a comment does not swallow the rest, the first failure ends it', async () => {
      const ok = await run(task(['cd sub # into sub', 'pwd', 'echo "$MESHFARM_TASK_ID"']))
      assert.equal(ok.outcome.exitCode, 0)
      assert.equal(ok.started, true)
      assert.equal(ok.stdout, `${path.join(dir, `t${n}`)}\n1.${n}\n`)
      const failed = await run(task(['echo one', 'exit 3', 'echo never']))
      assert.equal(failed.outcome.exitCode, 3)
      assert.equal(failed.stdout, 'one\n')
    })

    test('a time limit stops the task with SIGTERM and says so', async () => {
      const t0 = Date.now()
      const r = await run(task(['sleep 30'], { timeoutMs: 300 }))
      assert.equal(r.outcome.timedOut, true)
      assert.equal(r.outcome.signal, 'SIGTERM')
      assert.ok(Date.now() - t0 < 2000, 'quickly')
    })

    test('stop: SIGTERM, then SIGKILL after the grace for a task that ignores it; its grandchildren go too', async () => {
      const t = task([`trap '' TERM; sleep 30 & echo $! > ${dir}/gc.pid; while true; do sleep 0.05; done`])
      backend.start(t, () => {})
      const grandchild = await readPid(path.join(dir, 'gc.pid'))
      const t0 = Date.now()
      backend.stop(t.attemptId)
      const outcome = await backend.wait(t.attemptId)
      assert.equal(outcome.signal, 'SIGKILL')
      assert.ok(Date.now() - t0 >= 250, 'waited for the grace')
      assert.equal(outcome.timedOut, false)
      await waitFor(() => !alive(grandchild))
    })

    test('suspend freezes and continue thaws; a frozen task can still be stopped', async () => {
      const ticks = path.join(dir, 'ticks')
      const t = task([`while true; do echo x >> ${ticks}; sleep 0.05; done`])
      backend.start(t, () => {})
      await waitFor(() => { try { return readFileSync(ticks, 'utf8').length > 4 } catch { return false } })
      backend.suspend(t.attemptId)
      await new Promise(resolve => setTimeout(resolve, 150))
      const frozen = readFileSync(ticks, 'utf8').length
      await new Promise(resolve => setTimeout(resolve, 300))
      assert.ok(readFileSync(ticks, 'utf8').length - frozen <= 2)
      backend.continue(t.attemptId)
      await waitFor(() => readFileSync(ticks, 'utf8').length > frozen + 4)
      backend.suspend(t.attemptId)
      backend.stop(t.attemptId)
      assert.equal((await backend.wait(t.attemptId)).signal, 'SIGTERM')
    })
  })
}
