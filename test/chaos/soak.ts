/**
 * `npm run chaos`: a bounded soak on loopback. A coordinator and several agents (real processes, each with its
 * own state folder and 127.0.0.x address) run thousands of short tasks while agents are killed with SIGKILL and
 * restarted at random moments, and every 20-30 s the coordinator too (sometimes with an agent dying while it is
 * away). Chaos stops when the job is nearly done or 60% of the time is spent; then the job must finish by itself.
 *
 * Every task stages an input of its own (some inline, some large enough for a blob transfer) and the job's shared
 * file, and writes an output that carries its input's hash; the coordinator is killed preferably while tasks are
 * staging, so interrupted downloads are part of the soak.
 *
 * The ledger is checked from four sides:
 *  - the coordinator's database, where commits happen: a commit counter per task ("duplicated": committed more
 *    than once) and the crash count of each task against the attempts that really died (each task appends
 *    `start <index> <attempt>` first and `end <index> <attempt>` last: a started attempt without an end died);
 *    a task credited with more crashes than attempts that died is a non-crash counted as one;
 *  - the coordinator's commit stream, followed live across its restarts: a task committed twice would appear
 *    twice (each commit gets a new sequence number), so "duplicated" is what that stream showed more than once;
 *  - the coordinator's final view (status counts, task records, the committed results from the start);
 *  - the fetched results folder: one folder per task whose out.txt and stdout name that task and an attempt that
 *    really ran to its end (each task appends `end <index> <attempt>` to a ledger file as its last act).
 * Prints the counts; exit 0 only if every task has exactly one committed, correct result, else 1 and one line why.
 * Stops by itself: the job gets --minutes, and a watchdog ends everything 2 minutes after that.
 *
 *   npm run chaos -- [--tasks 3000] [--agents 3] [--slots 4] [--minutes 4] [--seed N] [--task-ms MEAN] [--keep]
 *   (or CHAOS_TASKS, CHAOS_AGENTS, CHAOS_SLOTS, CHAOS_MINUTES, CHAOS_SEED, CHAOS_TASK_MS, CHAOS_KEEP=1)
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startLocalMesh, type LocalAgentSpec, type LocalMesh } from '../../bin/local-mesh.ts'
import type { MeshProcess } from '../../bin/processes.ts'
import { connect, type MeshClient } from '../../shared/client/client.ts'
import { parseJobYaml } from '../../shared/client/spec.ts'
import { request, withReconnect } from '../../shared/net/rpc.ts'
import { errorMessage } from '../../shared/util/errors.ts'
import type { JobSummary, TaskRecord } from '../../shared/protocol/messages.ts'

// ---- options ----

const USAGE = 'usage: npm run chaos -- [--tasks 3000] [--agents 3] [--slots 4] [--minutes 4] [--seed N] [--task-ms MEAN] [--keep]'

function readOptions (): { tasks: number, agents: number, slots: number, minutes: number, seed: number, taskMs: number | null, keep: boolean } {
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      options: {
        tasks: { type: 'string' },
        agents: { type: 'string' },
        slots: { type: 'string' },
        minutes: { type: 'string' },
        seed: { type: 'string' },
        'task-ms': { type: 'string' },
        keep: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      }
    }).values
  } catch (err) {
    console.error(`chaos: ${errorMessage(err)}\n${USAGE}`)
    process.exit(2)
  }
  if (values.help === true) {
    console.log(USAGE)
    process.exit(0)
  }
  const num = (name: string, env: string, fallback: string | null, check: (n: number) => boolean, what: string): number | null => {
    const raw = (values[name] as string | undefined) ?? process.env[env] ?? fallback
    if (raw == null) return null
    const n = Number(raw)
    if (raw.trim() === '' || !check(n)) {
      console.error(`chaos: --${name} (or ${env}) must be ${what}, got ${JSON.stringify(raw)}\n${USAGE}`)
      process.exit(2)
    }
    return n
  }
  const int = (lo: number, hi: number) => (n: number) => Number.isInteger(n) && n >= lo && n <= hi
  return {
    tasks: num('tasks', 'CHAOS_TASKS', '3000', int(1, 1_000_000), 'a whole number >= 1')!,
    agents: num('agents', 'CHAOS_AGENTS', '3', int(1, 200), 'a whole number from 1 to 200')!,
    slots: num('slots', 'CHAOS_SLOTS', '4', int(1, 64), 'a whole number from 1 to 64')!,
    minutes: num('minutes', 'CHAOS_MINUTES', '4', n => Number.isFinite(n) && n >= 0.25 && n <= 120, 'a number of minutes from 0.25 to 120')!,
    seed: num('seed', 'CHAOS_SEED', String(Date.now() % 1_000_000), int(0, 2 ** 32 - 1), 'a whole number >= 0')!,
    taskMs: num('task-ms', 'CHAOS_TASK_MS', null, n => Number.isFinite(n) && n >= 0 && n <= 60_000, 'milliseconds from 0 to 60000'),
    keep: values.keep === true || (process.env.CHAOS_KEEP ?? '') !== ''
  }
}

const OPTS = readOptions()
const BUDGET_MS = OPTS.minutes * 60_000
/** Chaos stops at this share of the time, or when this share of the tasks is finished, whichever comes first. */
const CHAOS_TIME_SHARE = 0.6
const CHAOS_DONE_SHARE = 0.9
/** After the job's deadline: time for the checks and the cleanup before the watchdog ends everything. */
const WATCHDOG_GRACE_MS = 120_000
const COORDINATOR_ARGS = ['--agent-lost', '3s', '--heartbeat', '500ms', '--crash-limit', '20']

