/**
 * Task groups on this machine's real cgroups: a task tree with a double-forked child frozen within a second and
 * thawed (v1 freezer, and the v2 freezer on the unified hierarchy beside it), killed to the last process; a task
 * that allocates four times its memory limit is OOM-killed and reported with its peak while another task carries on.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { openTaskGroups, launchSettings, memoryFailure, type TaskGroups, type TaskGroup } from '../../node/cgroups/index.ts'
import { openV2 } from '../../node/cgroups/v2.ts'
import { readLayout } from '../../node/cgroups/detect.ts'
import { removeDir } from '../../node/cgroups/fsutil.ts'
import { spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { isRoot, startTask, stats, waitUntil, waitForTree, TREE_SCRIPT } from '../helpers/harvest-procs.ts'

const NAME = `test-${process.pid}`
const MiB = 2 ** 20

/** Start the tree in `group`; resolves once its three processes are in the group, the busy one reparented away. */
async function startTree (groups: TaskGroups, group: TaskGroup, id: string): Promise<{ task: ReturnType<typeof startTask>, busy: number, pids: number[] }> {
  const task = startTask(id, TREE_SCRIPT, launchSettings(groups, group, { memoryBytes: 256 * MiB, cores: 1, harvested: true }))
  const { pids, busy } = await waitForTree(async () => await group.pids(), task.child.pid!)
  return { task, busy, pids }
}

/** Freeze, check nothing runs, thaw, check it runs again, kill, check nothing is left. */
async function freezeThawKill (groups: TaskGroups, frozenState: string): Promise<void> {
  const group = await groups.create('t1', { memoryBytes: 256 * MiB, cores: 1, harvested: true })
  try {
    const { task, busy, pids } = await startTree(groups, group, '1')
    const t0 = performance.now()
    await group.freeze(1000)
    const took = performance.now() - t0
    const frozen = await stats(pids)
    console.log(`# ${groups.kind}: froze ${pids.length} processes in ${took.toFixed(1)} ms; /proc states ${frozen.map(s => `${s.pid} ${s.comm} ${s.state}`).join(', ')}`)
    assert.ok(took < 1000, `froze in ${took} ms`)
    assert.ok(frozen.every(s => s.state === frozenState), `every process ${frozenState}: ${frozen.map(s => `${s.comm}=${s.state}`).join(' ')}`)
    // A frozen busy loop cannot gain CPU time, however long we look.
    const before = (await stats([busy]))[0].cpuTicks
    await new Promise(resolve => setTimeout(resolve, 300))
    assert.equal((await stats([busy]))[0].cpuTicks, before, 'the double-forked busy child made no progress while frozen')
    await group.thaw(1000)
    await waitUntil(async () => (await stats([busy]))[0].cpuTicks > before, 'the busy child running again after thaw')
    // The group's CPU counter, and the parent's over all tasks, are what "load not ours" subtracts.
    const own = await group.cpuSec()
    const all = await groups.tasksCpuSec()
    console.log(`# ${groups.kind}: task CPU ${own?.toFixed(3)} s, all tasks ${all?.toFixed(3)} s`)
    assert.ok(own != null && own > 0 && all != null && all >= own, `${own} ${all}`)
    await group.kill(5000)
    assert.deepEqual(await group.pids(), [])
    assert.equal((await task.exited).signal, 'SIGKILL')
    // Dead, double-forked one included (orphans are zombies until this container's init reaps them).
    assert.deepEqual((await stats(pids)).filter(s => s.state !== 'Z'), [], 'no process of the task is left alive')
  } finally {
    await group.kill().catch(() => {})
    await group.remove().catch(() => {})
  }
}

test('cgroups (this machine\'s choice): freeze a tree within a second, thaw, kill it all', { skip: !isRoot && 'cgroups need root on this machine' }, async () => {
  const groups = await openTaskGroups({ name: NAME })
  console.log(`# ${groups.describe}`)
  try {
    assert.notEqual(groups.kind, 'process-tree', groups.describe)
    await freezeThawKill(groups, groups.kind === 'cgroup-v1' ? 'D' : 'S')
  } finally {
    await groups.close()
  }
})

