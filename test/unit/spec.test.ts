import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expandSweep, parseJobFile, type ParsedJob } from '../../shared/client/spec.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'

/** A job folder with the given files; returns the parsed job file (the first entry). */
function withFiles (files: Record<string, string>, fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-spec-'))
  try {
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(dir, name, '..'), { recursive: true })
      writeFileSync(join(dir, name), text)
    }
    fn(dir)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

function parse (files: Record<string, string>, overrides = {}): ParsedJob {
  let job: ParsedJob | undefined
  withFiles(files, dir => { job = parseJobFile(join(dir, Object.keys(files)[0]), overrides) })
  return job!
}

/** The one-line error a user sees for a bad job file; it starts with the file's path. */
function errorOf (files: Record<string, string>, code = 'SPEC_INVALID'): string {
  const file = Object.keys(files)[0]
  try {
    parse(files)
  } catch (err) {
    assert.ok(isMeshfarmError(err), `not a MeshfarmError: ${String(err)}`)
    assert.equal(err.message.includes('\n'), false, `one line: ${err.message}`)
    assert.ok(err.message.includes(`${file}: `), `names the file: ${err.message}`)
    assert.ok(err.message.startsWith(tmpdir()), `the file's full path: ${err.message}`)
    assert.equal(err.code, code, err.message)
    return err.message
  }
  assert.fail(`the job file was accepted: ${JSON.stringify(files)}`)
}

test('a YAML task list: commands, defaults, per-task overrides, env, outputs', () => {
  const job = parse({
    'job.yaml': `name: analysis
label: run 7
defaults: { cores: 2, memory: 1G, timeout: 10m, env: { MODE: fast } }
tasks:
  - name: first
    command: ./run.sh a
    outputs: [a.out, "*.log"]
  - name: second
    commands: [./prep.sh, ./run.sh b]
    cores: 4
    timeout: 90s
    env: { MODE: slow, EXTRA: "1" }
`
  })
  assert.equal(job.name, 'analysis')
  assert.equal(job.label, 'run 7')
  assert.equal(job.tasks.length, 2)
  const [a, b] = job.tasks
  assert.deepEqual(a.commands, ['./run.sh a'])
  assert.equal(a.cores, 2)
  assert.equal(a.memoryMb, 1024)
  assert.equal(a.timeoutMs, 600_000)
  assert.deepEqual(a.env, { MODE: 'fast' })
  assert.deepEqual(a.outputs, ['a.out', '*.log'])
  assert.deepEqual(b.commands, ['./prep.sh', './run.sh b'])
  assert.equal(b.cores, 4)
  assert.equal(b.timeoutMs, 90_000)
  assert.deepEqual(b.env, { MODE: 'slow', EXTRA: '1' })
  assert.deepEqual(job.tasks.map(t => t.index), [0, 1])
})

