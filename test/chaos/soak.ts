/**
 * `npm run chaos`: a bounded soak on loopback. A coordinator and several agents (real processes) run thousands
 * of short tasks while agents are killed with SIGKILL and restarted at random moments, and the coordinator too.
 * At the end it checks the ledger: every task has exactly one committed result, that result came from an
 * attempt that really ran to its end, and its output is the task's own. Prints the counts; exit 0 only if
 * nothing was lost or duplicated.
 *
 *   npm run chaos -- [--tasks 3000] [--agents 3] [--minutes 4] [--seed N] [--keep]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startLocalMesh, type LocalAgentSpec, type LocalMesh } from '../../bin/local-mesh.ts'
import type { MeshProcess } from '../../bin/processes.ts'
import { connect, type MeshClient } from '../../shared/client.ts'
import type { ParsedJob, ParsedTask } from '../../shared/spec.ts'
import type { TaskRecord } from '../../shared/protocol.ts'

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '3000' },
    agents: { type: 'string', default: '3' },
    minutes: { type: 'string', default: '4' },
    seed: { type: 'string', default: String(Date.now() % 100_000) },
    keep: { type: 'boolean', default: false }
  }
})
const TASKS = Number(values.tasks)
const AGENTS = Number(values.agents)
const DEADLINE = Date.now() + Number(values.minutes) * 60_000
const SEED = Number(values.seed)

/** A small seeded PRNG (mulberry32), so a failing run can be replayed with --seed. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const random = prng(SEED)
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const between = (lo: number, hi: number): number => lo + random() * (hi - lo)

/** Each task sleeps a little, writes its index and attempt to out.txt, and notes its end in the shared ledger. */
function soakJob (ledger: string): ParsedJob {
  const tasks: ParsedTask[] = []
  for (let i = 0; i < TASKS; i++) {
    const ms = Math.floor(random() * 80)
    tasks.push({
      index: i, name: `t${i}`, cores: 1, gpus: 0, memoryMb: 0, timeoutMs: 60_000, env: {}, inputs: [], constraints: {},
      commands: [`sleep 0.${String(ms).padStart(3, '0')}; echo "${i} $MESHFARM_ATTEMPT_ID" > out.txt; echo "end ${i} $MESHFARM_ATTEMPT_ID" >> '${ledger}'`],
      outputs: ['out.txt']
    })
  }
  return { name: 'soak', layout: 'per-task', retries: 0, shared: [], tasks, specText: `# chaos soak, seed ${SEED}\n`, specFile: 'soak.job' }
}

async function allRecords (client: MeshClient, jobId: number): Promise<TaskRecord[]> {
  const out: TaskRecord[] = []
  let after = 0
  while (true) {
    const page = await client.tasks(jobId, { after, limit: 5000 })
    out.push(...page.tasks)
    if (page.next == null) return out
    after = page.next
  }
}

const counts = { agentKills: 0, coordinatorRestarts: 0 }

/** Kills agents and the coordinator at random moments until `done` says stop. */
async function chaos (mesh: LocalMesh, agents: Map<string, { spec: LocalAgentSpec, proc: MeshProcess }>, done: () => boolean): Promise<void> {
  let nextCoordinatorKill = Date.now() + between(10_000, 20_000)
  while (!done() && Date.now() < DEADLINE) {
    await sleep(between(1500, 4000))
    if (done()) break
    if (Date.now() >= nextCoordinatorKill) {
      mesh.coordinator.child.kill('SIGKILL')
      await mesh.coordinator.exited
      counts.coordinatorRestarts++
      console.log(`chaos: coordinator killed (${counts.coordinatorRestarts})`)
      await sleep(between(300, 1500))
      await mesh.startCoordinator()
      nextCoordinatorKill = Date.now() + between(15_000, 30_000)
      continue
    }
    const names = [...agents.keys()]
    const name = names[Math.floor(random() * names.length)]
    const victim = agents.get(name)!
    victim.proc.child.kill('SIGKILL')
    await victim.proc.exited
    counts.agentKills++
    await sleep(between(200, 2000))
    victim.proc = await mesh.startAgent(victim.spec)
  }
}

