/**
 * Simulated agents for the benchmark: each is a real mesh peer (its own identity, encrypted connection, the
 * real agent protocol) that reports every task it is given as done at once, without running anything. With
 * them the benchmark measures what the coordinator adds per task, and holds 100 agents in one process.
 *
 *   node bench/sim-agents.ts --slots 64 HOME...
 *
 * Prints `sim-agents: N connected` once every agent holds a session; reconnects when the coordinator returns.
 */
import { createHash } from 'node:crypto'
import { parseArgs } from 'node:util'
import { PROTOCOL_AGENT } from '../shared/protocol/constants.ts'
import { findCoordinator } from '../shared/net/discovery.ts'
import { createMeshNode, type MeshNode } from '../shared/net/mesh.ts'
import { loadMeshConfig, type MeshConfig } from '../shared/local/mesh-config.ts'
import type { AgentMessage, AttemptResult, CoordMessage, FileRef } from '../shared/protocol/messages.ts'
import { openChannel } from '../shared/net/rpc.ts'
import { SerialWriter } from '../shared/net/serial-writer.ts'
import { COORD_MESSAGES } from '../shared/protocol/schema.ts'

const EMPTY_HASH = createHash('sha256').digest('hex')
const empty = (name: string): FileRef => ({ name, hash: EMPTY_HASH, size: 0, data: new Uint8Array(0) })

const { values, positionals } = parseArgs({ allowPositionals: true, options: { slots: { type: 'string', default: '64' } } })
const slots = Number(values.slots)
let connected = 0
let announced = false

async function simulate (home: string, n: number): Promise<void> {
  const mesh = loadMeshConfig(home)
  const node = await createMeshNode({ mesh, listen: [] })
  let first = true
  while (true) {
    try {
      await session(node, mesh, n, () => {
        if (!first) return
        first = false
        connected++
        if (connected === positionals.length && !announced) { announced = true; console.log(`sim-agents: ${connected} connected`) }
      })
    } catch { /* the coordinator went away: look for it again */ }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

async function session (node: MeshNode, mesh: MeshConfig, n: number, onConnected: () => void): Promise<void> {
  const coord = await findCoordinator(node, mesh, 5000)
  const ch = await openChannel<CoordMessage, AgentMessage>(node, coord, PROTOCOL_AGENT, COORD_MESSAGES)
  const w = new SerialWriter(ch)
  w.send({
    t: 'agent.hello',
    resources: { hostname: `sim-${n}`, os: 'sim', cores: slots, physicalCores: slots, memoryMb: 1 << 20, slots, gpus: [], labels: {}, runsAsRoot: false },
    running: [],
    pending: [],
    draining: false
  })
  const welcome = await ch.expect()
  if (welcome.t !== 'coord.welcome') throw new Error(`expected coord.welcome, got ${welcome.t}`)
  onConnected()
  const heartbeat = setInterval(() => { w.send({ t: 'agent.heartbeat', running: [] }) }, welcome.heartbeatMs)
  // Results of one turn of the loop go back as one message, as the real agent batches them.
  let pending: AttemptResult[] = []
  const flush = (): void => { const results = pending; pending = []; w.send({ t: 'agent.results', results }) }
  try {
    while (true) {
      const msg = await ch.read()
      if (msg == null) break
      if (msg.t !== 'coord.assign') continue
      const now = Date.now()
      if (pending.length === 0) setImmediate(flush)
      for (const a of msg.assignments) {
        pending.push({
          attemptId: a.attemptId, jobId: a.jobId, index: a.index, state: 'done', exitCode: 0, signal: null,
          startedAt: now, endedAt: now, stdout: empty('stdout'), stderr: empty('stderr'), outputs: []
        })
      }
    }
  } finally {
    clearInterval(heartbeat)
  }
}

// A clean exit on SIGINT (a --cpu-prof run writes its profile); the benchmark ends it with SIGKILL.
process.once('SIGINT', () => { process.exit(0) })
await Promise.all(positionals.map(async (home, i) => { await simulate(home, i) }))