test("defaults: the file's defaults apply to every task, a task's own fields win, command-line overrides beat the file", () => {
  const files = {
    'd.yaml': `defaults:
  cores: 2
  gpus: 1
  memory: 2G
  timeout: 1h
  env: { A: "1", B: "2" }
  constraints: { os: linux }
  affinity: "grp-{index}"
tasks:
  - command: plain
  - command: own
    cores: 8
    gpus: 0
    memory: 300M
    timeout: 45
    env: { B: "20", C: "{index}" }
    constraints: { gpu: a100 }
    affinity: fixed
`
  }
  const job = parse(files)
  const [plain, own] = job.tasks
  assert.deepEqual(
    { cores: plain.cores, gpus: plain.gpus, memoryMb: plain.memoryMb, timeoutMs: plain.timeoutMs, env: plain.env, constraints: plain.constraints, affinity: plain.affinity },
    { cores: 2, gpus: 1, memoryMb: 2048, timeoutMs: 3_600_000, env: { A: '1', B: '2' }, constraints: { os: 'linux' }, affinity: 'grp-0' })
  assert.deepEqual(
    { cores: own.cores, gpus: own.gpus, memoryMb: own.memoryMb, timeoutMs: own.timeoutMs, env: own.env, constraints: own.constraints, affinity: own.affinity },
    { cores: 8, gpus: 0, memoryMb: 300, timeoutMs: 45_000, env: { A: '1', B: '20', C: '1' }, constraints: { os: 'linux', gpu: 'a100' }, affinity: 'fixed' })
  assert.equal(plain.name, 'task-0', 'a task without a name is named after its index')
  assert.equal(job.name, 'd', 'a job without a name is named after its file')
  assert.equal(job.layout, 'per-task')
  assert.equal(job.retries, 0)

  // Command-line overrides replace the file's defaults (and merge into its maps), not a task's own values.
  const over = parse(files, { cores: 4, memoryMb: 100, env: { B: 'cli' }, constraints: { zone: 'x' }, name: 'renamed', layout: 'flat', retries: 3 })
  assert.equal(over.tasks[0].cores, 4)
  assert.equal(over.tasks[0].memoryMb, 100)
  assert.equal(over.tasks[0].gpus, 1, 'not overridden: the file default stays')
  assert.deepEqual(over.tasks[0].env, { A: '1', B: 'cli' })
  assert.deepEqual(over.tasks[0].constraints, { os: 'linux', zone: 'x' })
  assert.equal(over.tasks[1].cores, 8, "a task's own cores beat the command line")
  assert.deepEqual([over.name, over.layout, over.retries], ['renamed', 'flat', 3])

  // Nothing given at all: one core, no GPUs, no memory reservation, no timeout.
  const bare = parse({ 'b.yaml': 'tasks: [{ command: x }]\n' }).tasks[0]
  assert.deepEqual([bare.cores, bare.gpus, bare.memoryMb, bare.timeoutMs, bare.env, bare.constraints, bare.affinity], [1, 0, 0, 0, {}, {}, undefined])
})

test('sizes and durations in their usual spellings', () => {
  const job = parse({
    'u.yaml': `tasks:
  - { command: a, memory: 512M, timeout: 500ms }
  - { command: b, memory: 1.5GiB, timeout: 1.5h }
  - { command: c, memory: 2048k, timeout: 2d }
  - { command: d, memory: 64, timeout: "30" }
`
  })
  assert.deepEqual(job.tasks.map(t => t.memoryMb), [512, 1536, 2, 64])
  assert.deepEqual(job.tasks.map(t => t.timeoutMs), [500, 5_400_000, 172_800_000, 30_000])
})

test('shared files belong to the job, inputs to their task', () => {
  const job = parse({
    'j.yaml': `shared: [data/model.bin, { src: data/vocab.txt, as: words.txt }]
tasks:
  - command: a
    inputs: [data/a.txt]
  - command: b
    inputs: [{ src: data/a.txt, as: sub/renamed.txt }, data/b.txt]
  - command: c
`,
    'data/model.bin': 'm',
    'data/vocab.txt': 'v',
    'data/a.txt': 'a',
    'data/b.txt': 'b'
  })
  assert.deepEqual(job.shared.map(s => s.name), ['model.bin', 'words.txt'])
  assert.ok(job.shared.every(s => s.src.startsWith(tmpdir()) && s.src.includes('/data/')), 'sources are absolute, beside the job file')
  assert.deepEqual(job.tasks.map(t => t.inputs.map(i => i.name)), [['a.txt'], ['sub/renamed.txt', 'b.txt'], []])
  assert.equal(job.tasks[1].inputs[0].src, job.tasks[0].inputs[0].src, 'one source, two names')
  assert.ok(job.tasks.every(t => t.inputs.every(i => !i.name.startsWith('model'))), 'shared files are not copied into task inputs')
})

