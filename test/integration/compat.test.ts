/**
 * Come as you are, end to end through the CLI (issue 13): ictasks configs and tasklists unchanged, jobs from
 * standard input with job-level files, `meshfarm parallel` with its joblog, -k, -j, --halt and exit status, and
 * the lab habits that reach the real program. Real processes on loopback: a coordinator and two agents.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { startMeshfarm } from '../../bin/processes.ts'
import { runCli, runCliJson } from '../helpers/cli.ts'
import { resumeSkips } from '../../shared/client/joblog.ts'
import type { JobSummary, TaskRecord } from '../../shared/protocol/messages.ts'

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'ictasks')
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'meshfarm')
let mesh: LocalMesh
let dir: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-compat-'))
  mesh = await startLocalMesh({
    dir,
    env: { MESHFARM_GPU_DETECT: '0' },
    agents: [{ ip: '127.0.0.2', hostname: 'ws-a', slots: 2, cores: 2 }, { ip: '127.0.0.3', hostname: 'ws-b', slots: 2, cores: 2 }]
  })
})

after(async () => {
  await mesh?.stop()
  if (dir != null && process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})

const cli = async (args: string[], opts: { cwd?: string, env?: NodeJS.ProcessEnv, input?: string } = {}): ReturnType<typeof runCli> => await runCli(mesh.clientHome, args, opts)
const json = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>
// eslint-disable-next-line no-control-regex
const plain = (s: string): string => s.replace(/\u001b\[\d+m/g, '')

interface LogLine { seq: number, host: string, start: number, runtime: number, exitval: number, command: string }
function joblog (path: string): LogLine[] {
  return readFileSync(path, 'utf8').split('\n').slice(1).filter(l => l !== '').map(l => {
    const f = l.split('\t')
    return { seq: Number(f[0]), host: f[1], start: Number(f[2]), runtime: Number(f[3]), exitval: Number(f[6]), command: f[8] }
  })
}

test("ictasks' README config and tasklist run unchanged, in ictasks' layout; colours only where asked", { timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(dir, 'ictasks-'))
  for (const f of ['my_config.yaml', 'tasklist.dat']) copyFileSync(join(FIXTURES, f), join(work, f))
  const r = await cli(['submit', 'my_config.yaml', '--wait', '--results', 'out'], { cwd: work })
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(readdirSync(join(work, 'out')).filter(n => n.startsWith('task_')).sort(), ['task_0', 'task_1'])
  const t0 = json(join(work, 'out', 'task_0', 'task.json'))
  assert.deepEqual(Object.keys(t0).slice(0, 9), ['id', 'launch_cmd', 'state', 'return_code', 'launch_time', 'finish_time', 'worker_id', 'host_id', 'pid'])
  assert.deepEqual([t0.id, t0.launch_cmd, t0.state, t0.return_code], ['0', "echo 'hello from task 0'", 'finished', 0])
  assert.equal(readFileSync(join(work, 'out', 'task_0', 'task_stdout.txt'), 'utf8'), 'hello from task 0\n')
  assert.ok(Object.values(json(join(work, 'out', 'hosts.json'))).every(h => h === 'ws-a' || h === 'ws-b'), 'host_id numbers the agents')
  const tl = await cli(['submit', 'tasklist.dat', '--wait', '--layout', 'ictasks', '--results', 'tl'], { cwd: work })
  assert.equal(tl.code, 0, tl.stderr)
  assert.equal(readFileSync(join(work, 'tl', 'task_1', 'task_stdout.txt'), 'utf8'), 'hello from task 2\n')
  assert.equal(json(join(work, 'tl', 'task_1', 'task.json')).launch_cmd, "echo 'hello from task 2'")
  // The same listing, plain through a pipe and in colour when forced: only the ANSI codes differ.
  const [pipe, forced] = [await cli(['status']), await cli(['status'], { env: { FORCE_COLOR: '1' } })]
  assert.doesNotMatch(pipe.stdout, /\u001b\[/)
  assert.match(forced.stdout, /\u001b\[32mdone\u001b\[39m/)
  assert.equal(plain(forced.stdout), pipe.stdout)
})

test('task_distribution cores_per_task: 2 gives 2 cores and OMP_NUM_THREADS=2; stdout_filename names the log', { timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(dir, 'td-'))
  writeFileSync(join(work, 'td.yaml'), 'job_id: td\nstdout_filename: out.log\ntask_distribution:\n    cores_per_task: 2\ntasks:\n    - id: omp\n      launch_cmd: "echo $OMP_NUM_THREADS $MESHFARM_CORES"\n')
  const r = await runCliJson<{ jobId: number, summary: JobSummary }>(mesh.clientHome, ['submit', 'td.yaml', '--wait', '--results', 'out'], { cwd: work })
  assert.equal(r.summary.state, 'done')
  assert.equal(readFileSync(join(work, 'out', 'task_omp', 'out.log'), 'utf8'), '2 2\n')
  const { tasks } = await runCliJson<{ tasks: TaskRecord[] }>(mesh.clientHome, ['status', String(r.jobId), '--tasks'])
  assert.equal(tasks[0].resources.cores, 2, 'two cores reserved for it')
})

test('a tasklist from standard input with %TASKID%, per-line and job-level files; fetched again in the ictasks layout', { timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(dir, 'stdin-'))
  writeFileSync(join(work, 'common.cfg'), 'common\n')
  writeFileSync(join(work, 'model.bin'), 'model\n')
  const lines = 'echo %TASKID% > n.txt # meshfarm: out=n.txt\ncat "$MESHFARM_JOB_DIR/model.bin" common.cfg > both_%TASKID%.log\n'
  const r = await cli(['submit', '-', '--wait', '--results', 'in', '--input', 'common.cfg', '--shared', 'model.bin', '--output', '*.log', '--json'], { cwd: work, input: lines })
  assert.equal(r.code, 0, r.stderr)
  const { jobId } = JSON.parse(r.stdout) as { jobId: number }
  assert.equal(readFileSync(join(work, 'in', 'task-0', 'n.txt'), 'utf8'), '0\n')
  assert.equal(readFileSync(join(work, 'in', 'task-1', 'both_1.log'), 'utf8'), 'model\ncommon\n')
  const f = await cli(['fetch', String(jobId), '--layout', 'ictasks', '--dest', 'ict'], { cwd: work })
  assert.equal(f.code, 0, f.stderr)
  assert.equal(readFileSync(join(work, 'ict', 'task_0', 'n.txt'), 'utf8'), '0\n')
  assert.equal(json(join(work, 'ict', 'task_1', 'task.json')).id, '1')
  // A flag with a bad value is one line naming it, and nothing is submitted.
  const bad = await cli(['submit', '-', '--output', '../x'], { cwd: work, input: lines })
  assert.equal(bad.code, 2)
  assert.equal(bad.stderr, 'error: --output: must be a name or glob inside the task folder, got "../x"\n')
})

/** Whether a tool is installed here (CI machines may have no more than Node and a POSIX base system). */
const has = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0

