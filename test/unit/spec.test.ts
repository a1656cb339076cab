import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseJobFile, type ParsedJob } from '../../shared/spec.ts'
import { isMeshfarmError } from '../../shared/errors.ts'

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

/** The one-line error a user sees for a bad job file. */
function errorOf (files: Record<string, string>): string {
  try {
    parse(files)
  } catch (err) {
    assert.ok(isMeshfarmError(err), `not a MeshfarmError: ${String(err)}`)
    assert.equal(err.message.includes('\n'), false, 'one line')
    return err.message
  }
  assert.fail('the job file was accepted')
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
  assert.deepEqual(job.tasks[3].params, { x: 2, y: 5 })
  assert.deepEqual(job.shared.map(s => s.name), ['model.bin'])
})

test('a zip sweep pairs the lists side by side', () => {
  const job = parse({ 'z.yaml': 'sweep:\n  mode: zip\n  parameters: { a: [1, 2], b: [x, y] }\n  task: { command: "echo {a}{b}" }\n' })
  assert.deepEqual(job.tasks.map(t => t.commands[0]), ['echo 1x', 'echo 2y'])
})

test('a tasklist: one command per line, comments and blank lines skipped, backslash continues a line', () => {
  const job = parse({ 'tasks.txt': '# a comment\n\necho one\necho two \\\n  and more\n\n./three.sh\n' }, { cores: 2 })
  assert.deepEqual(job.tasks.map(t => t.commands[0]), ['echo one', 'echo two    and more', './three.sh'])
  assert.equal(job.name, 'tasks')
  assert.ok(job.tasks.every(t => t.cores === 2), 'command-line defaults apply')
})

test('each bad job file gets one line naming the file and the field', () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ 'j.yaml': 'tasks:\n  - command: a\n    cores: -1\n' }, /j\.yaml: tasks\[0\]\.cores: must be a whole number >= 1, got -1/],
    [{ 'j.yaml': 'tasks:\n  - command: a\n    coers: 2\n' }, /tasks\[0\]\.coers: unknown key \(did you mean 'cores'\?\)/],
    [{ 'j.yaml': 'tasks:\n  - name: nothing\n' }, /tasks\[0\]: needs a 'command'/],
    [{ 'j.yaml': 'tasks: [\n' }, /j\.yaml: line \d+: /],
    [{ 'j.yaml': 'tasks:\n  - command: a\n    inputs: [missing.dat]\n' }, /tasks\[0\]\.inputs\[0\]: no such file "missing.dat"/],
    [{ 'j.yaml': 'tasks:\n  - command: a\n    outputs: [../escape]\n' }, /outputs\[0\]: must be a relative name inside the task folder/],
    [{ 'j.yaml': 'sweep:\n  parameters: { x: [1] }\n  task: { command: "run {y}" }\n' }, /sweep\.task\.command: unknown placeholder \{y\}/],
    [{ 'j.yaml': 'sweep:\n  parameters: { x: { range: [0, 10, 0] } }\n  task: { command: "run" }\n' }, /sweep\.parameters\.x\.range: must be \[start, stop, step\]/],
    [{ 'j.yaml': 'tasks:\n  - command: a\n    timeout: soon\n' }, /tasks\[0\]\.timeout: /],
    [{ 'j.yaml': 'name: empty\n' }, /tasks: the job has no tasks/],
    [{ 'j.yaml': 'layout: sideways\ntasks: [{ command: a }]\n' }, /layout: must be per-task or flat/],
    [{ 'j.txt': '# only a comment\n' }, /j\.txt: line 1: the tasklist has no commands/]
  ]
  for (const [files, want] of cases) assert.match(errorOf(files), want)
})

test('a job file that does not exist is one clear line', () => {
  assert.throws(() => parseJobFile('/nonexistent/job.yaml'), /\/nonexistent\/job\.yaml: no such file/)
})
