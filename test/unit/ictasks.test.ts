import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseJobFile, parseJobText, parseJobYaml, parseTasklist } from '../../shared/client/spec.ts'
import { HostNumbers, ictasksFolder, returnCode, toIctasksTask } from '../../shared/client/ictasks.ts'
import { placeRecord } from '../../shared/client/fetch.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'
import { ictasksRecord } from '../helpers/records.ts'

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'ictasks')

function errorOf (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    assert.ok(isMeshfarmError(err), String(err))
    assert.equal(err.message.includes('\n'), false)
    return err.message
  }
  return assert.fail('accepted')
}

const yaml = (text: string): ReturnType<typeof parseJobYaml> => parseJobYaml(text, 'c.yaml', '/nonexistent')

test("ictasks' README config runs unchanged: job_id, tasks.items with id and launch_cmd, ictasks results layout", () => {
  const job = parseJobFile(join(FIXTURES, 'my_config.yaml'))
  assert.equal(job.name, 'my_job')
  assert.equal(job.layout, 'ictasks', 'an ictasks config gets ictasks results unless told otherwise')
  assert.deepEqual(job.tasks.map(t => [t.name, t.commands]), [['0', ["echo 'hello from task 0'"]], ['1', ["echo 'hello from task 1'"]]])
  assert.deepEqual(job.tasks.map(t => [t.cores, t.gpus]), [[1, 0], [1, 0]])
  assert.equal(job.perAgent, 1, 'cores_per_node: 1 runs one task at a time on a node')
})

test("ictasks' tasklist runs unchanged; %TASKID% is the line's ictasks number (blank lines skipped, comments counted)", () => {
  const job = parseJobFile(join(FIXTURES, 'tasklist.dat'))
  assert.deepEqual(job.tasks.map(t => [t.name, t.commands[0]]), [['task-0', "echo 'hello from task 1'"], ['task-1', "echo 'hello from task 2'"]])
  const numbered = parseTasklist('\n./sim --seed %TASKID% > out_%TASKID%.txt\n\n# a comment: ictasks runs it as task 1\n   \n./sim --seed %TASKID%\n', 't.dat', '/x')
  assert.deepEqual(numbered.tasks.map(t => [t.index, t.name, t.commands[0]]), [
    [0, 'task-0', './sim --seed 0 > out_0.txt'],
    [1, 'task-2', './sim --seed 2']
  ])
  assert.deepEqual(numbered.tasks.map(t => ictasksFolder(t.name)), ['task_0', 'task_2'])
})

test('task_distribution is honoured with ictasks meaning: per-task cores and GPUs, per-node limits as a per-agent cap', () => {
  const two = yaml('task_distribution: { cores_per_task: 2, gpus_per_task: 1 }\ntasks:\n  - { id: a, launch_cmd: "omp_prog" }\n')
  assert.deepEqual([two.tasks[0].cores, two.tasks[0].gpus, two.perAgent], [2, 1, undefined], 'no per-node values: the agent decides')
  const cases: Array<[string, number | undefined]> = [
    ['{ cores_per_node: 8, cores_per_task: 2 }', 4],
    ['{ cores_per_node: 8, cores_per_task: 2, threads_per_core: 2 }', 8],
    ['{ cores_per_node: 8, gpus_per_node: 2, gpus_per_task: 1 }', 2],
    ['{ cores_per_node: 2, gpus_per_node: 4, gpus_per_task: 1 }', 2],
    ['{ gpus_per_node: 4, gpus_per_task: 2 }', 2],
    ['{ gpus_per_node: 4 }', undefined],
    ['{ cores_per_node: 0, cores_per_task: 3 }', undefined]
  ]
  for (const [td, want] of cases) assert.equal(yaml(`task_distribution: ${td}\ntasks: [{ launch_cmd: x }]\n`).perAgent, want, td)
  const listForm = yaml('job_id: j\nstdout_filename: out.log\nstop_on_error: false\nstopping_conditions: [{ stopfile: STOP }]\ntasks:\n  - { id: x, launch_cmd: "true" }\n')
  assert.deepEqual(listForm.logNames, { stdout: 'out.log', stderr: 'task_stderr.txt' })
  assert.equal(listForm.tasks[0].name, 'x')
})