// ---- small helpers ----

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
const random = prng(OPTS.seed)
const between = (lo: number, hi: number): number => lo + random() * (hi - lo)
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, Math.max(0, ms))) }
const started = Date.now()
const clock = (): string => `${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s`
const log = (line: string): void => { console.log(`chaos: ${clock()}: ${line}`) }

/** Sleeps up to `ms`, waking early once `stop` says so. */
async function sleepUnless (ms: number, stop: () => boolean): Promise<void> {
  const until = Date.now() + ms
  while (!stop() && Date.now() < until) await sleep(Math.min(200, until - Date.now()))
}

/** Resolves with fn's value, or rejects after ms. */
async function within<T> (ms: number, what: string, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([fn(), new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} took more than ${ms / 1000} s`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Processes whose command line names this soak's folder: the coordinator and agents (their --home) and tasks
 * (the ledger path). Linux only (/proc); elsewhere none are found. Used to make sure nothing is left running.
 */
function processesUsing (dir: string): number[] {
  if (!existsSync('/proc')) return []
  const out: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(dir)) out.push(Number(name))
      else if (readlinkSync(`/proc/${name}/cwd`).startsWith(dir)) out.push(Number(name)) // a task's shell, in its task folder
    } catch {} // gone meanwhile, or not ours to read
  }
  return out
}

/** Never settles: once an emergency stop is under way, it alone decides when and how the process exits. */
async function parked (): Promise<never> {
  return await new Promise<never>(() => {})
}

function killAll (pids: number[]): void {
  for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
}

// ---- the job ----

/**
 * The job as a user would write it: a YAML sweep, parsed by the product's own parser. Each task sleeps a little
 * (one in five not at all), prints `<index> <attempt>` to stdout and out.txt, and as its last act appends
 * `end <index> <attempt>` to the ledger, so the check can tell that a committed result's attempt ran to its end.
 */
function writeJob (dir: string, ledger: string): { file: string, meanMs: number, inputHashes: string[] } {
  // Pace: the job's nominal run time is about 40% of the budget, so chaos has time to bite and recovery to finish.
  const slots = OPTS.agents * OPTS.slots
  const meanMs = OPTS.taskMs ?? Math.max(0, Math.min(1500, 0.4 * BUDGET_MS * slots / OPTS.tasks - 30))
  const sleeps: string[] = []
  for (let i = 0; i < OPTS.tasks; i++) sleeps.push(random() < 0.2 ? '0' : (between(0, 2.5 * meanMs) / 1000).toFixed(3))
  // Inputs: one per task, most small (inline in messages), one in ten 256 KiB to 1 MiB (a blob transfer each).
  mkdirSync(join(dir, 'inputs'), { recursive: true })
  const inputHashes: string[] = []
  for (let i = 0; i < OPTS.tasks; i++) {
    const size = random() < 0.1 ? Math.floor(between(256, 1024)) * 1024 : Math.floor(between(16, 4096))
    const data = randomBytes(size)
    writeFileSync(join(dir, 'inputs', `in_${i}.bin`), data)
    inputHashes.push(createHash('sha256').update(data).digest('hex'))
  }
  writeFileSync(join(dir, 'model.bin'), randomBytes(2 * 1024 * 1024))
  const command = `echo "start {i} $MESHFARM_ATTEMPT_ID" >> '${ledger}'; sleep {s}; h=$(sha256sum in.bin | cut -d' ' -f1); test -s model.bin && ` +
    `echo "{i} $MESHFARM_ATTEMPT_ID $h" | tee out.txt; echo "end {i} $MESHFARM_ATTEMPT_ID" >> '${ledger}'`
  const text = [
    `# meshfarm chaos soak: ${OPTS.tasks} tasks, seed ${OPTS.seed}`,
    'name: chaos-soak',
    'defaults: { cores: 1, timeout: 2m }',
    'shared: [model.bin]',
    'sweep:',
    '  mode: zip',
    '  parameters:',
    `    i: { range: [0, ${OPTS.tasks}, 1] }`,
    `    s: [${sleeps.map(s => JSON.stringify(s)).join(', ')}]`,
    '  task:',
    '    name: "t{i}"',
    `    command: ${JSON.stringify(command)}`,
    '    inputs: [{ src: "inputs/in_{i}.bin", as: in.bin }]',
    '    outputs: [out.txt]',
    ''
  ].join('\n')
  const file = join(dir, 'soak.yaml')
  writeFileSync(file, text)
  return { file, meanMs, inputHashes }
}

