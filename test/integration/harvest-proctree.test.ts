/**
 * Without cgroups: a task's processes, a double-forked child included, are stopped by SIGSTOP (state T in /proc)
 * within a second, continued, and killed; the tracker of meshfarm's own processes finds them and counts their CPU.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { openProcessTree } from '../../node/cgroups/fallback.ts'
import { OursTracker } from '../../node/harvest/ours.ts'
import { startTask, stats, waitUntil, waitForTree, TREE_SCRIPT } from '../helpers/harvest-procs.ts'

test('SIGSTOP fallback: the whole tree, double-forked child included, is in state T within a second; then continued and killed', async () => {
  const groups = openProcessTree('test')
  const task = startTask('31', TREE_SCRIPT)
  const group = await groups.create('31', { memoryBytes: null, cores: 1, harvested: true }, task.child.pid)
  const other = startTask('32', 'sleep 300') // another task of the same agent: must not be touched
  try {
    const { pids, busy } = await waitForTree(async () => await group.pids(), task.child.pid!)
    const t0 = performance.now()
    await group.freeze(1000)
    const took = performance.now() - t0
    const stopped = await stats(pids)
    console.log(`# process tree: stopped ${pids.length} processes in ${took.toFixed(1)} ms: ${stopped.map(s => `${s.pid} ${s.comm} ${s.state}`).join(', ')}`)
    assert.ok(took < 1000)
    assert.ok(stopped.every(s => s.state === 'T'), stopped.map(s => `${s.comm}=${s.state}`).join(' '))
    const otherState = (await stats([other.child.pid!]))[0].state
    assert.notEqual(otherState, 'T', 'the other task runs on')
    await group.thaw(1000)
    assert.ok((await stats(pids)).every(s => s.state !== 'T'))
    const before = (await stats([busy]))[0].cpuTicks
    await waitUntil(async () => (await stats([busy]))[0].cpuTicks > before, 'the busy child running again')
    await group.kill(5000)
    assert.equal((await task.exited).signal, 'SIGKILL')
    assert.deepEqual((await stats(pids)).filter(s => s.state !== 'Z'), [], 'nothing of the task left alive')
    assert.deepEqual(await group.pids(), [])
  } finally {
    await group.kill().catch(() => {})
    other.killGroup()
  }
})

test('our own processes: found by marker and tree, their terminals and CPU time counted', async () => {
  const groups = openProcessTree('test')
  const tracker = new OursTracker(groups)
  const task = startTask('41', "(setsid sh -c 'i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done; sleep 300' </dev/null >/dev/null 2>&1 &); sleep 300")
  const group = await groups.create('41', { memoryBytes: null, cores: 1, harvested: false }, task.child.pid)
  tracker.add('41', group, task.child.pid)
  try {
    const first = await waitUntil(async () => { const s = await tracker.snapshot(); return s.pids.size >= 3 ? s : null }, 'three processes of ours')
    assert.ok(first.pids.has(task.child.pid!))
    assert.ok(!first.pids.has(process.pid), 'the agent itself is not a task')
    const later = await waitUntil(async () => { const s = await tracker.snapshot(); return s.cpuSec >= first.cpuSec + 0.1 ? s : null }, 'CPU time of the double-forked busy loop', 30_000)
    console.log(`# ours: ${later.pids.size} processes, ${later.cpuSec.toFixed(2)} CPU s`)
  } finally {
    await group.kill().catch(() => {})
  }
})
