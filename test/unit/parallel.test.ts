import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseParallelArgv, type ParallelIo } from '../../shared/client/parallel-args.ts'
import { buildParallelJob, jobLines, parallelExitCode, perlDirname, placeParallelRecord, shellQuote } from '../../shared/client/parallel.ts'
import { formatJoblogLine, joblogEntry, joblogStart, JOBLOG_HEADER, resumeSkips } from '../../shared/client/joblog.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'
import type { TaskRecord } from '../../shared/protocol/messages.ts'
import type { Captured } from '../fixtures/parallel/capture.ts'

const EXPECTED = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'parallel', 'expected.json'), 'utf8')) as { parallel: string, cases: Captured[] }

function io (files: Record<string, string> = {}, stdin = ''): ParallelIo {
  return {
    readArgFile: p => {
      if (!(p in files)) throw Object.assign(new Error('missing'), { code: 'ENOENT' })
      return files[p]
    },
    readStdin: () => stdin
  }
}

function failure (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    assert.ok(isMeshfarmError(err), String(err))
    assert.equal(err.message.includes('\n'), false)
    return err.message
  }
  return assert.fail('accepted')
}

test(`command lines expand exactly as ${EXPECTED.parallel} --dry-run expands them (captured in test/fixtures/parallel)`, () => {
  assert.ok(EXPECTED.cases.length >= 20)
  for (const c of EXPECTED.cases) {
    const argv = parseParallelArgv(c.argv, io(c.files, c.stdin))
    assert.deepEqual(jobLines(argv).map(l => l.command), c.lines, JSON.stringify(c.argv))
  }
})

test("shell quoting and dirname as parallel's perl does them", () => {
  assert.deepEqual(['abc', 'a b', "it's", '', "'", 'a/b.c-d+e_f'].map(shellQuote), ['abc', "'a b'", `'it'"'"'s'`, "''", `"'"`, 'a/b.c-d+e_f'])
  assert.deepEqual(['a', '/a', 'a/b', 'a/b/', 'dir/', '/', '', 'a//b', '//x'].map(perlDirname), ['.', '/', 'a', 'a', '.', '/', '.', 'a', '/'])
})