test('ictasks configs: unknown or unsupported keys and impossible distributions are one line each', () => {
  const cases: Array<[string, RegExp]> = [
    ['job_id: j\nwork_dir: /scratch\ntasks: [{ launch_cmd: a }]\n', /c\.yaml: work_dir: unknown key/],
    ['task_distribution: { cores_per_tsk: 2 }\ntasks: [{ launch_cmd: a }]\n', /task_distribution\.cores_per_tsk: unknown key \(did you mean 'cores_per_task'\?\)/],
    ['task_distribution: { cores_per_task: 0 }\ntasks: [{ launch_cmd: a }]\n', /task_distribution\.cores_per_task: must be a whole number >= 1, got 0/],
    ['task_distribution: { gpus_per_task: two }\ntasks: [{ launch_cmd: a }]\n', /task_distribution\.gpus_per_task: must be a whole number >= 0, got "two"/],
    ['task_distribution: { cores_per_node: 2, cores_per_task: 4 }\ntasks: [{ launch_cmd: a }]\n', /task_distribution: cores_per_node 2 \/ cores_per_task 4 \* threads_per_core 1 leaves no task running/],
    ['task_distribution: { gpus_per_node: 1, gpus_per_task: 2 }\ntasks: [{ launch_cmd: a }]\n', /task_distribution\.gpus_per_task: 2 is more than gpus_per_node \(1\)/],
    ['task_distribution: { cores_per_task: 2 }\ndefaults: { cores: 4 }\ntasks: [{ launch_cmd: a }]\n', /task_distribution\.cores_per_task: says 2 but defaults\.cores says 4/],
    ['check_slurm: true\ntasks: [{ launch_cmd: a }]\n', /check_slurm: meshfarm places tasks itself/],
    ['slurm_job: { id: "12" }\ntasks: [{ launch_cmd: a }]\n', /slurm_job: meshfarm places tasks itself/],
    ['stdout_filename: logs/out.txt\ntasks: [{ launch_cmd: a }]\n', /stdout_filename: must be a file name/],
    ['stopping_conditions: [{ stopfle: STOP }]\ntasks: [{ launch_cmd: a }]\n', /stopping_conditions\[0\]\.stopfle: unknown key \(did you mean 'stopfile'\?\)/],
    ['tasks:\n  items:\n    - { id: 0, launch_cmd: a }\n    - { id: 0, launch_cmd: b }\n', /tasks\[1\]: id "0" is also tasks\[0\]'s/],
    ['tasks:\n  items:\n    - { id: 0, launch_cmd: a, return_code: 0 }\n', /tasks\[0\]\.return_code: unknown key/],
    ['tasks:\n  itemz: []\n', /tasks\.itemz: unknown key \(did you mean 'items'\?\)/]
  ]
  for (const [text, want] of cases) assert.match(errorOf(() => yaml(text)), want)
})

test('a tasklist names per-line files in a trailing # meshfarm: comment; job-level --input/--output/--shared apply to every line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-tl-'))
  try {
    mkdirSync(join(dir, 'data'))
    for (const f of ['data/a.dat', 'data/b.dat', 'model.bin', 'common.cfg']) writeFileSync(join(dir, f), f)
    const text = [
      'xz -k data/a.dat  # meshfarm: in=data/a.dat out=data/a.dat.xz cores=2',
      "echo '# meshfarm: in=nothing' > note.txt",
      'sim %TASKID% # meshfarm: in=data/b.dat,' + join(dir, 'model.bin') + ' out=out_%TASKID%.txt,*.log timeout=5m memory=1G',
      ''
    ].join('\n')
    const job = parseTasklist(text, 'files.tasks', dir, { inputs: ['common.cfg'], outputs: ['*.err'], shared: ['model.bin'], cwd: dir })
    const t = job.tasks
    assert.equal(t[0].commands[0], 'xz -k data/a.dat', 'the directive is metadata, not part of the command')
    assert.deepEqual(t[0].inputs.map(i => i.name), ['data/a.dat', 'common.cfg'], 'staged at the same relative path, so the command finds it')
    assert.deepEqual(t[0].outputs, ['data/a.dat.xz', '*.err'])
    assert.equal(t[0].cores, 2)
    assert.equal(t[1].commands[0], "echo '# meshfarm: in=nothing' > note.txt", 'a # inside quotes is not a comment')
    assert.deepEqual(t[1].inputs.map(i => i.name), ['common.cfg'])
    assert.deepEqual(t[2].inputs.map(i => i.name), ['data/b.dat', 'model.bin', 'common.cfg'], 'an absolute path is staged by its base name')
    assert.deepEqual(t[2].outputs, ['out_2.txt', '*.log', '*.err'])
    assert.deepEqual([t[2].timeoutMs, t[2].memoryMb], [300_000, 1024])
    assert.deepEqual(job.shared.map(s => s.name), ['model.bin'])
    const bad: Array<[string, RegExp]> = [
      ['run # meshfarm: inputs=a\n', /bad\.tasks: line 1: meshfarm: inputs: unknown key; known: in, out, cores, gpus, memory, timeout/],
      ['run # meshfarm: in=missing.dat\n', /bad\.tasks: line 1: meshfarm: in: no such file "missing\.dat"/],
      ['ok\nrun # meshfarm: out=../up.txt\n', /bad\.tasks: line 2: meshfarm: out: must be a relative name inside the task folder/],
      ['run # meshfarm: cores=0\n', /line 1: meshfarm: cores: must be a whole number >= 1/],
      ['run # meshfarm: out=\n', /line 1: meshfarm: out: needs a value/]
    ]
    for (const [body, want] of bad) assert.match(errorOf(() => parseTasklist(body, 'bad.tasks', dir)), want)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a job from standard input: YAML when it starts with a job-file key, else a tasklist', () => {
  assert.equal(parseJobText(readFileSync(join(FIXTURES, 'my_config.yaml'), 'utf8'), 'stdin', FIXTURES).name, 'my_job')
  const tl = parseJobText('# header\necho a: b\nname: not yaml here\n', 'stdin', '/x')
  assert.deepEqual(tl.tasks.map(t => t.commands[0]), ['echo a: b', 'name: not yaml here'], 'a key on a later line does not make it YAML')
  assert.equal(parseJobText('tasks: [{ command: a }]\n', 'stdin', '/x').tasks[0].commands[0], 'a')
  assert.match(errorOf(() => parseJobText('echo hi\n', 'stdin', '/x', {}, 'yaml')), /^stdin: \(top\): a job file is a map/, 'told it is YAML, it is read as YAML')
})

