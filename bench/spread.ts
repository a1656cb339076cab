/**
 * Peer-to-peer spread of a shared input on a simulated lab LAN: network namespaces on one bridge, each host's
 * link limited by `tc` to 200 Mbit/s each way, a coordinator and 8 agents, one 256 MiB shared file and a job
 * with a task on every agent. Measured: the time until the file is on all 8 (from the durable submission to the
 * last result: the tasks are `true`), against one transfer to one agent, and against coordinator-only fetching
 * (MESHFARM_SPREAD=off); and the bytes the coordinator sent. Needs root, iproute2 and tc; skipped otherwise.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { closeSync, openSync, writeSync, rmSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import type { BenchContext } from './run.ts'
import { startLocalMesh, type LocalMesh } from '../bin/local-mesh.ts'
import { TS_ARGS } from '../bin/processes.ts'
import { summarize } from './stats.ts'

const AGENTS = 8
const RATE = '200mbit'
const HUB = 'mf-sp-hub'
const COORD_NS = 'mf-sp-c'
const agentNs = (i: number): string => `mf-sp-a${i}`
const COORD_IP = '10.79.0.1'
const agentIp = (i: number): string => `10.79.0.${11 + i}`
const PORT = 7341

function ip (args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' })
}

function tc (ns: string, dev: string): void {
  execFileSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', RATE, 'burst', '256kb', 'latency', '50ms'], { stdio: 'pipe' })
}

/** Why the section cannot run here, or null. */
function cannotRun (): string | null {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces'
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  if (r.error != null || r.status !== 0) return `no usable iproute2 (${r.error?.message ?? r.stderr.trim()})`
  const t = spawnSync('tc', ['-V'], { encoding: 'utf8' })
  if (t.error != null) return `no tc (${t.error.message}; Debian package iproute2)`
  return null
}

