/** Parsers and error classes on output captured from a real Slurm 22.05 (test/slurm/capture-fixtures.sh). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { expandArrayRange, parseConfig, parseJobDetails, parseKeyValueLine, parsePartition, parseQueue, parseSinfoNodes, gpusInGres, SEP } from '../../node/bridge/slurm/parse.ts'
import { classifySlurmFailure } from '../../node/bridge/slurm/classify.ts'

const fixture = (name: string): string => readFileSync(join(import.meta.dirname, 'fixtures', 'slurm', name), 'utf8')

test('squeue: every line of the fixed format, array elements one by one, free text kept whole', () => {
  const q = parseQueue(fixture('squeue.txt'))
  assert.equal(q.size, fixture('squeue.txt').trim().split('\n').length)
  assert.deepEqual(q.get('244_0'), { jobId: '244_0', arrayJobId: '244', arrayIndex: 0, state: 'COMPLETED', reason: 'None', nodes: 'vm', name: 'mf:cap:j1:0', comment: 'mf:cap:j1:0' })
  assert.equal(q.get('246')?.state, 'TIMEOUT'); assert.equal(q.get('246')?.reason, 'TimeLimit'); assert.equal(q.get('246')?.arrayIndex, null)
  assert.equal(q.get('251')?.state, 'NODE_FAIL'); assert.equal(q.get('251')?.reason, 'NodeDown')
  assert.equal(q.get('248_5')?.state, 'PENDING', 'pending elements listed one by one with -r')
  assert.equal(q.get('245')?.comment, 'a comment with spaces Reason=not-a-field')
  assert.equal(q.get('239')?.reason, 'Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions')
  assert.equal(q.get('231')?.comment, '(null)')
  assert.deepEqual([...new Set([...q.values()].map(e => e.state))].sort(), ['CANCELLED', 'COMPLETED', 'FAILED', 'NODE_FAIL', 'PENDING', 'TIMEOUT'])
  // An unsplit pending array (as older squeue prints it) still becomes one entry per index.
  const packed = parseQueue(['7_[2-4%1]', '7', 'PENDING', 'JobArrayTaskLimit', '', 'n', 'c'].join(SEP))
  assert.deepEqual([...packed.keys()], ['7_2', '7_3', '7_4'])
  assert.throws(() => parseQueue('7\x1fPENDING'), /squeue: expected 7 fields, got 2/)
  assert.throws(() => parseQueue(['x1', '1', 'PENDING', 'None', '', 'n', 'c'].join(SEP)), /not a Slurm job id: "x1"/)
  assert.deepEqual(expandArrayRange('0-4:2,7%3'), [0, 2, 4, 7])
})

test('scontrol show job -o: every captured state, exit codes and signals, times, values with spaces', () => {
  const [timeout] = parseJobDetails(fixture('scontrol-job-timeout.txt'))
  assert.equal(timeout.state, 'TIMEOUT'); assert.equal(timeout.reason, 'TimeLimit')
  assert.equal(timeout.exitSignal, 15, 'ExitCode=0:15: ended by SIGTERM')
  assert.equal(timeout.timeLimitMs, 60_000)
  assert.equal(timeout.endAt! - timeout.startAt!, 85_000)
  const [nodeFail] = parseJobDetails(fixture('scontrol-job-node-fail.txt'))
  assert.equal(nodeFail.state, 'NODE_FAIL'); assert.equal(nodeFail.reason, 'NodeDown'); assert.equal(nodeFail.comment, 'mf:cap:j5:0')
  assert.equal(nodeFail.timeLimitMs, null, 'UNLIMITED')
  const [failed] = parseJobDetails(fixture('scontrol-job-failed.txt'))
  assert.equal(failed.exitCode, 3)
  assert.equal(failed.name, 'plain job')
  assert.equal(failed.comment, 'a comment with spaces Reason=not-a-field', 'a key-like word inside a comment stays in it')
  assert.equal(failed.reason, 'NonZeroExitCode', 'and does not overwrite the real Reason')
  assert.match(failed.fields.StdOut, /plain job_\d+_4294967294\.out$/)
  assert.equal(parseJobDetails(fixture('scontrol-job-cancelled.txt'))[0].state, 'CANCELLED')
  assert.equal(parseJobDetails(fixture('scontrol-job-running.txt'))[0].state, 'RUNNING')
  const array = parseJobDetails(fixture('scontrol-job-array.txt'))
  assert.equal(array.length, 3, 'an array id prints one line per element')
  assert.deepEqual(array.map(d => d.jobId).sort(), ['244_0', '244_1', '244_2'])
  assert.ok(array.every(d => d.state === 'COMPLETED' && d.arrayJobId === '244'))
  const [pending] = parseJobDetails(fixture('scontrol-job-pending-array.txt'))
  assert.equal(pending.arrayIndex, null, 'ArrayTaskId=0-5%1: still the whole array')
  assert.equal(pending.fields.ArrayTaskId, '0-5%1')
  assert.equal(pending.startAt, null, 'StartTime=Unknown')
  assert.equal(parseJobDetails('').length, 0)
  assert.throws(() => parseJobDetails('JobId=1 JobState=RUNNING ExitCode=x'), /bad ExitCode "x"/)
  assert.deepEqual(parseKeyValueLine('Command=/bin/run a b=c JobName=x Reason=None'), { Command: '/bin/run a b=c', JobName: 'x', Reason: 'None' })
})

test('scontrol show config: array limits, MinJobAge, version', () => {
  const c = parseConfig(fixture('scontrol-config.txt'))
  assert.equal(c.maxArraySize, 21)
  assert.equal(c.maxArrayTasks, 1000)
  assert.equal(c.minJobAgeMs, 300_000)
  assert.equal(c.version, '22.05.8')
  assert.equal(c.clusterName, 'meshfarm-test')
  assert.equal(c.fields.SelectType, 'select/cons_tres')
  assert.equal(parseConfig('MaxArraySize = 1001\nMinJobAge = 300 sec\nSchedulerParameters = (null)').maxArrayTasks, null)
  assert.throws(() => parseConfig('MinJobAge = 300 sec'), /scontrol show config: MaxArraySize: expected a number, got "\(missing\)"/)
})

test('partitions and nodes: limits, CPUs, memory, GPUs, accounts', () => {
  const nodes = parseSinfoNodes(fixture('sinfo-nodes.txt'))
  assert.deepEqual(nodes, [{ name: 'vm', cpus: 2, memoryMb: 23081, gpus: 0, state: 'idle' }])
  const lines = fixture('scontrol-partitions.txt').trim().split('\n')
  const debug = parsePartition(lines.find(l => l.startsWith('PartitionName=debug '))!, nodes)
  assert.equal(debug.maxTimeMs, null); assert.equal(debug.isDefault, true); assert.equal(debug.totalCpus, 2); assert.equal(debug.state, 'UP')
  const short = parsePartition(lines.find(l => l.startsWith('PartitionName=short '))!, nodes)
  assert.equal(short.maxTimeMs, 120_000)
  assert.equal(short.defaultTimeMs, null)
  assert.deepEqual(parsePartition(lines.find(l => l.startsWith('PartitionName=lab '))!, nodes).allowAccounts, ['lab'])
  assert.equal(gpusInGres('gpu:4'), 4)
  assert.equal(gpusInGres('gpu:a100:2(S:0-1),gpu:v100:1,mps:100'), 3)
  assert.equal(gpusInGres('(null)'), 0)
  assert.throws(() => parseSinfoNodes('vm\x1fmany\x1f1\x1f(null)\x1fidle'), /sinfo: bad node line/)
})

test('sbatch failures: permanent or transient, Slurm\'s words in one line', () => {
  const c = (file: string): { kind: string, message: string } => classifySlurmFailure('sbatch', fixture(file), 1)
  assert.deepEqual(c('sbatch-bad-partition.txt'), { kind: 'permanent', message: 'sbatch: Invalid partition name specified' })
  assert.deepEqual(c('sbatch-bad-account.txt'), { kind: 'permanent', message: 'sbatch: Invalid account or account/partition combination specified' })
  assert.deepEqual(c('sbatch-time-limit.txt'), { kind: 'permanent', message: 'sbatch: Requested time limit is invalid (missing or exceeds some limit)' })
  assert.deepEqual(c('sbatch-bad-option.txt'), { kind: 'permanent', message: "sbatch: unrecognized option '--bogus'" })
  assert.deepEqual(c('sbatch-too-many-cpus.txt'), { kind: 'permanent', message: 'sbatch: More processors requested than permitted' })
  assert.deepEqual(c('sbatch-array-too-big.txt'), { kind: 'permanent', message: 'sbatch: Invalid job array specification' })
  const t = (stderr: string): string => classifySlurmFailure('sbatch', stderr, 1).kind
  assert.equal(t('sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\nsbatch: error: Batch job submission failed: Resource temporarily unavailable'), 'transient')
  assert.equal(t('sbatch: error: Batch job submission failed: Socket timed out on send/recv operation'), 'transient')
  assert.equal(t('squeue: error: Unable to contact slurm controller (connect failure)'), 'transient')
  assert.equal(t('sbatch: error: Munge encode failed: Failed to access "/run/munge/munge.socket.2": No such file or directory (retrying ...)'), 'permanent')
  assert.equal(t('something nobody has seen'), 'permanent', 'unknown: one line, no retry storm')
  for (const f of ['sbatch-bad-partition.txt', 'sbatch-bad-option.txt']) assert.ok(!c(f).message.includes('\n'))
})