test('a sweep expands to the cartesian product, with placeholders in names, commands and inputs', () => {
  const files: Record<string, string> = {
    'sweep.yaml': `name: sweep
shared: [model.bin]
sweep:
  parameters:
    x: [1, 2, 3]
    y: { range: [0, 10, 5] }
  task:
    name: "p-{x}-{y}"
    command: "sim --x {x} --y {y} --task {index} > out_{x}_{y}.txt"
    inputs: ["in/in_{x}.txt", { src: "in/in_{x}.txt", as: "copy_{y}.txt" }]
    outputs: ["out_{x}_{y}.txt"]
`,
    'model.bin': 'model',
    'in/in_1.txt': '1',
    'in/in_2.txt': '2',
    'in/in_3.txt': '3'
  }
  const job = parse(files)
  assert.equal(job.tasks.length, 6, '3 x values times 2 y values')
  assert.deepEqual(job.tasks.map(t => t.name), ['p-1-0', 'p-1-5', 'p-2-0', 'p-2-5', 'p-3-0', 'p-3-5'])
  assert.equal(job.tasks[3].commands[0], 'sim --x 2 --y 5 --task 3 > out_2_5.txt')
  assert.deepEqual(job.tasks[3].inputs.map(i => i.name), ['in_2.txt', 'copy_5.txt'])
  assert.ok(job.tasks[3].inputs[0].src.endsWith('in/in_2.txt'))
  assert.deepEqual(job.tasks[3].outputs, ['out_2_5.txt'])
  assert.deepEqual(job.tasks[3].params, { x: 2, y: 5 })
  assert.deepEqual(job.shared.map(s => s.name), ['model.bin'])
  // Every point exactly once.
  const points = job.tasks.map(t => `${String(t.params!.x)},${String(t.params!.y)}`)
  assert.equal(new Set(points).size, 6)
})

test('a bigger product: the count is the product of the list lengths and every combination appears once', () => {
  const job = parse({
    's.yaml': `defaults: { cores: 3 }
sweep:
  parameters: { a: [p, q, r, s], b: { range: [10, 0, -2] }, c: [true, false] }
  task: { commands: ["prep {a}", "run {a} {b} {c} > o_{index}.txt"], outputs: ["o_{index}.txt"], env: { B: "{b}" } }
`
  })
  assert.equal(job.tasks.length, 4 * 5 * 2)
  const seen = new Set<string>()
  for (const [i, t] of job.tasks.entries()) {
    const { a, b, c } = t.params!
    assert.ok(['p', 'q', 'r', 's'].includes(a as string))
    assert.ok([10, 8, 6, 4, 2].includes(b as number), `range values, stop excluded: ${String(b)}`)
    assert.deepEqual(t.commands, [`prep ${String(a)}`, `run ${String(a)} ${String(b)} ${String(c)} > o_${i}.txt`])
    assert.deepEqual(t.outputs, [`o_${i}.txt`])
    assert.equal(t.env.B, String(b))
    assert.equal(t.cores, 3, 'defaults apply to sweep tasks')
    assert.equal(t.index, i)
    seen.add(`${String(a)}/${String(b)}/${String(c)}`)
  }
  assert.equal(seen.size, 40)
  assert.deepEqual(expandSweep({ a: [1, 2], b: ['x', 'y', 'z'] }, 'product').length, 6)
  assert.deepEqual(expandSweep({ a: [1, 2], b: ['x', 'y'] }, 'zip'), [{ a: 1, b: 'x' }, { a: 2, b: 'y' }])
})

test('a zip sweep pairs the lists side by side', () => {
  const job = parse({ 'z.yaml': 'sweep:\n  mode: zip\n  parameters: { a: [1, 2], b: [x, y] }\n  task: { command: "echo {a}{b}" }\n' })
  assert.deepEqual(job.tasks.map(t => t.commands[0]), ['echo 1x', 'echo 2y'])
})

