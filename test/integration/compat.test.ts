/**
 * Come as you are, end to end through the CLI (issue 13). DRAFT for phase 2: it needs the CLI wiring the lead adds
 * (submit --layout ictasks, submit -, meshfarm parallel, meshfarm completion, perAgent in the scheduler); until
 * then it is skipped unless MESHFARM_COMPAT_CLI=1. Real processes on loopback: a coordinator and two agents.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { runCli } from '../helpers/cli.ts'
import { resumeSkips } from '../../shared/client/joblog.ts'

const wired = process.env.MESHFARM_COMPAT_CLI === '1'
const skip = !wired && 'needs the phase-2 CLI wiring (set MESHFARM_COMPAT_CLI=1 once wired)'
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'ictasks')
let mesh: LocalMesh
let dir: string

before(async () => {
  if (!wired) return
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-compat-'))
  mesh = await startLocalMesh({
    dir,
    env: { MESHFARM_GPU_DETECT: '0' },
    agents: [{ ip: '127.0.0.2', hostname: 'ws-a', slots: 2, cores: 2 }, { ip: '127.0.0.3', hostname: 'ws-b', slots: 2, cores: 2 }]
  })
})

after(async () => {
  await mesh?.stop()
  if (dir != null) rmSync(dir, { recursive: true, force: true })
})

test("ictasks' README config and tasklist run unchanged; results in ictasks' layout", { skip, timeout: 180_000 }, async () => {
  const work = mkdtempSync(join(dir, 'ictasks-'))
  for (const f of ['my_config.yaml', 'tasklist.dat']) copyFileSync(join(FIXTURES, f), join(work, f))
  const r = await runCli(mesh.clientHome, ['submit', 'my_config.yaml', '--wait', '--results', 'out'], { cwd: work })
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(readdirSync(join(work, 'out')).filter(n => n.startsWith('task_')).sort(), ['task_0', 'task_1'])
  const t0 = JSON.parse(readFileSync(join(work, 'out', 'task_0', 'task.json'), 'utf8')) as Record<string, unknown>
  assert.deepEqual(Object.keys(t0).slice(0, 9), ['id', 'launch_cmd', 'state', 'return_code', 'launch_time', 'finish_time', 'worker_id', 'host_id', 'pid'])
  assert.equal(readFileSync(join(work, 'out', 'task_0', 'task_stdout.txt'), 'utf8'), 'hello from task 0\n')
  const tl = await runCli(mesh.clientHome, ['submit', 'tasklist.dat', '--wait', '--layout', 'ictasks', '--results', 'tl'], { cwd: work })
  assert.equal(tl.code, 0, tl.stderr)
  assert.equal(readFileSync(join(work, 'tl', 'task_1', 'task_stdout.txt'), 'utf8'), 'hello from task 2\n')
})

test('cores_per_task: 2 gives a task 2 cores and OMP_NUM_THREADS=2; %TASKID% is replaced; a job from stdin', { skip, timeout: 120_000 }, async () => {
  const work = mkdtempSync(join(dir, 'td-'))
  writeFileSync(join(work, 'td.yaml'), 'job_id: td\ntask_distribution:\n    cores_per_task: 2\ntasks:\n    - id: omp\n      launch_cmd: "echo $OMP_NUM_THREADS"\n')
  assert.equal((await runCli(mesh.clientHome, ['submit', 'td.yaml', '--wait', '--results', 'out'], { cwd: work })).code, 0)
  assert.equal(readFileSync(join(work, 'out', 'task_omp', 'task_stdout.txt'), 'utf8'), '2\n')
  const stdin = spawnSync(join(import.meta.dirname, '..', '..', 'bin', 'meshfarm'), ['--home', mesh.clientHome, 'submit', '-', '--wait', '--results', 'in'], { cwd: work, input: 'echo %TASKID% > n.txt # meshfarm: out=n.txt\necho %TASKID% > n.txt # meshfarm: out=n.txt\n', encoding: 'utf8' })
  assert.equal(stdin.status, 0, stdin.stderr)
  assert.equal(readFileSync(join(work, 'in', 'task-1', 'n.txt'), 'utf8'), '1\n')
})

test("meshfarm parallel 'xz -k {}' ::: *.dat over two agents: .xz files beside the originals, a joblog parallel resumes", { skip, timeout: 180_000 }, async () => {
  const work = mkdtempSync(join(dir, 'par-'))
  const names = Array.from({ length: 6 }, (_, i) => `f${i}.dat`)
  for (const n of names) writeFileSync(join(work, n), `data ${n}\n`.repeat(1000))
  const r = await runCli(mesh.clientHome, ['parallel', '--joblog', 'jobs.log', 'xz -k {}', ':::', ...names], { cwd: work })
  assert.equal(r.code, 0, r.stderr)
  for (const n of names) assert.ok(existsSync(join(work, `${n}.xz`)), `${n}.xz came back beside ${n}`)
  const log = readFileSync(join(work, 'jobs.log'), 'utf8')
  assert.deepEqual([...resumeSkips(log, 'jobs.log', 'resume')].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6])
  assert.deepEqual(new Set(log.split('\n').slice(1, -1).map(l => l.split('\t')[1])), new Set(['ws-a', 'ws-b']), 'both agents ran tasks')
  if (spawnSync('parallel', ['--version'], { stdio: 'ignore' }).status === 0) {
    const again = spawnSync('parallel', ['--joblog', 'jobs.log', '--resume', 'xz -k {}', ':::', ...names], { cwd: work, encoding: 'utf8', env: { ...process.env, HOME: work } })
    assert.equal(again.status, 0, again.stderr)
    assert.equal(again.stdout, '', 'GNU parallel finds every job done in our joblog')
  }
  const resumed = await runCli(mesh.clientHome, ['parallel', '--joblog', 'jobs.log', '--resume', 'xz -k {}', ':::', ...names, 'extra.dat'], { cwd: work })
  assert.match(resumed.stderr + resumed.stdout, /extra\.dat|1 task/, 'only the new argument runs')
})

test('completion from the real CLI drives bash', { skip }, () => {
  const script = spawnSync(join(import.meta.dirname, '..', '..', 'bin', 'meshfarm'), ['completion', 'bash'], { encoding: 'utf8' }).stdout
  const out = spawnSync('bash', ['-c', 'eval "$1"; COMP_WORDS=(meshfarm par); COMP_CWORD=1; _meshfarm; printf "%s\\n" "${COMPREPLY[@]}"', 'bash', script], { encoding: 'utf8' }).stdout
  assert.equal(out, 'parallel\n')
})