// ---- chaos ----

interface Counts {
  /** Coordinator kills that happened while tasks were staging. */
  duringStaging: number
  agentKills: number
  agentRestarts: number
  coordinatorKills: number
  coordinatorRestarts: number
}

interface AgentSlot { spec: LocalAgentSpec, proc: MeshProcess }

/** Kills agents (every 2-5 s) and the coordinator (every 20-30 s) with SIGKILL and restarts them, until `stop`. */
async function chaos (mesh: LocalMesh, agents: AgentSlot[], counts: Counts, stop: () => boolean, staging: () => number): Promise<void> {
  const pick = (): AgentSlot => agents[Math.floor(random() * agents.length)]
  const killAgent = async (a: AgentSlot): Promise<void> => {
    a.proc.child.kill('SIGKILL')
    await a.proc.exited
    counts.agentKills++
  }
  const restartAgent = async (a: AgentSlot): Promise<void> => {
    try {
      a.proc = await mesh.startAgent(a.spec)
    } catch (err) {
      throw new Error(`agent ${a.spec.hostname} did not come back after kill -9: ${errorMessage(err).split('\n')[0]}`)
    }
    counts.agentRestarts++
  }
  let nextCoordinatorKill = Date.now() + between(15_000, 25_000)
  while (!stop()) {
    await sleepUnless(between(2000, 5000), stop)
    if (stop()) break
    if (Date.now() < nextCoordinatorKill) {
      const victim = pick()
      await killAgent(victim)
      await sleep(between(200, 2000))
      await restartAgent(victim)
      continue
    }
    // Aim the coordinator's death at a moment when inputs are being staged (wait a few seconds for one).
    const aimUntil = Date.now() + 5000
    while (staging() === 0 && Date.now() < aimUntil && !stop()) await sleep(50)
    if (staging() > 0) counts.duringStaging++
    mesh.coordinator.child.kill('SIGKILL')
    await mesh.coordinator.exited
    counts.coordinatorKills++
    // Sometimes an agent dies too while the coordinator is away: the results it held must not be lost.
    const alsoAgent = random() < 0.3 ? pick() : null
    if (alsoAgent != null) await killAgent(alsoAgent)
    log(`kill -9 coordinator (#${counts.coordinatorKills})${alsoAgent != null ? ` and agent ${alsoAgent.spec.hostname} while it is away` : ''}`)
    await sleep(between(300, 2000))
    // The agent starts while the coordinator is still down, and finds it once it is back.
    const agentBack = alsoAgent != null ? restartAgent(alsoAgent) : Promise.resolve()
    agentBack.catch(() => {}) // awaited below; not an unhandled rejection meanwhile
    try {
      await mesh.startCoordinator()
    } catch (err) {
      throw new Error(`the coordinator did not come back after kill -9: ${errorMessage(err).split('\n')[0]}`)
    }
    counts.coordinatorRestarts++
    await agentBack
    nextCoordinatorKill = Date.now() + between(20_000, 30_000)
  }
}