test('a glob parameter sweeps over the matching files, in sorted order, usable as inputs', () => {
  const job = parse({
    'g.yaml': `sweep:
  parameters: { f: { glob: "inputs/*.txt" } }
  task: { name: "do-{f}", command: "wc -l {f}", inputs: ["{f}"] }
`,
    'inputs/b.txt': 'b',
    'inputs/a.txt': 'a',
    'inputs/c.dat': 'not matched'
  })
  assert.deepEqual(job.tasks.map(t => t.commands[0]), ['wc -l inputs/a.txt', 'wc -l inputs/b.txt'])
  assert.deepEqual(job.tasks.map(t => t.inputs[0].name), ['a.txt', 'b.txt'])
})

test("explicit tasks and a sweep together: the sweep's indexes follow the tasks; {{ and }} are literal braces", () => {
  const job = parse({
    'm.yaml': `tasks:
  - { name: setup, command: "awk '{{print $1}}' x" }
  - { command: "echo {index}" }
sweep:
  parameters: { n: [7, 8] }
  task: { name: "n{n}", command: "echo {n} {index}" }
`
  })
  assert.deepEqual(job.tasks.map(t => [t.index, t.name, t.commands[0]]), [
    [0, 'setup', "awk '{print $1}' x"],
    [1, 'task-1', 'echo 1'],
    [2, 'n7', 'echo 7 2'],
    [3, 'n8', 'echo 8 3']
  ])
  assert.equal(job.tasks[0].params, undefined, 'explicit tasks have no sweep parameters')
})

test('the ictasks form of a task list: tasks.items with id and launch_cmd', () => {
  const job = parse({ 'i.yaml': 'job_id: legacy\ntasks:\n  items:\n    - { id: t1, launch_cmd: "echo 1" }\n    - { id: t2, launch_cmd: "echo 2" }\n' })
  assert.equal(job.name, 'legacy')
  assert.deepEqual(job.tasks.map(t => [t.name, t.commands[0]]), [['t1', 'echo 1'], ['t2', 'echo 2']])
})

test('a tasklist: one command per line, comments and blank lines skipped, backslash continues a line; names keep ictasks numbers', () => {
  const job = parse({ 'tasks.txt': '# a comment\n\necho one\necho two \\\n  and more\n\n./three.sh {index}\r\n  # indented comment\n' }, { cores: 2 })
  assert.deepEqual(job.tasks.map(t => t.commands[0]), ['echo one', 'echo two    and more', './three.sh 2'])
  // ictasks numbers non-blank lines, comments included (it runs them as do-nothing tasks): task-N keeps that N.
  assert.deepEqual(job.tasks.map(t => t.name), ['task-1', 'task-2', 'task-4'])
  assert.equal(job.name, 'tasks')
  assert.deepEqual(job.shared, [])
  assert.ok(job.tasks.every(t => t.cores === 2), 'command-line defaults apply')
})

test('a tasklist error names the line of the file the command is on', () => {
  // Line 1 is a comment, line 2 blank, line 3 a good command, lines 4-5 one continued command, line 6 the bad one.
  const msg = errorOf({ 'l.tasks': '# header\n\necho ok\necho long \\\n  continued\necho {oops}\n' })
  assert.match(msg, /l\.tasks: line 6\.command: unknown placeholder \{oops\}/)
  assert.match(errorOf({ 'l.tasks': '\n\necho ok \\\n  {bad}\n' }), /l\.tasks: line 3\.command: unknown placeholder \{bad\}/)
})