const record = ictasksRecord

test("a result in ictasks' task.json: its field names, order and types, return codes as Python reports them", () => {
  const t = toIctasksTask(record(), 4)
  assert.deepEqual(Object.keys(t), ['id', 'launch_cmd', 'state', 'return_code', 'launch_time', 'finish_time', 'worker_id', 'host_id', 'pid', 'host'])
  assert.deepEqual(t, { id: '3', launch_cmd: './sim 3', state: 'finished', return_code: 0, launch_time: 1767323045.25, finish_time: 1767323047.75, worker_id: -1, host_id: 4, pid: 0, host: 'ws-12' })
  assert.equal(toIctasksTask(record({ name: 'my-run' }), 0).id, 'my-run')
  assert.equal(returnCode({ exitCode: 3, signal: null, state: 'failed' }), 3)
  assert.equal(returnCode({ exitCode: null, signal: 'SIGKILL', state: 'failed' }), -9)
  assert.equal(returnCode({ exitCode: null, signal: null, state: 'failed' }), 1)
  const lost = toIctasksTask(record({ state: 'failed', exitCode: null, start: null, end: null, host: null, failure: { kind: 'staging', message: 'staging failed: disk', retryable: true } }), -1)
  assert.deepEqual([lost.state, lost.return_code, lost.launch_time, lost.finish_time, lost.failure], ['finished', 1, 0, 0, 'staging failed: disk'])
  assert.equal(toIctasksTask(record({ state: 'cancelled' }), 0).state, 'cancelled')
  assert.equal(toIctasksTask(record({ commands: ['a', 'b'] }), 0).launch_cmd, 'a && b')
})

test('the ictasks layout: task_<id>/ with task.json, task_stdout.txt, task_stderr.txt and the outputs; hosts numbered in order', () => {
  const p = placeRecord('/r', 'ictasks', record(), { hostId: 0 })
  assert.equal(p.jsonPath, '/r/task_3/task.json')
  assert.deepEqual(p.targets.map(x => x.path), ['/r/task_3/task_stdout.txt', '/r/task_3/task_stderr.txt', '/r/task_3/out.txt'])
  assert.match(p.json, /^\{\n {4}"id": "3",\n {4}"launch_cmd"/, 'four-space indents as ictasks writes it')
  const named = placeRecord('/r', 'ictasks', record({ name: 'a/b' }), { logNames: { stdout: 'o.log', stderr: 'e.log' } })
  assert.deepEqual(named.targets.map(x => x.path).slice(0, 2), ['/r/task_a_b/o.log', '/r/task_a_b/e.log'])
  assert.equal(placeRecord('/r', 'per-task', record()).jsonPath, '/r/task-3/task.json', 'the default layout is unchanged')
  const hosts = new HostNumbers({ 0: 'ws-1' })
  assert.deepEqual([hosts.idOf('ws-2'), hosts.idOf('ws-1'), hosts.idOf('ws-2'), hosts.idOf(null)], [{ id: 1, added: true }, { id: 0, added: false }, { id: 1, added: false }, { id: -1, added: false }])
  assert.deepEqual(hosts.toJson(), { 0: 'ws-1', 1: 'ws-2' })
})
