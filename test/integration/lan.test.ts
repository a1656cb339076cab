/**
 * A real LAN of three hosts, each in its own network namespace on one bridge with no gateway (an isolated lab
 * network): the coordinator on one host, an agent on each of the others. They find each other by mDNS alone.
 * Then one agent's link is cut for longer than the lost-agent timeout while its task runs, and healed: its
 * result is kept (the task had not run elsewhere), every task is committed exactly once, and `peers` said the
 * agent was lost meanwhile. Needs root and iproute2; skipped with the reason printed elsewhere.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI_ENTRY, TS_ARGS } from '../../bin/processes.ts'
import { startMeshfarm, type MeshProcess } from '../../bin/processes.ts'
import { notCommittedOnce } from '../helpers/ledger.ts'
import { until } from '../helpers/cli.ts'

const NS = ['mf-lan-1', 'mf-lan-2', 'mf-lan-3'] as const
const BRIDGE_NS = 'mf-lan-br'
const ip = (n: number): string => `10.77.0.${n}`

function sh (args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' })
}

/** Why this test cannot run here, or null. */
function cannotRun (): string | null {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces'
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  if (r.error != null || r.status !== 0) return `no usable iproute2 (${r.error?.message ?? r.stderr.trim()})`
  return null
}
const skip = cannotRun()
if (skip != null) console.log(`# skipping the LAN test: ${skip}`)

function teardown (): void {
  for (const ns of [...NS, BRIDGE_NS]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
}

function buildLan (): void {
  teardown()
  sh(['netns', 'add', BRIDGE_NS])
  sh(['-n', BRIDGE_NS, 'link', 'add', 'br0', 'type', 'bridge'])
  sh(['-n', BRIDGE_NS, 'link', 'set', 'br0', 'up'])
  NS.forEach((ns, i) => {
    sh(['netns', 'add', ns])
    sh(['-n', ns, 'link', 'set', 'lo', 'up'])
    // One cable per host: eth0 in the host, its other end on the bridge. No default route anywhere.
    sh(['link', 'add', `mf-lan-h${i}`, 'type', 'veth', 'peer', 'name', `mf-lan-p${i}`])
    sh(['link', 'set', `mf-lan-h${i}`, 'netns', ns])
    sh(['link', 'set', `mf-lan-p${i}`, 'netns', BRIDGE_NS])
    sh(['-n', ns, 'link', 'set', `mf-lan-h${i}`, 'name', 'eth0'])
    sh(['-n', ns, 'addr', 'add', `${ip(i + 1)}/24`, 'dev', 'eth0'])
    sh(['-n', ns, 'link', 'set', 'eth0', 'up'])
    sh(['-n', BRIDGE_NS, 'link', 'set', `mf-lan-p${i}`, 'master', 'br0'])
    sh(['-n', BRIDGE_NS, 'link', 'set', `mf-lan-p${i}`, 'up'])
  })
}

/** The CLI run inside a host's namespace. */
function cli (ns: string, home: string, args: string[], input?: string): { status: number, stdout: string, stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...TS_ARGS, CLI_ENTRY, '--home', home, ...args], { encoding: 'utf8', input, timeout: 120_000 })
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

let dir: string
const procs: MeshProcess[] = []

before(() => {
  if (skip != null) return
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-lan-'))
  buildLan()
})