// ---- the ledger ----

/** Follows the coordinator's commit stream (as fetch does) across its restarts; counts how often each task appears. */
async function followCommits (client: MeshClient, jobId: number, seen: Map<number, number>, stop: () => boolean): Promise<void> {
  let cursor = 0
  while (!stop()) {
    let page
    try {
      page = await withReconnect(async () => await request(client.node, client.coordinator, { t: 'client.results', jobId, after: cursor, limit: 1000 }, 'reply.results'))
    } catch (err) {
      log(`commit stream: ${errorMessage(err)}; trying again`)
      await sleep(1000)
      continue
    }
    for (const r of page.records) seen.set(r.index, (seen.get(r.index) ?? 0) + 1)
    cursor = page.next
    if (page.more) continue
    if (page.jobState !== 'active') return
    await sleep(250)
  }
}

async function committedRecords (client: MeshClient, jobId: number): Promise<TaskRecord[]> {
  const out: TaskRecord[] = []
  let cursor = 0
  while (true) {
    const page = await withReconnect(async () => await request(client.node, client.coordinator, { t: 'client.results', jobId, after: cursor, limit: 1000 }, 'reply.results'))
    out.push(...page.records)
    cursor = page.next
    if (!page.more) return out
  }
}

async function taskRecords (client: MeshClient, jobId: number): Promise<TaskRecord[]> {
  const out: TaskRecord[] = []
  let after = 0
  while (true) {
    const page = await withReconnect(async () => await client.tasks(jobId, { after, limit: 1000 }))
    out.push(...page.tasks)
    if (page.next == null) return out
    after = page.next
  }
}

interface Verdict {
  done: number
  failed: number
  lost: number
  duplicated: number
  /** Tasks whose committed result came from a second or later attempt: the chaos did reach them. */
  retried: number
  wrong: string[]
  problems: string[]
  /** Tasks credited with more crashes than attempts that really died. */
  falseCrashes: number
  diedAttempts: number
}