function teardown (): void {
  for (const ns of [HUB, COORD_NS, ...Array.from({ length: AGENTS }, (_, i) => agentNs(i))]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
}

/** One bridge in a hub namespace; each host one cable to it, limited to RATE in both directions. */
function buildLan (): void {
  teardown()
  ip(['netns', 'add', HUB])
  ip(['-n', HUB, 'link', 'add', 'br0', 'type', 'bridge'])
  ip(['-n', HUB, 'link', 'set', 'br0', 'up'])
  const hosts: Array<[string, string]> = [[COORD_NS, COORD_IP], ...Array.from({ length: AGENTS }, (_, i): [string, string] => [agentNs(i), agentIp(i)])]
  hosts.forEach(([ns, addr], i) => {
    ip(['netns', 'add', ns])
    ip(['-n', ns, 'link', 'set', 'lo', 'up'])
    ip(['link', 'add', `mf-sp-h${i}`, 'type', 'veth', 'peer', 'name', `mf-sp-p${i}`])
    ip(['link', 'set', `mf-sp-h${i}`, 'netns', ns])
    ip(['link', 'set', `mf-sp-p${i}`, 'netns', HUB])
    ip(['-n', ns, 'link', 'set', `mf-sp-h${i}`, 'name', 'eth0'])
    ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0'])
    ip(['-n', ns, 'link', 'set', 'eth0', 'up'])
    ip(['-n', HUB, 'link', 'set', `mf-sp-p${i}`, 'master', 'br0'])
    ip(['-n', HUB, 'link', 'set', `mf-sp-p${i}`, 'up'])
    tc(ns, 'eth0')
    tc(HUB, `mf-sp-p${i}`)
  })
}

function txBytes (ns: string): number {
  return Number(execFileSync('ip', ['netns', 'exec', ns, 'cat', '/sys/class/net/eth0/statistics/tx_bytes'], { encoding: 'utf8' }).trim())
}

function writeRandomFile (path: string, size: number): void {
  const fd = openSync(path, 'w')
  for (let done = 0; done < size; done += 16 << 20) writeSync(fd, randomBytes(Math.min(16 << 20, size - done)))
  closeSync(fd)
}

/** New leading bytes: a new hash, so no agent's cache holds it. */
function freshen (path: string): void {
  const fd = openSync(path, 'r+')
  writeSync(fd, randomBytes(64), 0, 64, 0)
  closeSync(fd)
}

async function startLan (dir: string, spread: boolean): Promise<LocalMesh> {
  return await startLocalMesh({
    dir,
    coordinatorIp: COORD_IP,
    coordinatorPort: PORT,
    coordinatorWrap: ['ip', 'netns', 'exec', COORD_NS],
    env: { MESHFARM_SPREAD: spread ? 'on' : 'off' },
    agents: Array.from({ length: AGENTS }, (_, i) => ({ ip: agentIp(i), hostname: `lan-a${i}`, slots: 1, labels: [`spot=a${i}`], wrap: ['ip', 'netns', 'exec', agentNs(i)] }))
  })
}

/** Runs the job from inside the coordinator's namespace; seconds from the durable submission to the last result. */
function runSpreadJob (mesh: LocalMesh, file: string, agents: number[]): { seconds: number, coordinatorSent: number } {
  const entry = fileURLToPath(new URL('./spread-client.ts', import.meta.url))
  const before = txBytes(COORD_NS)
  const out = execFileSync('ip', ['netns', 'exec', COORD_NS, process.execPath, ...TS_ARGS, entry, mesh.clientHome, file, agents.map(i => `a${i}`).join(',')], { encoding: 'utf8', timeout: 600_000 })
  const t = JSON.parse(out.trim().split('\n').pop()!) as { submitS: number, totalS: number }
  return { seconds: t.totalS - t.submitS, coordinatorSent: txBytes(COORD_NS) - before }
}

export async function spreadSection (ctx: BenchContext): Promise<void> {
  const skip = cannotRun()
  if (skip != null) {
    ctx.note(`peer-to-peer spread: skipped (${skip})`)
    return
  }
  const size = ctx.quick ? 32 * 2 ** 20 : 256 * 2 ** 20
  const label = ctx.quick ? '32 MiB' : '256 MiB'
  const rounds = ctx.quick ? 1 : 3
  const file = join(ctx.dir, 'shared-input.bin')
  writeRandomFile(file, size)
  const all = Array.from({ length: AGENTS }, (_, i) => i)
  buildLan()
  const one: number[] = []
  const spread: number[] = []
  const sent: number[] = []
  let coordinatorOnly: { seconds: number, coordinatorSent: number } | null = null
  try {
    const mesh = await startLan(join(ctx.dir, 'lan'), true)
    try {
      for (let r = 0; r < rounds; r++) {
        freshen(file)
        one.push(runSpreadJob(mesh, file, [r % AGENTS]).seconds)
        freshen(file)
        const s = runSpreadJob(mesh, file, all)
        spread.push(s.seconds)
        sent.push(s.coordinatorSent)
      }
    } finally {
      await mesh.stop()
    }
    // The comparison: every agent from the coordinator alone (once; it takes about 8 transfers' time).
    const off = await startLan(join(ctx.dir, 'lan-off'), false)
    try {
      freshen(file)
      coordinatorOnly = runSpreadJob(off, file, all)
    } finally {
      await off.stop()
    }
  } finally {
    teardown()
    rmSync(file, { force: true })
  }
  const o = summarize(one)
  const s = summarize(spread)
  const b = summarize(sent)
  // Rows' ratios read "more is better": one transfer's time over the time to reach all agents.
  const times = s.median / o.median
  ctx.raw.spread = { bytes: size, agents: AGENTS, rate: RATE, oneTransferS: o, allAgentsS: s, coordinatorSentBytes: b, coordinatorOnly }
  ctx.row({ measure: `${label} shared file on ${AGENTS} agents, ${RATE}/s links`, unit: 's', meshfarm: s.median, min: s.min, max: s.max, baselineName: 'one transfer', baseline: o.median, ratio: 1 / times, goal: `<= 2.5x one transfer's time (here ${times.toFixed(2)}x)`, met: times <= 2.5 })
  if (coordinatorOnly != null) ctx.row({ measure: `${label} shared file on ${AGENTS} agents, coordinator only`, unit: 's', meshfarm: coordinatorOnly.seconds, baselineName: 'one transfer', baseline: o.median, ratio: o.median / coordinatorOnly.seconds })
  ctx.row({ measure: `${label} shared file on ${AGENTS} agents: coordinator sent`, unit: 'copies', meshfarm: b.median / size, min: b.min / size, max: b.max / size, ...(coordinatorOnly != null ? { baselineName: 'coordinator only', baseline: coordinatorOnly.coordinatorSent / size } : {}) })
}