test('options: -j per agent or as a share of cores, joblog and resume, returns, halt, retries and timeouts; bad ones are one line', () => {
  const o = parseParallelArgv(['-j4', '--joblog', 'log.tsv', '--resume-failed', '--bar', '--trc', '{}.xz', '--halt', 'now,fail=10%', '--retries', '3', '--timeout', '90', 'xz', ':::', 'a'], io()).options
  assert.deepEqual(o, { perAgent: 4, joblog: 'log.tsv', resume: false, resumeFailed: true, bar: true, dryRun: false, keepOrder: false, returns: ['{}.xz'], halt: { when: 'now', on: 'fail', percent: 10 }, retries: 2, timeoutMs: 90_000 })
  assert.equal(parseParallelArgv(['-j', '50%', 'x', ':::', 'a'], io()).options.coresPerTask, 2)
  assert.equal(parseParallelArgv(['--jobs=0', 'x', ':::', 'a'], io()).options.perAgent, undefined, '-j 0: as many as the agents take')
  assert.deepEqual(parseParallelArgv(['--halt', '2', 'x', ':::', 'a'], io()).options.halt, { when: 'now', on: 'fail', count: 1 })
  const cases: Array<[string[], RegExp]> = [
    [['--colsep', ',', 'x', ':::', 'a'], /meshfarm parallel: --colsep: not supported \(supported: -j, --joblog/],
    [['-j', '+2', 'x', ':::', 'a'], /-j \+2: relative job counts have no meaning on a mesh/],
    [['-j', 'many', 'x', ':::', 'a'], /-j: expected a whole number >= 0, got "many"/],
    [['--resume', 'x', ':::', 'a'], /--resume and --resume-failed need --joblog FILE/],
    [['--halt', 'sometimes', 'x', ':::', 'a'], /--halt sometimes: expected never, now\|soon/],
    [['x', '::::', 'nope.txt'], /meshfarm parallel: :::: nope\.txt: no such file/],
    [['x', ':::+', 'a'], /:::\+ links a source to the one before, but there is none/],
    [['--joblog'], /--joblog needs a value/],
    [['echo {%}', ':::', 'a'], /\{%\} \(the job slot\) has no meaning on a mesh/],
    [['echo {= s/a/b/ =}', ':::', 'a'], /perl expressions are not supported/],
    [['echo {3}', ':::', 'a', ':::', 'b'], /\{3\}: there are 2 input sources/]
  ]
  for (const [argv, want] of cases) assert.match(failure(() => jobLines(parseParallelArgv(argv, io()))), want)
})

test('a job: file arguments staged at the same relative path, default and --return outputs, Seq kept on resume', () => {
  const files = new Set(['/w/a.dat', '/w/data/b.dat', '/abs/c.dat', '/w/../outside.dat'])
  const jio = { cwd: '/w', isFile: (p: string) => files.has(p) || p === '/outside.dat' }
  const plan = buildParallelJob(parseParallelArgv(['-j', '1', 'xz -k {}', ':::', 'a.dat', 'data/b.dat', '/abs/c.dat', 'no-such-file'], io()), jio, new Set([2]))
  assert.deepEqual(plan.seqOf, [1, 3, 4], 'Seq 2 is done: skipped, the others keep their Seq')
  const [a, c, none] = plan.job.tasks
  assert.deepEqual([a.name, a.commands, a.inputs, a.outputs], ['seq-1', ['xz -k a.dat'], [{ src: '/w/a.dat', name: 'a.dat' }], ['*']])
  assert.deepEqual(plan.lines[1], { seq: 2, args: ['data/b.dat'], command: 'xz -k data/b.dat' })
  assert.deepEqual([c.inputs, c.commands], [[], ['xz -k /abs/c.dat']], 'an absolute path is left for a shared file system')
  assert.deepEqual(none.inputs, [])
  assert.equal(plan.job.perAgent, 1)
  assert.equal(plan.job.layout, 'flat')
  const sub = buildParallelJob(parseParallelArgv(['xz -k {}', ':::', 'data/b.dat'], io()), jio)
  assert.deepEqual([sub.job.tasks[0].inputs[0].name, sub.job.tasks[0].outputs], ['data/b.dat', ['*', 'data/*']], 'new files beside the input come back')
  const ret = buildParallelJob(parseParallelArgv(['--return', '{}.xz', '--return', 'logs/{#}.log', 'xz {}', ':::', 'data/b.dat'], io()), jio)
  assert.deepEqual(ret.job.tasks[0].outputs, ['data/b.dat.xz', 'logs/1.log'], '--return patterns filled unquoted')
  assert.match(failure(() => buildParallelJob(parseParallelArgv(['cat', ':::', '../outside.dat'], io()), jio)), /\.\.\/outside\.dat: names a file outside this folder/)
  assert.match(failure(() => buildParallelJob(parseParallelArgv(['--return', '../x', 'cat', ':::', 'a'], io()), jio)), /--return \.\.\/x: "\.\.\/x" is not a relative path inside this folder/)
})

function record (over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    jobId: 1, index: 0, id: '1.0', name: 'seq-1', commands: ['xz -k a.dat'], state: 'done', host: 'ws-3', peerId: 'p',
    resources: { cores: 1, gpus: [], memoryMb: 0 }, start: '2026-11-22T10:00:00.123Z', end: '2026-11-22T10:00:01.5Z', durationMs: 1377.9,
    exitCode: 0, signal: null, attempts: 1, outputs: [{ name: 'a.dat.xz', hash: 'x', size: 100 }, { name: 'a.dat', hash: 'y', size: 50 }],
    stdout: { name: '.meshfarm/stdout', hash: 's', size: 7 }, stderr: { name: '.meshfarm/stderr', hash: 'e', size: 0 }, ...over
  }
}