test("meshfarm parallel 'xz -k {}' ::: *.dat over two agents: .xz files beside the originals, a joblog parallel resumes", { timeout: 180_000 }, async t => {
  const work = mkdtempSync(join(dir, 'par-'))
  // xz where installed (the example); gzip, which every Debian has, where it is not. (gzip -k refuses a
  // staged input: agents stage inputs as hard links of their blob store, so it writes to stdout instead.)
  const [zip, ext] = has('xz') ? ['xz', 'xz'] : ['gzip', 'gz']
  if (zip !== 'xz') t.diagnostic('xz is not installed: the same run with gzip')
  const command = zip === 'xz' ? 'xz -k {}' : 'gzip -c {} > {}.gz'
  const names = Array.from({ length: 6 }, (_, i) => `f${i}.dat`)
  for (const n of names) writeFileSync(join(work, n), `data ${n}\n`.repeat(1000))
  const r = await cli(['parallel', '--joblog', 'jobs.log', command, ':::', ...names], { cwd: work })
  assert.equal(r.code, 0, r.stderr)
  for (const n of names) assert.equal(execFileSync(zip, ['-dc', join(work, `${n}.${ext}`)], { encoding: 'utf8' }), readFileSync(join(work, n), 'utf8'), `${n}.${ext} came back beside ${n}`)
  assert.deepEqual(readdirSync(work).sort(), ['jobs.log', ...names.flatMap(n => [n, `${n}.${ext}`])].sort(), 'nothing else left here')
  const log = readFileSync(join(work, 'jobs.log'), 'utf8')
  assert.deepEqual([...resumeSkips(log, 'jobs.log', 'resume')].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6])
  assert.deepEqual(new Set(joblog(join(work, 'jobs.log')).map(l => l.host)), new Set(['ws-a', 'ws-b']), 'both agents ran tasks')
  if (has('parallel')) {
    const again = spawnSync('parallel', ['--joblog', 'jobs.log', '--resume', command, ':::', ...names], { cwd: work, encoding: 'utf8', env: { ...process.env, HOME: work } })
    assert.equal(again.status, 0, again.stderr)
    assert.equal(readFileSync(join(work, 'jobs.log'), 'utf8'), log, 'GNU parallel finds every job done in our joblog and runs none')
  } else {
    t.diagnostic('GNU parallel is not installed: the check that it resumes from this joblog was skipped')
    console.log('# skipped: GNU parallel is not installed, so its --resume of our joblog was not checked')
  }
  writeFileSync(join(work, 'extra.dat'), 'extra\n')
  const resumed = await cli(['parallel', '--joblog', 'jobs.log', '--resume', command, ':::', ...names, 'extra.dat'], { cwd: work })
  assert.equal(resumed.code, 0, resumed.stderr)
  assert.deepEqual(joblog(join(work, 'jobs.log')).map(l => l.seq).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7], 'only the new argument ran, appended as Seq 7')
  assert.ok(existsSync(join(work, `extra.dat.${ext}`)))
})