test('cgroup v2 (the unified hierarchy): freeze via cgroup.freeze, kill via cgroup.kill', async t => {
  const layout = await readLayout()
  if (!isRoot || layout.v2 == null) { t.skip('needs root and a cgroup2 mount'); return }
  const groups = await openV2({ mount: layout.v2.mount.mountPoint, ownPath: layout.v2.ownPath, name: NAME })
  console.log(`# ${groups.describe}`)
  try {
    assert.ok(groups.controllers.has('freeze') && groups.controllers.has('kill'), groups.describe)
    await freezeThawKill(groups, 'S')
  } finally {
    await groups.close()
  }
})

test('cgroup v2, delegated: an agent in its own cgroup moves itself to <own>/agent and runs tasks under <own>/tasks', async t => {
  const layout = await readLayout()
  if (!isRoot || layout.v2 == null) { t.skip('needs root and a cgroup2 mount'); return }
  const own = join(layout.v2.mount.mountPoint, `mf-delegated-${process.pid}`)
  mkdirSync(own)
  try {
    const child = spawn('/bin/sh', ['-c', `echo 0 > ${own}/cgroup.procs && exec "$0" "$1"`, process.execPath, join(import.meta.dirname, '../helpers/v2-delegated-child.ts')], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', d => { out += d })
    const code = await new Promise(resolve => child.on('exit', resolve))
    assert.equal(code, 0, out)
    const r = JSON.parse(out.trim().split('\n').pop()!)
    const v2Line = r.self.split('\n').find((l: string) => l.startsWith('0::'))
    console.log(`# ${r.describe}; agent now in ${v2Line}; task joined ${r.procFile}; frozen: ${r.frozen.join(' ')} (${r.events})`)
    assert.equal(r.ownPath, `/mf-delegated-${process.pid}`)
    assert.match(r.describe, /^cgroups v2 \(delegated \/mf-delegated-\d+\): .*freeze.*kill/)
    assert.equal(v2Line, `0::/mf-delegated-${process.pid}/agent`)
    assert.equal(r.procFile, join(own, 'tasks', 'd1', 'cgroup.procs'))
    assert.match(r.events, /frozen 1/)
    assert.deepEqual(r.exit, { code: null, signal: 'SIGKILL' })
  } finally {
    for (const d of [join(own, 'tasks'), join(own, 'agent'), own]) await removeDir(d).catch(() => {})
  }
})

test('a task that allocates 4x its memory is OOM-killed and reported with its peak; another task carries on', { skip: !isRoot && 'cgroups need root on this machine' }, async () => {
  const groups = await openTaskGroups({ name: NAME })
  if (!groups.controllers.has('memory')) { await groups.close(); assert.fail(`no memory controller: ${groups.describe}`) }
  const limit = 128 * MiB
  const hog = await groups.create('hog', { memoryBytes: limit, cores: 1, harvested: true })
  const calm = await groups.create('calm', { memoryBytes: limit, cores: 1, harvested: true })
  try {
    const alloc = `${JSON.stringify(process.execPath)} -e 'const a = []; for (let i = 0; i < 32; i++) { a.push(Buffer.alloc(16 << 20, 1)); } console.log("survived")'`
    const hogTask = startTask('hog', alloc, launchSettings(groups, hog, { memoryBytes: limit, cores: 1, harvested: true }))
    const calmTask = startTask('calm', 'i=0; while [ $i -lt 3 ]; do i=$((i+1)); sleep 0.1; done; echo fine', launchSettings(groups, calm, { memoryBytes: limit, cores: 1, harvested: true }))
    const end = await hogTask.exited
    assert.ok(end.signal === 'SIGKILL' || end.code === 137, `killed: ${JSON.stringify(end)} ${hogTask.output()}`)
    assert.doesNotMatch(hogTask.output(), /survived/)
    const mem = await hog.memory()
    const failure = memoryFailure(mem, limit)
    console.log(`# memory: ${JSON.stringify(mem)} -> ${failure.message}`)
    assert.equal(mem.oomKilled, true)
    assert.ok(mem.peakBytes != null && mem.peakBytes >= limit * 0.9 && mem.peakBytes <= limit * 1.01, `peak ${mem.peakBytes} near the ${limit} limit`)
    assert.match(failure.message, /^needed more than its 128 MiB of memory \(peak 1\d\d MiB, at the limit\): killed by the kernel/)
    assert.deepEqual(await calmTask.exited, { code: 0, signal: null })
    assert.match(calmTask.output(), /fine/)
    assert.equal((await calm.memory()).oomKilled, false)
  } finally {
    for (const g of [hog, calm]) { await g.kill().catch(() => {}); await g.remove().catch(() => {}) }
    await groups.close()
  }
})