test('each bad job file gets one line naming the file and the field', () => {
  const cases: Array<[string, RegExp]> = [
    ['tasks:\n  - command: a\n    cores: -1\n', /j\.yaml: tasks\[0\]\.cores: must be a whole number >= 1, got -1/],
    ['tasks:\n  - command: a\n    cores: two\n', /j\.yaml: tasks\[0\]\.cores: must be a whole number >= 1, got "two"/],
    ['tasks:\n  - command: a\n    cores: 1.5\n', /tasks\[0\]\.cores: must be a whole number >= 1, got 1\.5/],
    ['tasks:\n  - command: a\n    gpus: -1\n', /tasks\[0\]\.gpus: must be a whole number >= 0, got -1/],
    ['tasks:\n  - command: a\n  - command: b\n    memory: -5\n', /tasks\[1\]\.memory: must be a size like 512M or 2G, got -5/],
    ['tasks:\n  - command: a\n    timeout: soon\n', /tasks\[0\]\.timeout: must be a duration/],
    ['tasks:\n  - command: a\n    coers: 2\n', /tasks\[0\]\.coers: unknown key \(did you mean 'cores'\?\)/],
    ['nmae: x\ntasks: [{ command: a }]\n', /j\.yaml: nmae: unknown key \(did you mean 'name'\?\)/],
    ['defaults: { cors: 2 }\ntasks: [{ command: a }]\n', /defaults\.cors: unknown key/],
    ['defaults: { cores: 0 }\ntasks: [{ command: a }]\n', /defaults\.cores: must be a whole number >= 1, got 0/],
    ['defaults: { memory: lots }\ntasks: [{ command: a }]\n', /defaults\.memory: must be a size/],
    ['tasks:\n  - name: nothing\n', /tasks\[0\]: needs a 'command'/],
    ['tasks:\n  - { command: a, commands: [b] }\n', /tasks\[0\]: give either 'command' or 'commands', not both/],
    ['tasks:\n  - { command: "   " }\n', /tasks\[0\]\.command: must be a non-empty string/],
    ['tasks:\n  - { commands: [] }\n', /tasks\[0\]\.commands: must be a non-empty list/],
    ['tasks:\n  - { commands: [a, 3] }\n', /tasks\[0\]\.commands\[1\]: must be a non-empty string, got 3/],
    ['tasks:\n  - { command: a, env: { X: [1] } }\n', /tasks\[0\]\.env\.X: must be a string, number or boolean/],
    ['tasks: [\n', /j\.yaml: line \d+: /],
    ['tasks:\n  - command: a\n   cores: 2\n', /j\.yaml: line 3: /],
    ['tasks:\n  - command: a\n    cores: 2\n    cores: 3\n', /j\.yaml: line 4: .*unique/],
    ['- a\n- b\n', /j\.yaml: \(top\): a job file is a map/],
    ['tasks:\n  - command: a\n    outputs: [../escape]\n', /tasks\[0\]\.outputs\[0\]: must be a relative name inside the task folder/],
    ['tasks:\n  - command: a\n    outputs: [/abs/path]\n', /tasks\[0\]\.outputs\[0\]: must be a relative name inside the task folder/],
    ['sweep:\n  parameters: { x: [1] }\n  task: { command: "run {y}" }\n', /sweep\.task\.command: unknown placeholder \{y\}/],
    ['sweep:\n  parameters: { x: [1] }\n  task: { command: "run", name: "n-{xx}" }\n', /sweep\.task\.name: unknown placeholder \{xx\} \(did you mean 'x'\?\)/],
    ['sweep:\n  parameters: { x: { range: [0, 10, 0] } }\n  task: { command: "run" }\n', /sweep\.parameters\.x\.range: must be \[start, stop, step\]/],
    ['sweep:\n  parameters: { x: { range: [5, 5] } }\n  task: { command: "run" }\n', /sweep\.parameters\.x\.range: is empty/],
    ['sweep:\n  parameters: { x: [] }\n  task: { command: "run" }\n', /sweep\.parameters\.x: must list at least one value/],
    ['sweep:\n  parameters: { x: { glob: "nothing/*.txt" } }\n  task: { command: "run" }\n', /sweep\.parameters\.x\.glob: matches no file/],
    ['sweep:\n  parameters: { index: [1] }\n  task: { command: "run" }\n', /sweep\.parameters\.index: 'index' is reserved/],
    ['sweep:\n  mode: cross\n  parameters: { x: [1] }\n  task: { command: "run" }\n', /sweep\.mode: must be product or zip, got "cross"/],
    ['sweep:\n  mode: zip\n  parameters: { x: [1, 2], y: [1] }\n  task: { command: "run" }\n', /sweep\.parameters: zip needs lists of the same length/],
    ['sweep:\n  parameters: { x: [1] }\n', /sweep\.task: is missing/],
    ['sweep:\n  parameters: {}\n  task: { command: "run" }\n', /sweep\.parameters: must map each parameter name/],
    ['name: empty\n', /tasks: the job has no tasks/],
    ['layout: sideways\ntasks: [{ command: a }]\n', /layout: must be per-task, flat or ictasks, got "sideways"/],
    ['retries: -1\ntasks: [{ command: a }]\n', /retries: must be a whole number >= 0, got -1/]
  ]
  for (const [text, want] of cases) assert.match(errorOf({ 'j.yaml': text }), want)
  assert.match(errorOf({ 'j.txt': '# only a comment\n' }), /j\.txt: line 1: the tasklist has no commands/)
})