/** Checks every task has exactly one committed, correct result, from the coordinator's view and the fetched folder. */
async function verify (client: MeshClient, jobId: number, dir: string, ledger: string, seen: Map<number, number>, inputHashes: string[], coordinatorHome: string): Promise<Verdict> {
  const problems: string[] = []
  const wrong: string[] = []
  // Where commits happen: the database's commit counter and crash count per task.
  const db = new DatabaseSync(join(coordinatorHome, 'coordinator', 'state.db'), { readOnly: true })
  const rows = db.prepare('SELECT idx, commits, crashes FROM tasks WHERE job_id = ? ORDER BY idx').all(jobId) as Array<{ idx: number, commits: number, crashes: number }>
  db.close()
  for (const r of rows) if (r.commits > 1) seen.set(r.idx, Math.max(seen.get(r.idx) ?? 0, r.commits))
  const lines = readFileSync(ledger, 'utf8').split('\n')
  const begun = new Set(lines.filter(l => l.startsWith('start ')).map(l => l.slice('start '.length)))
  const endedSet = new Set(lines.filter(l => l.startsWith('end ')).map(l => l.slice('end '.length)))
  const died = new Map<number, number>()
  for (const b of begun) if (!endedSet.has(b)) died.set(Number(b.split(' ')[0]), (died.get(Number(b.split(' ')[0])) ?? 0) + 1)
  const falseCrashes = rows.filter(r => r.crashes > (died.get(r.idx) ?? 0))
  for (const r of falseCrashes.slice(0, 3)) problems.push(`task ${r.idx} counted ${r.crashes} crash(es), but ${died.get(r.idx) ?? 0} of its attempts died`)
  // The coordinator's view: the commit stream from its start, the task records, the status counts.
  const committed = await committedRecords(client, jobId)
  const perIndex = new Map<number, TaskRecord[]>()
  for (const r of committed) perIndex.set(r.index, [...(perIndex.get(r.index) ?? []), r])
  for (const [index, rs] of perIndex) {
    if (rs.length > 1) seen.set(index, Math.max(seen.get(index) ?? 0, rs.length))
    if (index < 0 || index >= OPTS.tasks) problems.push(`a committed result for task ${index}, which the job does not have`)
  }
  const duplicated = [...seen.values()].filter(n => n > 1).length
  const done = [...perIndex.values()].filter(rs => rs.some(r => r.state === 'done')).length
  const failedRecords = committed.filter(r => r.state !== 'done')
  const failed = new Set(failedRecords.map(r => r.index)).size
  const lost = OPTS.tasks - perIndex.size
  for (const r of failedRecords.slice(0, 3)) problems.push(`task ${r.index} ${r.state}: ${r.failure?.kind ?? '?'}: ${r.failure?.message ?? ''}`)

  const records = await taskRecords(client, jobId)
  const notDone = records.filter(r => r.state !== 'done' || r.exitCode !== 0)
  if (records.length !== OPTS.tasks) problems.push(`the coordinator lists ${records.length} task records for ${OPTS.tasks} tasks`)
  if (notDone.length > 0) problems.push(`${notDone.length} task records are not done with exit code 0 (e.g. ${notDone[0].id}: ${notDone[0].state})`)
  const [status] = await withReconnect(async () => await client.status(jobId))
  if (status.state !== 'done' || status.counts.done !== OPTS.tasks) problems.push(`status says job ${status.state} with ${status.counts.done} of ${status.total} done`)
  if (status.counts.done !== done) problems.push(`status counts ${status.counts.done} done, the commit stream holds ${done}`)

  // The fetched folder: one folder per task, its output naming the task and an attempt that ran to its end.
  const dest = join(dir, 'results')
  const report = await client.fetch(jobId, dest)
  if (report.tasks !== committed.length) problems.push(`fetch brought ${report.tasks} tasks, the coordinator committed ${committed.length}`)
  const ends = new Set(readFileSync(ledger, 'utf8').split('\n'))
  const folders = readdirSync(dest).filter(n => existsSync(join(dest, n, 'task.json')))
  if (folders.length !== OPTS.tasks) problems.push(`the results folder has ${folders.length} task folders for ${OPTS.tasks} tasks`)
  for (const r of committed) {
    if (r.state !== 'done') continue
    const folder = join(dest, r.name)
    const read = (name: string): string => { try { return readFileSync(join(folder, name), 'utf8').trim() } catch { return '(missing)' } }
    const out = read('out.txt')
    const stdout = read('stdout')
    const [index, attempt, hash] = out.split(' ')
    if (r.name !== `t${r.index}`) wrong.push(`${r.id} is named ${r.name}`)
    else if (Number(index) !== r.index || attempt == null) wrong.push(`${r.id}: out.txt says ${JSON.stringify(out)}`)
    else if (hash !== inputHashes[r.index]) wrong.push(`${r.id}: its input arrived as ${hash?.slice(0, 12)}, not ${inputHashes[r.index].slice(0, 12)}`)
    else if (stdout !== out) wrong.push(`${r.id}: stdout ${JSON.stringify(stdout)} differs from out.txt ${JSON.stringify(out)}`)
    else if (!ends.has(`end ${index} ${attempt}`)) wrong.push(`${r.id}: the result of attempt ${attempt}, which never ran to its end`)
    else {
      const json = JSON.parse(readFileSync(join(folder, 'task.json'), 'utf8')) as TaskRecord
      if (json.index !== r.index || json.attempts !== r.attempts) wrong.push(`${r.id}: task.json is of ${json.id} attempt ${json.attempts}`)
    }
  }
  const retried = committed.filter(r => r.attempts > 1).length
  return { done, failed, lost, duplicated, retried, wrong, problems, falseCrashes: falseCrashes.length, diedAttempts: [...died.values()].reduce((a, b) => a + b, 0) }
}

// ---- main ----

