// GNU parallel itself, where it is installed (apt-get install parallel): today's expansions still match the
// captured ones, and each side resumes from the other's joblog. Skipped without parallel.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { capture, type Captured } from '../fixtures/parallel/capture.ts'
import { parseParallelArgv } from '../../shared/client/parallel-args.ts'
import { jobLines } from '../../shared/client/parallel.ts'
import { formatJoblogLine, JOBLOG_HEADER, resumeSkips } from '../../shared/client/joblog.ts'
import { HALT_CASES } from '../fixtures/parallel/halt-cases.ts'

const hasParallel = spawnSync('parallel', ['--version'], { stdio: 'ignore' }).status === 0
const skip = !hasParallel && 'GNU parallel is not installed'

test('the parallel installed here expands every captured command line as meshfarm does', { skip }, () => {
  const expected = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'parallel', 'expected.json'), 'utf8')) as { cases: Captured[] }
  for (const c of expected.cases) {
    const ours = jobLines(parseParallelArgv(c.argv, { readArgFile: p => c.files?.[p] ?? '', readStdin: () => c.stdin ?? '' })).map(l => l.command)
    assert.deepEqual(capture(c), ours, JSON.stringify(c.argv))
  }
})

test("parallel --resume and --resume-failed accept meshfarm's joblog, and meshfarm reads parallel's", { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'joblog-'))
  try {
    const log = join(dir, 'jobs.log')
    // meshfarm ran Seq 1 (ok) and 2 (exit 1); parallel resumes the rest.
    writeFileSync(log, JOBLOG_HEADER +
      formatJoblogLine({ seq: 1, host: 'ws-1', start: 1795341600.123, runtime: 0.5, send: 3, receive: 4, exitval: 0, signal: 0, command: 'echo 1' }) +
      formatJoblogLine({ seq: 2, host: 'ws-2', start: 1795341600.2, runtime: 0.25, send: 0, receive: 0, exitval: 1, signal: 0, command: 'echo 2' }))
    const run = (flag: string): string => execFileSync('parallel', ['-k', '--joblog', log, flag, 'echo', ':::', '1', '2', '3'], { cwd: dir, encoding: 'utf8', env: { ...process.env, HOME: dir } })
    assert.equal(run('--resume'), '3\n', 'parallel skips the Seqs meshfarm logged')
    assert.equal(run('--resume-failed'), '2\n', 'and with --resume-failed reruns only the failed one')
    const text = readFileSync(log, 'utf8')
    assert.equal(text.split('\n').filter(l => l.startsWith('Seq\t')).length, 1, 'parallel appended to our log without a second header')
    assert.deepEqual([...resumeSkips(text, log, 'resume')].sort(), [1, 2, 3])
    assert.deepEqual([...resumeSkips(text, log, 'resume-failed')].sort(), [1, 2, 3], 'the rerun of 2 succeeded')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the installed parallel still stops and exits as the captured --halt cases say', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'halt-'))
  try {
    for (const c of HALT_CASES.filter(x => x.signal == null)) {
      const log = join(dir, `${HALT_CASES.indexOf(c)}.log`)
      const r = spawnSync('parallel', ['-j1', '--joblog', log, ...(c.halt != null ? ['--halt', c.halt] : []), 'exit {}', ':::', ...c.codes.map(String)], { cwd: dir, encoding: 'utf8', env: { ...process.env, HOME: dir } })
      assert.equal(r.status, c.status, `${c.halt ?? 'no --halt'} ${c.codes.join(' ')}`)
      assert.equal(readFileSync(log, 'utf8').trim().split('\n').length - 1, c.ran, `${c.halt ?? 'no --halt'} ${c.codes.join(' ')}: jobs run`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