test("the joblog in parallel's format; a failed, a timed-out, a signalled and a never-run task", () => {
  const line = formatJoblogLine(joblogEntry(record(), 1, 'xz -k a.dat', 50)!)
  assert.equal(line, '1\tws-3\t1795341600.123\t     1.377\t50\t157\t0\t0\txz -k a.dat\n')
  const fail = joblogEntry(record({ exitCode: 3, state: 'failed' }), 2, 'false', 0)!
  assert.deepEqual([fail.exitval, fail.signal], [3, 0])
  const timeout = joblogEntry(record({ exitCode: null, signal: null, state: 'failed', failure: { kind: 'timeout', message: 't', retryable: false } }), 3, 'sleep 9', 0)!
  assert.deepEqual([timeout.exitval, timeout.signal], [-1, 15], 'parallel logs a job it killed for its timeout as -1, SIGTERM')
  const killed = joblogEntry(record({ exitCode: null, signal: 'SIGKILL', state: 'failed' }), 4, 'x', 0)!
  assert.deepEqual([killed.exitval, killed.signal], [0, 9])
  assert.equal(joblogEntry(record({ state: 'cancelled', start: null }), 5, 'x', 0), null)
  assert.equal(formatJoblogLine({ ...fail, command: 'a\nb' }).endsWith('\ta\u0000b\n'), true, 'a newline in a command is written as NUL')
  assert.deepEqual(joblogStart(null, true), { append: false, text: JOBLOG_HEADER })
  assert.deepEqual(joblogStart('Seq\t...\n', true), { append: true, text: '' })
  assert.deepEqual(joblogStart('Seq\t...\n', false), { append: false, text: JOBLOG_HEADER })
})

test('resume reads a joblog as parallel does: every Seq, or only those that exited 0 with no signal; a malformed line stops it', () => {
  const log = JOBLOG_HEADER + [
    formatJoblogLine(joblogEntry(record(), 1, 'ok', 0)!),
    formatJoblogLine(joblogEntry(record({ exitCode: 1, state: 'failed' }), 2, 'bad', 0)!),
    formatJoblogLine(joblogEntry(record({ exitCode: null, signal: 'SIGKILL', state: 'failed' }), 3, 'killed', 0)!),
    '5\t:\t1795417390.053\t     0.002\t0\t2\t0\t0\techo from GNU parallel itself\n'
  ].join('')
  assert.deepEqual([...resumeSkips(log, 'j.log', 'resume')], [1, 2, 3, 5])
  assert.deepEqual([...resumeSkips(log, 'j.log', 'resume-failed')], [1, 5])
  assert.deepEqual([...resumeSkips('7\t:\t1.000\t     0.001\t0\t0\t0\t0\tx\n', 'j.log', 'resume')], [], 'the first line is the header, whatever it holds')
  assert.match(failure(() => resumeSkips(JOBLOG_HEADER + 'garbage line\n', 'j.log', 'resume')), /^j\.log: Format of 'j\.log' is wrong: garbage line$/)
})

test('results land beside the originals; an output identical to the file already there is not fetched again', () => {
  const p = placeParallelRecord('/w', '/w/.meshfarm-parallel/9', record(), (path, ref) => path === '/w/a.dat' && ref.hash === 'y')
  assert.deepEqual(p.targets.map(t => t.path), ['/w/.meshfarm-parallel/9/seq-1.stdout', '/w/.meshfarm-parallel/9/seq-1.stderr', '/w/a.dat.xz'])
  assert.equal(p.jsonPath, '/w/.meshfarm-parallel/9/seq-1.task.json')
  assert.deepEqual([0, 1, 100, 101, 500].map(parallelExitCode), [0, 1, 100, 101, 101])
})