after(async () => {
  for (const p of procs) await p.stop('SIGKILL').catch(() => {})
  if (skip == null) teardown()
  if (dir != null && process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})

test('mDNS alone on a LAN with no gateway; a link cut past the timeout keeps its result; one commit per task', { skip: skip ?? false, timeout: 240_000 }, async () => {
  const coordHome = join(dir, 'h1')
  assert.equal(cli(NS[0], coordHome, ['init']).status, 0)
  const coordinator = startMeshfarm(['coordinator', '--listen', '/ip4/0.0.0.0/tcp/7341', '--agent-lost', '3s', '--heartbeat', '500ms', '--prefetch', '0'],
    { home: coordHome, logFile: join(dir, 'coordinator.log'), wrap: ['ip', 'netns', 'exec', NS[0]] })
  procs.push(coordinator)
  await coordinator.waitFor(/coordinator: ready/, 60_000)
  // Each agent joins with an invite, then forgets every address it was given: only mDNS can find the coordinator.
  const agents: MeshProcess[] = []
  for (const [i, ns] of [[2, NS[1]], [3, NS[2]]] as const) {
    const invite = cli(NS[0], coordHome, ['invite', '--role', 'agent'])
    assert.equal(invite.status, 0, invite.stderr)
    assert.ok(!invite.stdout.includes('/ip4/127.'), 'the invite hands out no loopback address')
    const home = join(dir, `h${i}`)
    const joined = cli(ns, home, ['join', '-'], invite.stdout)
    assert.equal(joined.status, 0, joined.stderr)
    const meshFile = join(home, 'mesh.json')
    writeFileSync(meshFile, JSON.stringify({ ...JSON.parse(readFileSync(meshFile, 'utf8')), bootstrap: [] }))
    if (existsSync(join(home, 'known-coordinator.json'))) unlinkSync(join(home, 'known-coordinator.json'))
    const agent = startMeshfarm(['agent', '--listen', `/ip4/${ip(i)}/tcp/0`, '--hostname', `h${i}`, '--slots', '1', '--label', `host=h${i}`, '--allow-root', '--isolation', 'none'],
      { home, logFile: join(dir, `agent-h${i}.log`), wrap: ['ip', 'netns', 'exec', ns] })
    procs.push(agent)
    agents.push(agent)
  }
  await Promise.all(agents.map(async a => await a.waitFor(/agent: connected to coordinator/, 60_000)))

  // t0 runs on h2 for 6 s; t1 keeps h3 busy for 15 s, so t0 cannot run elsewhere while h2 is cut off.
  const jobFile = join(dir, 'lan.yaml')
  writeFileSync(jobFile, [
    'name: lan',
    'tasks:',
    '  - { name: t0, command: "sleep 6; echo t0 $MESHFARM_ATTEMPT_ID", constraints: { host: h2 } }',
    '  - { name: t1, command: "sleep 15; echo t1", constraints: { host: h3 } }',
    '  - { name: t2, command: "echo t2" }',
    '  - { name: t3, command: "echo t3" }'
  ].join('\n') + '\n')
  const submitted = JSON.parse(cli(NS[0], coordHome, ['submit', jobFile, '--json']).stdout) as { jobId: number }
  const jobId = submitted.jobId
  const status = (): { counts: Record<string, number> } => JSON.parse(cli(NS[0], coordHome, ['status', String(jobId), '--json']).stdout)[0]
  await until(() => status().counts.running >= 2, 30_000, 't0 and t1 running')

  // Cut h2's cable past the lost-agent timeout: peers says so; then heal it.
  sh(['-n', BRIDGE_NS, 'link', 'set', 'mf-lan-p1', 'down'])
  await until(() => {
    const peers = JSON.parse(cli(NS[0], coordHome, ['peers', '--json']).stdout) as Array<{ hostname: string, state: string }>
    return peers.find(p => p.hostname === 'h2')?.state === 'lost'
  }, 30_000, 'h2 seen lost')
  await new Promise(resolve => setTimeout(resolve, 4000)) // the cut lasts past t0's end: its result waits on h2
  sh(['-n', BRIDGE_NS, 'link', 'set', 'mf-lan-p1', 'up'])

  await until(() => JSON.parse(cli(NS[0], coordHome, ['status', String(jobId), '--json']).stdout)[0].state !== 'active', 90_000, 'the job to end')
  const final = JSON.parse(cli(NS[0], coordHome, ['status', String(jobId), '--tasks', '--json']).stdout) as { job: { state: string }, tasks: Array<{ name: string, host: string, attempts: number, state: string }> }
  assert.equal(final.job.state, 'done')
  const t0 = final.tasks.find(t => t.name === 't0')!
  assert.equal(t0.host, 'h2', 't0\'s result came from the agent that was cut off')
  assert.equal(t0.attempts, 1, 'its finished work was not thrown away and run again')
  assert.deepEqual(notCommittedOnce(coordHome, jobId), [], 'one commit per task')
  const log = readFileSync(join(dir, 'coordinator.log'), 'utf8')
  assert.match(log, /agent .* lost; its tasks go back to the front of the queue/)
})
