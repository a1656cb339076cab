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
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startLocalMesh, type LocalAgentSpec, type LocalMesh } from '../../bin/local-mesh.ts'
import type { MeshProcess } from '../../bin/processes.ts'
import { connect, type MeshClient } from '../../shared/client/client.ts'
import { parseJobYaml } from '../../shared/client/spec.ts'
import { errorMessage } from '../../shared/util/errors.ts'
import type { JobSummary } from '../../shared/protocol/messages.ts'
import { followCommits, verify, type Verdict } from './ledger.ts'

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
    const following = followCommits(client, jobId, seen, () => stopFollowing || shuttingDown, log)
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
    verdict = await within(120_000, 'checking the ledger', async () => await verify(c, jobId, seen, { dir, ledger, coordinatorHome: m.coordinatorHome, tasks: OPTS.tasks, inputHashes }))
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