async function main (): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-chaos-'))
  const ledger = join(dir, 'ledger.txt')
  const specs: LocalAgentSpec[] = Array.from({ length: AGENTS }, (_, i) => ({ ip: `127.0.0.${i + 2}`, hostname: `chaos-${i + 1}`, slots: 2 }))
  console.log(`chaos: seed ${SEED}, ${TASKS} tasks, ${AGENTS} agents, at most ${values.minutes} minutes (state in ${dir})`)
  // A short lost-agent timeout keeps the soak brisk; a high crash limit because this soak kills agents on purpose.
  const mesh = await startLocalMesh({ dir, agents: specs, coordinatorArgs: ['--agent-lost', '3s', '--heartbeat', '500ms', '--crash-limit', '20'] })
  // mesh.agents is in the order the agents connected, not the order of specs: match them by the name they print.
  const agents = new Map(specs.map(spec => [spec.hostname, { spec, proc: mesh.agents.find(a => a.output().includes(`agent: ${spec.hostname} `))! }]))
  const onSignal = (): void => { void mesh.stop().then(() => process.exit(130)) }
  process.once('SIGINT', onSignal)
  const started = Date.now()
  let ok = false
  let client: MeshClient | null = null
  try {
    client = await connect({ home: mesh.clientHome })
    const { jobId } = await client.submit(soakJob(ledger))
    let finished = false
    const watching = client.watch(jobId).finally(() => { finished = true })
    const chaosDone = chaos(mesh, agents, () => finished)
    const summary = await Promise.race([watching, sleep(Math.max(0, DEADLINE - Date.now())).then(() => null)])
    finished = true
    await chaosDone
    if (summary == null) throw new Error(`the job did not finish within ${values.minutes} minutes`)

    const records = await allRecords(client, jobId)
    const dest = join(dir, 'results')
    await client.fetch(jobId, dest)
    const ends = readFileSync(ledger, 'utf8').trim().split('\n')
    const ran = new Set(ends)
    const byIndex = new Map<number, number>()
    for (const r of records) byIndex.set(r.index, (byIndex.get(r.index) ?? 0) + 1)
    const duplicated = [...byIndex.values()].filter(n => n > 1).length
    const done = records.filter(r => r.state === 'done')
    const lost = TASKS - new Set(done.map(r => r.index)).size
    const wrong: string[] = []
    for (const r of done) {
      const [index, attempt] = readFileSync(join(dest, r.name, 'out.txt'), 'utf8').trim().split(' ')
      if (Number(index) !== r.index) wrong.push(`${r.id}: output of task ${index}`)
      else if (!ran.has(`end ${index} ${attempt}`)) wrong.push(`${r.id}: output of attempt ${attempt}, which never finished`)
    }
    const elapsed = ((Date.now() - started) / 1000).toFixed(0)
    console.log(`chaos: tasks ${TASKS}, done ${done.length}, failed ${records.length - done.length}, agent kills ${counts.agentKills}, coordinator restarts ${counts.coordinatorRestarts}, ` +
      `attempts run ${ends.length} (${ends.length - TASKS} re-runs), lost ${lost}, duplicated ${duplicated}, wrong outputs ${wrong.length}, ${elapsed} s`)
    for (const w of wrong.slice(0, 5)) console.log(`chaos: wrong: ${w}`)
    ok = lost === 0 && duplicated === 0 && wrong.length === 0 && done.length === TASKS
    if (!ok) console.error(`chaos: FAILED (seed ${SEED}): ${lost} lost, ${duplicated} duplicated, ${wrong.length} wrong outputs; state kept in ${dir}`)
    return ok ? 0 : 1
  } catch (err) {
    console.error(`chaos: FAILED (seed ${SEED}): ${(err as Error).message}; state kept in ${dir}`)
    return 1
  } finally {
    await client?.close().catch(() => {})
    await mesh.stop()
    if (ok && values.keep !== true) rmSync(dir, { recursive: true, force: true })
  }
}

process.exit(await main())