async function main (): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-chaos-'))
  const ledger = join(dir, 'ledger.txt')
  writeFileSync(ledger, '')
  const deadline = started + BUDGET_MS
  const chaosUntil = started + CHAOS_TIME_SHARE * BUDGET_MS
  const counts: Counts = { duringStaging: 0, agentKills: 0, agentRestarts: 0, coordinatorKills: 0, coordinatorRestarts: 0 }
  let mesh: LocalMesh | null = null
  let client: MeshClient | null = null
  let ok = false
  let shuttingDown = false

  // Whatever happens (Ctrl-C, kill, an exception, a hang), the coordinator, the agents and their tasks go.
  const emergency = (why: string, code: number): void => {
    if (shuttingDown) return
    shuttingDown = true
    console.error(`chaos: FAILED: ${why}; stopping everything; state kept in ${dir}`)
    const hard = setTimeout(() => { killAll(processesUsing(dir)); process.exit(code) }, 20_000)
    hard.unref()
    void (mesh?.stop() ?? Promise.resolve()).catch(() => {}).then(() => { killAll(processesUsing(dir)); process.exit(code) })
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    if (shuttingDown) { killAll(processesUsing(dir)); process.exit(130) } // a second Ctrl-C: at once
    emergency(`interrupted (${signal})`, 130)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', onSignal)
  process.on('uncaughtException', err => { emergency(`unexpected: ${err.stack ?? errorMessage(err)}`, 1) })
  process.on('unhandledRejection', err => { emergency(`unexpected: ${err instanceof Error ? err.stack : String(err)}`, 1) })
  const watchdog = setTimeout(() => { emergency(`still running ${WATCHDOG_GRACE_MS / 1000} s after the ${OPTS.minutes}-minute limit`, 1) }, BUDGET_MS + WATCHDOG_GRACE_MS)
  watchdog.unref()

  const { file: specFile, meanMs, inputHashes } = writeJob(dir, ledger)
  console.log(`chaos: seed ${OPTS.seed}: ${OPTS.tasks} tasks (mean sleep ${meanMs.toFixed(0)} ms), ${OPTS.agents} agents x ${OPTS.slots} slots, ` +
    `at most ${OPTS.minutes} min; state in ${dir}`)
  let reason: string | null = null
  let verdict: Verdict | null = null
  let summary: JobSummary | null = null
  try {
    // Tasks append to a ledger outside their folders, which isolated tasks cannot: these agents run them unisolated.
    const specs: LocalAgentSpec[] = Array.from({ length: OPTS.agents }, (_, i) => ({ ip: `127.0.0.${i + 2}`, hostname: `chaos-${i + 1}`, slots: OPTS.slots, cores: OPTS.slots, extraArgs: ['--isolation', 'none'] }))
    mesh = await startLocalMesh({ dir, agents: specs, coordinatorArgs: COORDINATOR_ARGS })
    const m = mesh
    // mesh.agents is in the order the agents connected, not the order of specs: match them by the name they print.
    const agents: AgentSlot[] = specs.map(spec => ({ spec, proc: m.agents.find(a => a.output().includes(`agent: ${spec.hostname} `))! }))
    client = await connect({ home: mesh.clientHome })
    const c = client
    const { jobId, total } = await client.submit(parseJobYaml(readFileSync(specFile, 'utf8'), specFile, dir))
    if (total !== OPTS.tasks) throw new Error(`submitted ${total} tasks, expected ${OPTS.tasks}`)
    log(`mesh up, job ${jobId} submitted`)

    let finished = false
    let progress: JobSummary | null = null
    let watchError: unknown = null
    const watching = client.watch(jobId, s => { progress = s })
      .then(s => { summary = s; finished = true }, err => { watchError = err })
    const seen = new Map<number, number>()
    let stopFollowing = false
    const following = followCommits(client, jobId, seen, () => stopFollowing || shuttingDown)
    const share = (): number => {
      const p = progress as JobSummary | null
      return p == null ? 0 : (p.counts.done + p.counts.failed + p.counts.cancelled) / p.total
    }
    let chaosError: unknown = null
    let chaosOver = false
    const staging = (): number => (progress as JobSummary | null)?.counts.staging ?? 0
    const chaosRun = chaos(mesh, agents, counts, () => shuttingDown || finished || chaosError != null || Date.now() >= chaosUntil || share() >= CHAOS_DONE_SHARE, staging)
      .catch(err => { chaosError = err })
      .finally(() => { chaosOver = true })

    let nextReport = Date.now() + 15_000
    let chaosReported = false
    while (!finished && watchError == null && chaosError == null && !shuttingDown && Date.now() < deadline) {
      await sleep(250)
      if (chaosOver && !chaosReported) {
        chaosReported = true
        if (chaosError == null && !shuttingDown) log(`chaos stops (${(share() * 100).toFixed(0)}% done); the job finishes undisturbed`)
      }
      if (Date.now() >= nextReport) {
        nextReport += 15_000
        const p = progress as JobSummary | null
        log(`${p?.counts.done ?? 0}/${OPTS.tasks} done, ${p?.counts.running ?? 0} running; ${counts.agentKills} agent kills, ${counts.coordinatorKills} coordinator kills`)
      }
    }
    await chaosRun
    if (shuttingDown) return await parked()
    if (chaosError != null) reason = `chaos: ${errorMessage(chaosError)}`
    else if (watchError != null) reason = `watching the job failed: ${errorMessage(watchError)}`
    else if (!finished) reason = `the job did not finish within ${OPTS.minutes} minutes (${(share() * 100).toFixed(1)}% done)`
    else log(`job ${(summary as JobSummary | null)?.state ?? '?'}; checking the ledger`)
    stopFollowing = !finished
    await within(60_000, 'following the commit stream to its end', async () => await following).catch(err => { reason ??= errorMessage(err); stopFollowing = true })
    void watching
    // The checks run even when the job did not finish: the counts say how far it got.
    verdict = await within(120_000, 'checking the ledger', async () => await verify(c, jobId, dir, ledger, seen, inputHashes, m.coordinatorHome))
      .catch(err => { reason ??= `checking the ledger failed: ${errorMessage(err)}`; return null })
  } catch (err) {
    reason ??= errorMessage(err).split('\n')[0]
  }

  // Everything stops before the verdict is printed: a child left running is a failure too.
  await within(30_000, 'closing the client', async () => await client?.close()).catch(() => {})
  await within(40_000, 'stopping the mesh', async () => await mesh?.stop()).catch(err => { reason ??= errorMessage(err) })
  await sleep(500)
  const strays = processesUsing(dir)
  if (strays.length > 0) {
    await sleep(6000) // tasks of a stopped agent get SIGTERM, then SIGKILL after a grace period
    const still = processesUsing(dir)
    if (still.length > 0) {
      reason ??= `${still.length} processes still running after the mesh stopped (pids ${still.slice(0, 5).join(' ')}); killed`
      killAll(still)
    }
  }
  if (shuttingDown) return await parked()

  const ran = readFileSync(ledger, 'utf8').split('\n').filter(l => l !== '').length
  const elapsed = ((Date.now() - started) / 1000).toFixed(0)
  const v = verdict as Verdict | null
  const kills = counts.agentKills + counts.coordinatorKills
  const restarts = counts.agentRestarts + counts.coordinatorRestarts
  console.log(`chaos: tasks ${OPTS.tasks}, done ${v?.done ?? '?'}, failed ${v?.failed ?? '?'}, kills ${kills} (agents ${counts.agentKills}, coordinator ${counts.coordinatorKills}), ` +
    `restarts ${restarts} (coordinator during staging ${counts.duringStaging}), lost ${v?.lost ?? '?'}, duplicated ${v?.duplicated ?? '?'}, wrong ${v?.wrong.length ?? '?'}, ` +
    `crashes counted for non-crashes ${v?.falseCrashes ?? '?'} (attempts that died ${v?.diedAttempts ?? '?'}), retried ${v?.retried ?? '?'}, attempt lines ${ran}, ` +
    `elapsed ${elapsed} s, seed ${OPTS.seed}`)
  if (v != null) {
    for (const w of v.wrong.slice(0, 5)) console.log(`chaos: wrong: ${w}`)
    for (const p of v.problems.slice(0, 5)) console.log(`chaos: problem: ${p}`)
    if (reason == null) {
      if (v.lost > 0) reason = `${v.lost} tasks have no committed result`
      else if (v.duplicated > 0) reason = `${v.duplicated} tasks were committed more than once`
      else if (v.falseCrashes > 0) reason = `${v.falseCrashes} tasks were counted crashes that did not happen`
      else if (v.failed > 0) reason = `${v.failed} tasks failed`
      else if (v.wrong.length > 0) reason = `${v.wrong.length} committed results are wrong (e.g. ${v.wrong[0]})`
      else if (v.problems.length > 0) reason = v.problems[0]
      else if (v.done !== OPTS.tasks) reason = `${v.done} of ${OPTS.tasks} tasks done`
    }
  }
  ok = reason == null && v != null
  if (ok) {
    console.log('chaos: PASS: every task has exactly one committed result, from an attempt that ran to its end')
    if (!OPTS.keep) rmSync(dir, { recursive: true, force: true })
    else console.log(`chaos: state kept in ${dir}`)
  } else {
    console.error(`chaos: FAILED (seed ${OPTS.seed}): ${reason ?? 'no verdict'}; state and logs kept in ${dir}`)
  }
  return ok ? 0 : 1
}

process.exit(await main())
