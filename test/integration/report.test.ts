/**
 * `report` on a real job: a coordinator (without --dashboard) and two agents on loopback run a small tasklist
 * (some tasks fail with stderr, one succeeds on its retry). `meshfarm report JOB` asks the coordinator (records, events, agents'
 * slots, stderr through `logs`); bin/report.ts reads the fetched results folder. Both run as their own process.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PNG } from 'pngjs'
import { startLocalMesh } from '../../bin/local-mesh.ts'
import { TS_ARGS } from '../../bin/processes.ts'
import { connect } from '../../shared/client/client.ts'
import { fetchResults } from '../../shared/client/fetch.ts'
import { parseTasklist } from '../../shared/client/spec.ts'
import { OUTCOME_COLOURS } from '../../shared/report/timeline-svg.ts'
import { runCli } from '../helpers/cli.ts'

const REPORT = new URL('../../bin/report.ts', import.meta.url).pathname

async function report (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...TS_ARGS, REPORT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('error', reject)
    child.on('exit', code => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

const barsOf = (svg: string): string[] => svg.match(/<rect class="bar [^>]*>/g) ?? []
const taskOf = (bar: string): number => Number(/data-task="(\d+)"/.exec(bar)![1])

test('report on a finished job: durations, hosts, failures with stderr, and one bar per task in SVG and PNG', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-report-'))
  // One task marks its first try in the test's folder, outside its own, which an isolated task cannot: unisolated.
  const unisolated = ['--isolation', 'none']
  const mesh = await startLocalMesh({ dir, agents: [{ ip: '127.0.0.2', hostname: 'r1', slots: 2, extraArgs: unisolated }, { ip: '127.0.0.3', hostname: 'r2', slots: 2, extraArgs: unisolated }] })
  const client = await connect({ home: mesh.clientHome })
  try {
    // Tasks 3 and 8 fail twice (one retry each); task 12 fails once, then succeeds. Failing attempts last long
    // enough for their agent's started notice, so the events tell where they ran.
    const lines = Array.from({ length: 12 }, (_, i) => i % 5 === 3 ? `sleep 0.3; echo "bad input ${i}" >&2; exit 3` : `sleep 0.${2 + (i % 3)}; echo ${i}`)
    lines.push(`sleep 0.3; mkdir ${join(dir, 'once')} 2>/dev/null && exit 5; echo 12`)
    const file = join(dir, 'r.txt')
    writeFileSync(file, lines.join('\n') + '\n')
    const { jobId } = await client.submit(parseTasklist(lines.join('\n'), file, dir, { retries: 1 }))
    const summary = await client.watch(jobId)
    assert.equal(summary.counts.done + summary.counts.failed, 13)
    const results = join(dir, 'results')
    await fetchResults(client, jobId, results)

    const out = join(dir, 'pictures')
    const r = await report([results, '--out', out, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const j = JSON.parse(r.stdout)
    assert.equal(j.jobId, jobId)
    assert.equal(j.tasks, 13)
    assert.deepEqual(j.states, { done: 11, failed: 2 })
    assert.equal(j.durations.count, 13, 'a folder has the last attempts only')
    assert.ok(j.durations.minSeconds <= j.durations.medianSeconds && j.durations.medianSeconds <= j.durations.maxSeconds)
    assert.ok(j.durations.maxSeconds >= 0.4, 'the sleeps show')
    assert.deepEqual(j.hosts.map((h: { host: string }) => h.host), ['r1', 'r2'])
    for (const h of j.hosts) {
      assert.ok(h.tasksPerSecond > 0 && h.utilisation > 0 && h.utilisation <= 1, JSON.stringify(h))
    }
    assert.equal(j.hosts.reduce((n: number, h: { tasks: number }) => n + h.tasks, 0), 13)
    assert.deepEqual(j.failures.map((f: { index: number }) => f.index).sort(), [3, 8])
    for (const f of j.failures) {
      assert.equal(f.exitCode, 3)
      assert.equal(f.stderrTail, `bad input ${f.index}`)
    }

    const svg = readFileSync(j.files.svg, 'utf8')
    const bars = barsOf(svg)
    assert.equal(bars.length, 13, 'one bar per task')
    assert.deepEqual(bars.map(taskOf).sort((a, b) => a - b), Array.from({ length: 13 }, (_, i) => i))
    assert.equal(bars.filter(b => b.includes('bar-failed')).length, 2)
    const png = PNG.sync.read(readFileSync(j.files.png))
    const rgb = (hex: string): number[] => [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16))
    const has = (hex: string): boolean => {
      const [r0, g0, b0] = rgb(hex)
      for (let i = 0; i < png.data.length; i += 4) if (png.data[i] === r0 && png.data[i + 1] === g0 && png.data[i + 2] === b0) return true
      return false
    }
    assert.ok(has(OUTCOME_COLOURS.done) && has(OUTCOME_COLOURS.failed), 'the PNG shows done and failed bars')

    // The remaining commands do not depend on each other: run at once, they cost one process start, not six.
    const fromMesh = join(dir, 'from-mesh')
    const here = join(dir, 'here')
    mkdirSync(here)
    const [human, m, mh, missing, notANumber, noDashboard] = await Promise.all([
      report([results]),
      runCli(mesh.clientHome, ['report', String(jobId), '--out', fromMesh, '--json']),
      runCli(mesh.clientHome, ['report', String(jobId)], { cwd: here }),
      runCli(mesh.clientHome, ['report', '999']),
      runCli(mesh.clientHome, ['report', 'x']),
      runCli(mesh.clientHome, ['dashboard'])
    ])
    assert.equal(human.code, 0, human.stderr)
    assert.match(human.stdout, new RegExp(`^job ${jobId} .*: 13 tasks \\(11 done, 2 failed\\)`))
    assert.match(human.stdout, /task durations over 13 attempts: min [\d.]+ s, median [\d.]+ s, max [\d.]+ s/)
    assert.match(human.stdout, /│ r1 +│/)
    assert.match(human.stdout, /\| bad input 3/)
    assert.match(human.stdout, /timeline: .*job-\d+-timeline\.svg, .*\.png/)

    // meshfarm report JOB: from the coordinator, with the earlier attempts its events tell of.
    assert.equal(m.code, 0, m.stderr)
    const mj = JSON.parse(m.stdout)
    assert.equal(mj.jobId, jobId)
    assert.equal(mj.name, 'r')
    assert.deepEqual(mj.states, { done: 11, failed: 2 })
    assert.equal(mj.durations.count, 16, '13 last attempts and 3 earlier ones')
    assert.deepEqual(mj.hosts.map((h: { host: string, slots: number, slotsFrom: string }) => [h.host, h.slots, h.slotsFrom]), [['r1', 2, 'agent'], ['r2', 2, 'agent']])
    assert.deepEqual(mj.failures.map((f: { index: number, attempts: number, stderrTail: string }) => [f.index, f.attempts, f.stderrTail]), [[3, 2, 'bad input 3'], [8, 2, 'bad input 8']])
    const meshBars = barsOf(readFileSync(mj.files.svg, 'utf8'))
    assert.deepEqual(meshBars.filter(b => !b.includes('bar-earlier')).map(taskOf).sort((a, b) => a - b), Array.from({ length: 13 }, (_, i) => i), 'one bar per task')
    assert.deepEqual(meshBars.filter(b => b.includes('bar-earlier')).map(taskOf).sort((a, b) => a - b), [3, 8, 12], 'and one per earlier attempt, apart')
    assert.ok(PNG.sync.read(readFileSync(mj.files.png)).width > 0)
    assert.equal(mh.code, 0, mh.stderr)
    assert.match(mh.stdout, /task durations over 16 attempts/)
    assert.match(mh.stdout, /task 3 task-3, end of stderr:\n {2}\| bad input 3/)
    assert.match(mh.stdout, new RegExp(`timeline: ${here}/job-${jobId}-timeline\\.svg`), 'the current folder by default')
    assert.equal(missing.code, 5)
    assert.match(missing.stderr, /^error: .*999/)
    assert.equal(notANumber.code, 2)
    assert.equal(notANumber.stderr, 'error: JOB: must be a whole number from 1 to 9007199254740991, got "x"\n')
    // This coordinator runs without --dashboard.
    assert.equal(noDashboard.code, 5)
    assert.equal(noDashboard.stderr, 'error: this coordinator serves no dashboard (start it with --dashboard)\n')
  } finally {
    await client.close()
    await mesh.stop()
    if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
  }
})

test('report refuses a folder that is not results, and a bad task.json, in one line', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-report-bad-'))
  try {
    const none = await report([join(dir, 'missing')])
    assert.equal(none.code, 2)
    assert.match(none.stderr, /^error: .*missing: not a results folder \(cannot list it\)\n$/)
    const empty = await report([dir])
    assert.equal(empty.code, 2)
    assert.match(empty.stderr, /no task\.json files/)
    mkdirSync(join(dir, 't0'))
    writeFileSync(join(dir, 't0', 'task.json'), JSON.stringify({ jobId: 1, index: 0, name: 'x', state: 'exploded', host: null, exitCode: null, signal: null, attempts: 1 }))
    const bad = await report([dir])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /^error: .*t0\/task\.json: state: expected one of queued, held, staging, running, suspended, done, failed, cancelled\n$/)
    writeFileSync(join(dir, 't0', 'task.json'), '{ not json')
    assert.match((await report([dir])).stderr, /t0\/task\.json: \(top\): not JSON/)
    assert.equal((await report([])).code, 2, 'no folder given')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
