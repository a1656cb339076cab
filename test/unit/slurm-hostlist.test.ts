import { test } from 'node:test'
import assert from 'node:assert/strict'
import { expandCpusPerNode, expandHostlist, formatSlurmDuration, parseSlurmDuration, slurmClock } from '../../node/bridge/slurm/hostlist.ts'
import { allocationFromEnv, allocationInfo } from '../../node/bridge/slurm/allocation.ts'
import { parseJobDetails } from '../../node/bridge/slurm/parse.ts'

test('hostlists: ranges with zero padding, lists, several bracket groups, plain names', () => {
  assert.deepEqual(expandHostlist('node[01-04,07],gpu1'), ['node01', 'node02', 'node03', 'node04', 'node07', 'gpu1'])
  assert.deepEqual(expandHostlist('vm'), ['vm'])
  assert.deepEqual(expandHostlist('r[1-2]n[8-9]'), ['r1n8', 'r1n9', 'r2n8', 'r2n9'])
  assert.deepEqual(expandHostlist('a[9-11]'), ['a9', 'a10', 'a11'])
  assert.deepEqual(expandHostlist('c[098-101]-ib'), ['c098', 'c099', 'c100', 'c101'].map(n => `${n}-ib`))
  assert.deepEqual(expandHostlist(''), [])
  assert.throws(() => expandHostlist('n[1-'), /hostlist: unbalanced brackets/)
  assert.throws(() => expandHostlist('n[5-1]'), /hostlist: empty range "5-1"/)
  assert.throws(() => expandHostlist('n[a-b]'), /hostlist: bad range "a-b"/)
  assert.throws(() => expandHostlist('n[0-99999999]'), /more than 100000 hosts/)
})

test('SLURM_JOB_CPUS_PER_NODE: counts and repeats', () => {
  assert.deepEqual(expandCpusPerNode('4(x2),2'), [4, 4, 2])
  assert.deepEqual(expandCpusPerNode('2'), [2])
  assert.deepEqual(expandCpusPerNode('72(x3)'), [72, 72, 72])
  assert.throws(() => expandCpusPerNode('4(2)'), /SLURM_JOB_CPUS_PER_NODE: bad item "4\(2\)"/)
})

test('durations: every form Slurm prints or takes; limits rounded up to whole minutes', () => {
  const s = 1000; const m = 60 * s; const h = 60 * m; const d = 24 * h
  assert.equal(parseSlurmDuration('00:02:00'), 2 * m)
  assert.equal(parseSlurmDuration('2:00'), 2 * m, 'sinfo prints MaxTime=2 as 2:00 (minutes:seconds)')
  assert.equal(parseSlurmDuration('5'), 5 * m, 'a bare number is minutes')
  assert.equal(parseSlurmDuration('1-02:03:04'), d + 2 * h + 3 * m + 4 * s)
  assert.equal(parseSlurmDuration('2-12'), 2 * d + 12 * h)
  assert.equal(parseSlurmDuration('1-00:30'), d + 30 * m)
  assert.equal(parseSlurmDuration('UNLIMITED'), null)
  assert.equal(parseSlurmDuration('infinite'), null)
  assert.throws(() => parseSlurmDuration('1h'), /bad Slurm duration "1h"/)
  assert.equal(formatSlurmDuration(90 * s), '0-00:02:00')
  assert.equal(formatSlurmDuration(25 * h), '1-01:00:00')
  assert.throws(() => formatSlurmDuration(0), /positive/)
  assert.equal(slurmClock(2 * m), '0:02:00')
  assert.equal(slurmClock(d + h), '1-01:00:00')
})

test('allocation from the environment and scontrol: nodes with CPUs, end time; one line outside an allocation', () => {
  const env = { SLURM_JOB_ID: '55', SLURM_JOB_NODELIST: 'n[1-3]', SLURM_JOB_CPUS_PER_NODE: '4(x2),2' }
  assert.deepEqual(allocationFromEnv(env).nodes, [{ name: 'n1', cpus: 4 }, { name: 'n2', cpus: 4 }, { name: 'n3', cpus: 2 }])
  const details = parseJobDetails('JobId=55 JobName=x JobState=RUNNING Reason=None ExitCode=0:0 TimeLimit=01:00:00 StartTime=2026-11-23T07:00:00 EndTime=2026-11-23T08:00:00 NodeList=n[1-3]')
  assert.equal(allocationInfo(env, details).endsAt, new Date('2026-11-23T08:00:00').getTime())
  assert.throws(() => allocationFromEnv({}), /--in-allocation: SLURM_JOB_ID is not set: not inside a Slurm allocation/)
  assert.throws(() => allocationFromEnv({ ...env, SLURM_JOB_CPUS_PER_NODE: '4' }), /names 3 nodes, SLURM_JOB_CPUS_PER_NODE=4 1/)
})