test('input files: missing ones, ones that would leave the task folder and clashing names are one line each', () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ 'j.yaml': 'tasks:\n  - command: a\n    inputs: [missing.dat]\n' }, /j\.yaml: tasks\[0\]\.inputs\[0\]: no such file "missing\.dat"/],
    [{ 'j.yaml': 'shared: [here.bin, gone.bin]\ntasks: [{ command: a }]\n', 'here.bin': 'x' }, /j\.yaml: shared\[1\]: no such file "gone\.bin"/],
    [{ 'j.yaml': 'sweep:\n  parameters: { x: [1, 2] }\n  task: { command: a, inputs: ["in_{x}.txt"] }\n', 'in_1.txt': '1' }, /sweep\.task\.inputs\[0\]: no such file "in_2\.txt"/],
    [{ 'j.yaml': 'tasks:\n  - command: a\n    inputs: [sub]\n', 'sub/file': 'a folder is not a file' }, /tasks\[0\]\.inputs\[0\]: no such file "sub"/]
  ]
  for (const [files, want] of cases) assert.match(errorOf(files, 'FILE_MISSING'), want)
  // Inputs must also land inside the task folder, under distinct names.
  assert.match(errorOf({ 'j.yaml': 'tasks:\n  - command: a\n    inputs: [{ src: a.txt, as: ../up.txt }]\n', 'a.txt': 'a' }),
    /tasks\[0\]\.inputs\[0\]: must be a relative name inside the task folder/)
  assert.match(errorOf({ 'j.yaml': 'tasks:\n  - command: a\n    inputs: [x/a.txt, y/a.txt]\n', 'x/a.txt': '1', 'y/a.txt': '2' }),
    /tasks\[0\]\.inputs\[1\]: two inputs are named "a\.txt"/)
})

test('a sweep too large is refused by its size alone, before it is expanded', () => {
  assert.match(errorOf({ 'j.yaml': 'sweep:\n  parameters: { a: { range: [0, 5000] }, b: { range: [0, 5000] } }\n  task: { command: "x {a} {b}" }\n' }),
    /j\.yaml: sweep\.parameters: the sweep has 25,000,000 points, more than 10,000,000/)
  assert.match(errorOf({ 'j.yaml': 'sweep:\n  parameters: { a: { range: [0, 1e12] } }\n  task: { command: "x {a}" }\n' }),
    /j\.yaml: sweep\.parameters\.a\.range: more than 10,000,000 values/)
})

test('a job file that does not exist is one clear line', () => {
  assert.throws(() => parseJobFile('/nonexistent/job.yaml'), (err: unknown) => isMeshfarmError(err) && err.code === 'FILE_MISSING' && /\/nonexistent\/job\.yaml: no such file/.test(err.message))
})

test('shell braces are not placeholders: ${VAR}, awk programs and brace lists pass through', () => {
  const job = parse({ 'shell.txt': "echo ${HOME} {index} | awk '{print $1}' && ls {a,b}.txt\n" })
  assert.equal(job.tasks[0].commands[0], "echo ${HOME} 0 | awk '{print $1}' && ls {a,b}.txt")
})