test('meshfarm parallel: -k keeps order, -j 1 runs one task per agent at a time, the exit status counts failures, --halt stops', { timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(dir, 'exit-'))
  const r = await cli(['parallel', '-k', '-j', '1', '--joblog', 'j.log', 'sleep 0.3; echo {}; exit {}', ':::', '0', '2', '0', '5'], { cwd: work })
  assert.equal(r.stdout, '0\n2\n0\n5\n', 'in argument order')
  assert.equal(r.code, 2, 'two tasks failed')
  const byHost = new Map<string, LogLine[]>()
  for (const l of joblog(join(work, 'j.log'))) byHost.set(l.host, [...(byHost.get(l.host) ?? []), l].sort((a, b) => a.start - b.start))
  for (const [host, ls] of byHost) {
    for (let i = 1; i < ls.length; i++) assert.ok(ls[i].start >= ls[i - 1].start + ls[i - 1].runtime - 0.01, `${host} ran two tasks of the job at once`)
  }
  const halt = await cli(['parallel', '--halt', 'now,fail=1', 'exit {}', ':::', '0', '3', '0', '0'], { cwd: work })
  assert.equal(halt.code, 3, `--halt now,fail=1 exits with the failed task's status: ${halt.stderr}`)
  // Arguments from standard input; the user's command keeps its own flags, --help included; --dry-run runs nothing.
  const dry = await cli(['parallel', '--dry-run', 'grep', '--help', '-h', '{}'], { cwd: work, input: 'a b\nc\n' })
  assert.equal(dry.stdout, "grep --help -h 'a b'\ngrep --help -h c\n", dry.stderr)
})

test('meshfarm parallel: Ctrl-C cancels the job on the mesh', { timeout: 60_000 }, async () => {
  const p = startMeshfarm(['parallel', '--name', 'interrupted', 'sleep {}', ':::', '60', '61'], { home: mesh.clientHome })
  let running = false
  while (!running) {
    const jobs = await runCliJson<JobSummary[]>(mesh.clientHome, ['status'])
    running = jobs.some(j => j.name === 'interrupted' && j.counts.running === 2)
  }
  assert.equal(await p.stop('SIGINT'), 130, p.output())
  const job = (await runCliJson<JobSummary[]>(mesh.clientHome, ['status'])).find(j => j.name === 'interrupted')
  assert.equal(job?.state, 'cancelled')
  assert.equal(job?.counts.cancelled, 2)
})

test('the real program: bash completion from `meshfarm completion bash`, and agent service flags checked before anything is written', { timeout: 60_000 }, async () => {
  const script = execFileSync(BIN, ['completion', 'bash'], { encoding: 'utf8' })
  const driver = 'eval "$1"; shift; COMP_WORDS=(meshfarm "$@"); COMP_CWORD=$#; _meshfarm; printf "%s\\n" "${COMPREPLY[@]}"'
  const complete = (...words: string[]): string => execFileSync('bash', ['-c', driver, 'bash', script, ...words], { encoding: 'utf8' })
  assert.equal(complete('par'), 'parallel\n')
  assert.equal(complete('submit', '--for'), '--format\n')
  assert.equal(complete('fetch', '1', '--layout', 'ict'), 'ictasks\n')
  assert.equal(complete('agent', '--uninst'), '--uninstall-service\n')
  if (has('zsh')) {
    const zsh = spawnSync('zsh', ['-n'], { input: execFileSync(BIN, ['completion', 'zsh'], { encoding: 'utf8' }), encoding: 'utf8' })
    assert.equal(zsh.status, 0, zsh.stderr)
  }
  const bad = await cli(['agent', '--install-service', '--cores', 'two'])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /^error: --cores: /)
  const late = await cli(['status', '--home', 'elsewhere'])
  assert.equal(late.stderr, "error: unknown option '--home' (global options come before the command: meshfarm --home DIR COMMAND ...)\n")
})
