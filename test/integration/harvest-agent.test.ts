/**
 * `meshfarm agent --harvest` for real: a coordinator, a desktop agent with cgroups (this machine's v1 freezer),
 * one without (--no-cgroups: SIGSTOP of each task's whole process tree; and --isolation none, so no namespace's
 * init passes the signal on: a double-forked child that left the task's session is found by its marker), and
 * later a server. Owner presence comes
 * from an injected file per desktop, through the same interface as the real sources; the owner's commands from
 * the command line. Every check is on what a user or the kernel would show: task states on the coordinator, task
 * records, and each task process's state in /proc (or its freezer's), double-forked children included.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalMesh, type LocalMesh, type LocalAgentSpec } from '../../bin/local-mesh.ts'
import { connect, type MeshClient } from '../../shared/client/client.ts'
import { parseTasklist } from '../../shared/client/spec.ts'
import type { MeshEvent } from '../../shared/protocol/events.ts'
import { runCli } from '../helpers/cli.ts'
import { AWAY, PRESENT, heldTask, isStopped, makeRelease, records, release as releaseFifo, setPresence, taskProcs, waitFor, type Proc } from '../helpers/harvest-agent.ts'

// Short thresholds: the test's own presence file says how long the owner has been idle, so only a vacate waits.
const HARVEST = ['--harvest', '--start-idle', '5s', '--keyboard-busy', '5s', '--continue-idle', '5s', '--max-suspend', '6s']

let dir: string
let rel: string
let mesh: LocalMesh
let client: MeshClient
const desk = { presence: '', socket: '', pid: 0 }
const tree = { presence: '', socket: '', pid: 0 }
const jobs = { cg: 0, tree: 0 }

function harvestAgent (hostname: string, ip: string, pool: string, d: typeof desk, extra: string[] = []): LocalAgentSpec {
  d.presence = join(dir, `${hostname}.presence.json`)
  d.socket = join(dir, `${hostname}.sock`)
  setPresence(d.presence, PRESENT)
  return { ip, hostname, slots: 2, labels: [`pool=${pool}`], extraArgs: [...HARVEST, '--owner-socket', d.socket, ...extra], env: { MESHFARM_PRESENCE_FILE: d.presence } }
}

async function submit (pool: string, n: number): Promise<number> {
  const text = Array.from({ length: n }, () => heldTask(rel)).join('\n') + '\n'
  writeFileSync(join(dir, `${pool}.txt`), text)
  const { jobId } = await client.submit(parseTasklist(text, join(dir, `${pool}.txt`), dir, { constraints: { pool } }))
  for (let i = 0; i < n; i++) makeRelease(rel, `${jobId}.${i}`)
  return jobId
}

const release = async (jobId: number, index: number): Promise<void> => { await releaseFifo(rel, `${jobId}.${index}`) }
const all = async (pid: number): Promise<Proc[]> => [...(await taskProcs(pid)).values()].flat()
const show = (ps: Proc[]): string => ps.map(p => `${p.stat.pid} ${p.stat.comm} ${p.stat.state}${p.freezer != null ? `/${p.freezer}` : ''}`).join(', ')

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mf-harvest-'))
  // The tasks run as slot users: they must be able to look for their release file.
  chmodSync(dir, 0o755)
  rel = join(dir, 'release')
  mkdirSync(rel, { mode: 0o755 })
  mesh = await startLocalMesh({
    dir,
    env: { MESHFARM_GPU_DETECT: '0' },
    agents: [harvestAgent('desk', '127.0.0.2', 'cg', desk), harvestAgent('tree', '127.0.0.3', 'tree', tree, ['--no-cgroups', '--isolation', 'none'])]
  })
  desk.pid = mesh.agents.find(a => a.output().includes('agent: desk '))!.child.pid!
  tree.pid = mesh.agents.find(a => a.output().includes('agent: tree '))!.child.pid!
  client = await connect({ home: mesh.clientHome })
})

after(async () => {
  await client?.close()
  await mesh?.stop()
  if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})

test('each desktop says at start which presence sources and which cgroup support it uses', { timeout: 60_000 }, () => {
  const d = mesh.agents[0].output() + mesh.agents[1].output()
  const lines = d.split('\n').filter(l => /agent: (cgroups|harvest: presence|harvested)/.test(l))
  console.log(lines.map(l => `# ${l}`).join('\n'))
  assert.match(d, /agent: cgroups v1: memory \(swap too\), cpu, cpuacct, freezer, pids; tasks get hard memory limits/)
  assert.match(d, /agent: cgroups: not usable \(turned off\): tasks are suspended by SIGSTOP of their process tree, memory capped by RLIMIT_DATA, CPU by nice/)
  assert.match(d, /agent: harvest: presence: injected \(.*desk\.presence\.json\), load/)
  assert.match(d, /agent: harvested tasks run at nice 19 and idle I\/O priority/)
})

test('no task starts while the owner is there; once they are away, tasks start, at the lowest priority', { timeout: 60_000 }, async () => {
  jobs.cg = await submit('cg', 2)
  jobs.tree = await submit('tree', 1)
  const why = await waitFor(async () => {
    const w = await client.why(jobs.cg)
    return w.some(r => /all matching desktops have their owners present \(desk: owner present: keyboard used/.test(r.reason)) ? w : null
  }, 'why: owners present')
  console.log(`# why: ${why[0].reason}`)
  const peers = await client.peers()
  const d = peers.find(p => p.hostname === 'desk')!
  assert.equal(d.status?.harvest?.lending, false)
  assert.equal(d.status?.harvest?.ownerPresent, true)
  assert.equal(d.slots, 0, 'a desktop in use offers no slots')
  assert.equal((await client.status(jobs.cg))[0].counts.queued, 2)
  assert.equal((await taskProcs(desk.pid)).size, 0)

  setPresence(desk.presence, AWAY)
  setPresence(tree.presence, AWAY)
  const procs = await waitFor(async () => {
    const [cg, tr] = [await taskProcs(desk.pid), await taskProcs(tree.pid)]
    return cg.size === 2 && [...cg.values()].every(p => p.length === 3) && tr.size === 1 && [...tr.values()][0].length === 3 ? [...cg.values(), ...tr.values()].flat() : null
  }, 'three tasks of three processes each, running')
  assert.ok(procs.every(p => p.nice === 19), `nice 19: ${procs.map(p => p.nice).join(' ')}`)
  // The I/O class, as the kernel reports it for each process (ioprio_get, through util-linux's ionice).
  const io = procs.map(p => execFileSync('ionice', ['-p', String(p.stat.pid)], { encoding: 'utf8' }).trim())
  assert.ok(io.every(c => c === 'idle'), `idle I/O priority: ${io.join(', ')}`)
  assert.ok(procs.every(p => !isStopped(p)), show(procs))
  await waitFor(async () => (await client.status(jobs.cg))[0].counts.running === 2, 'the coordinator sees them running')
})

test('the owner comes back: every process of every task is stopped within a second, and continues after', { timeout: 60_000 }, async t => {
  // A watcher hears each desktop's owner come and go: it follows from the last event kept, so that it misses
  // nothing from here on, however long its subscription takes.
  let last = 0
  await client.events({ after: 0, follow: false }, es => { last = es.at(-1)?.seq ?? last })
  const heard: MeshEvent[] = []
  const abort = new AbortController()
  const watching = client.events({ after: last, follow: true, signal: abort.signal }, es => { heard.push(...es.filter(e => e.type === 'agent.owner')) })
  t.after(async () => { abort.abort(); await watching })
  const t0 = performance.now()
  setPresence(desk.presence, PRESENT)
  setPresence(tree.presence, PRESENT)
  const stopped = await waitFor(async () => {
    const ps = [...await all(desk.pid), ...await all(tree.pid)]
    return ps.length === 9 && ps.every(isStopped) ? ps : null
  }, 'all nine processes stopped', 5000)
  const took = performance.now() - t0
  console.log(`# owner back: 9 processes stopped in ${took.toFixed(0)} ms: ${show(stopped)}`)
  assert.ok(took < 1000, `stopped in ${took} ms`)
  assert.ok((await all(tree.pid)).every(p => p.stat.state === 'T'), 'without cgroups: state T, double-forked child included')
  assert.ok((await all(desk.pid)).every(p => p.freezer === 'FROZEN'), 'with cgroups: the freezer holds them')
  await waitFor(async () => (await client.status(jobs.cg))[0].counts.suspended === 2, 'the coordinator sees them suspended')

  const t1 = performance.now()
  setPresence(desk.presence, AWAY)
  setPresence(tree.presence, AWAY)
  const running = await waitFor(async () => {
    const ps = [...await all(desk.pid), ...await all(tree.pid)]
    return ps.length === 9 && ps.every(p => !isStopped(p)) ? ps : null
  }, 'all nine processes running again', 5000)
  console.log(`# owner away: continued in ${(performance.now() - t1).toFixed(0)} ms: ${show(running)}`)
  await waitFor(async () => heard.length >= 4 ? heard : null, 'the owners\' comings and goings, as events').catch(err => { throw new Error(`${(err as Error).message}: heard ${JSON.stringify(heard)}`) })
  for (const host of ['desk', 'tree']) {
    assert.deepEqual(heard.filter(e => e.host === host).map(e => e.data?.present), [true, false], `${host}: owner present, then away`)
  }

  // One task finishes on the desktop: its record keeps the suspension.
  await release(jobs.cg, 0)
  const rec = await waitFor(async () => (await records(client, jobs.cg)).find(r => r.index === 0 && r.state === 'done') ?? null, 'task 0 done')
  assert.equal(rec.host, 'desk')
  assert.equal(rec.attempts, 1)
  assert.equal(rec.suspensions?.length, 1)
  assert.ok(rec.suspensions![0].to != null && rec.suspensions![0].to >= rec.suspensions![0].from)
})

test('reclaim and lend from the command line take effect within a second; status --here says what runs, for whom, why', { timeout: 60_000 }, async () => {
  const r = await runCli(mesh.clientHome, ['reclaim', '--socket', desk.socket])
  const t0 = performance.now()
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /^this machine: suspended: owner present: reclaimed by its owner 0 s ago/)
  const frozen = await waitFor(async () => { const ps = await all(desk.pid); return ps.length === 3 && ps.every(isStopped) ? ps : null }, 'reclaimed task frozen', 5000)
  console.log(`# reclaim: frozen ${(performance.now() - t0).toFixed(0)} ms after the command returned: ${show(frozen)}`)
  assert.ok(performance.now() - t0 < 1000)

  const here = await runCli(mesh.clientHome, ['status', '--here', '--socket', desk.socket])
  console.log(here.stdout.split('\n').map(l => `# ${l}`).join('\n'))
  assert.equal(here.code, 0, here.stderr)
  assert.match(here.stdout, new RegExp(`│ ${jobs.cg}\\.1 +│ task-1 +│ client │ suspended │`))
  assert.match(here.stdout, /owner present; last input/)

  const l = await runCli(mesh.clientHome, ['lend', '--until', '2h', '--socket', desk.socket, '--json'])
  const t1 = performance.now()
  assert.equal(l.code, 0, l.stderr)
  assert.match(JSON.parse(l.stdout).harvest.reason, /^lent by its owner until \+2h/)
  await waitFor(async () => { const ps = await all(desk.pid); return ps.length === 3 && ps.every(p => !isStopped(p)) }, 'lent: running again', 5000)
  assert.ok(performance.now() - t1 < 1000)

  const back = await runCli(mesh.clientHome, ['lend', '--policy', 'default', '--socket', desk.socket])
  assert.equal(back.code, 0, back.stderr)
  assert.match(back.stdout, /^this machine: lent: idle 1 h, load not ours 0\.00: lending/)
  const bad = await runCli(mesh.clientHome, ['lend', '--until', 'teatime', '--socket', desk.socket])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /--until: expected a time like 18:00/)
})

test('an owner who stays: the task is vacated and completes on another agent, not counted as a crash', { timeout: 60_000 }, async () => {
  await mesh.startAgent({ ip: '127.0.0.4', hostname: 'server', slots: 2, labels: ['pool=cg'] })
  setPresence(desk.presence, PRESENT)
  await waitFor(async () => (await all(desk.pid)).every(isStopped), 'suspended', 5000)
  // Suspended for --max-suspend (6 s), then vacated: its processes end, the task runs on the server.
  await waitFor(async () => (await records(client, jobs.cg)).find(r => r.index === 1 && r.host === 'server' && r.state === 'running') ?? null, 'task 1 running on the server', 30_000)
  assert.equal((await taskProcs(desk.pid)).size, 0, 'nothing of it is left on the desktop')
  await release(jobs.cg, 1)
  const rec = await waitFor(async () => (await records(client, jobs.cg)).find(r => r.index === 1 && r.state === 'done') ?? null, 'task 1 done')
  assert.equal(rec.host, 'server')
  assert.equal(rec.attempts, 2)
  assert.equal(rec.vacates, 1)
  assert.equal(rec.failure, undefined)
  const events: MeshEvent[] = []
  await client.events({ jobId: jobs.cg }, e => { events.push(...e) })
  const requeues = events.filter(e => e.index === 1 && (e.type === 'task.vacated' || e.type === 'task.requeued'))
  console.log(`# ${requeues.map(e => `${e.type} ${JSON.stringify(e.data)}`).join('; ')}`)
  assert.deepEqual(requeues.map(e => [e.type, e.data?.kind]), [['task.vacated', 'vacate']], 'one vacate, no crash, no retry')
  assert.match(String(requeues[0].data?.why), /^harvest: suspended 6 s/)
  await release(jobs.tree, 0)
  assert.equal((await client.watch(jobs.tree)).state, 'done')
})
