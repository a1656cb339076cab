import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildArrayScript, buildManifest, checkSbatchArgs, chunkLabel, chunkLimit, parseChunkLabel, parseWrapperStatus, planChunks, type ChunkSpec } from '../../node/bridge/slurm/script.ts'
import { buildHolderScript, srunArgs } from '../../node/bridge/slurm/allocation.ts'

function spec (o: Partial<ChunkSpec> = {}): ChunkSpec {
  return {
    bridgeId: 'b1', meshJobId: '42', chunk: 3, chunkDir: '/scratch/mf/42/3',
    tasks: [{ taskId: '42:0', folder: '/scratch/mf/42/t0', command: 'echo a' }, { taskId: '42:1', folder: '/scratch/mf/42/t1', command: 'echo b' }],
    resources: { cores: 2, memoryMb: 1024, gpus: 0, timeLimitMs: 3_600_000 },
    ...o
  }
}

const sbatchLines = (script: string): string[] => script.split('\n').filter(l => l.startsWith('#SBATCH ')).map(l => l.slice(8))

test('array script: one sbatch for the chunk, indexes 0..k-1, %A_%a outputs, label in name and comment, --no-requeue', () => {
  const lines = sbatchLines(buildArrayScript(spec({ partition: 'debug', account: 'lab', throttle: 5 })))
  assert.deepEqual(lines.slice(0, 7), [
    '--job-name=mf:b1:42:3', '--comment=mf:b1:42:3', '--array=0-1%5',
    '--output=/scratch/mf/42/3/out/%A_%a.out', '--error=/scratch/mf/42/3/out/%A_%a.err', '--chdir=/scratch/mf/42/3', '--no-requeue'
  ])
  assert.deepEqual(lines.slice(7), ['--partition=debug', '--account=lab', '--time=0-01:00:00', '--nodes=1', '--ntasks=1', '--cpus-per-task=2', '--mem=1024M'])
  const noThrottle = sbatchLines(buildArrayScript(spec()))
  assert.ok(noThrottle.includes('--array=0-1'))
  assert.ok(!noThrottle.some(l => l.startsWith('--partition') || l.startsWith('--account')), 'Slurm defaults when not given')
})

test('array script: GPUs become --gres=gpu:N, the wrapper writes gpu_ids.txt from CUDA_VISIBLE_DEVICES', () => {
  const script = buildArrayScript(spec({ resources: { cores: 1, memoryMb: 0, gpus: 2, timeLimitMs: null } }))
  const lines = sbatchLines(script)
  assert.ok(lines.includes('--gres=gpu:2'))
  assert.ok(!lines.some(l => l.startsWith('--mem') || l.startsWith('--time')), 'no --mem/--time: the partition defaults')
  assert.match(script, /CUDA_VISIBLE_DEVICES.*gpu_ids\.txt/)
})

test('array script: the wrapper writes its status atomically (tmp then rename) and keeps the exit code', () => {
  const script = buildArrayScript(spec())
  assert.match(script, /> "\$status\.tmp\.\$\$"\nmv -f "\$status\.tmp\.\$\$" "\$status"/)
  assert.match(script, /exit "\$code"\n$/)
  assert.match(script, /trap 'terminated=true' TERM/)
})

test('array script: user args are checked, time limits rounded up to Slurm\'s whole minutes, env quoted', () => {
  const lines = sbatchLines(buildArrayScript(spec({ extraArgs: ['--qos=long', '--constraint=skylake'], resources: { cores: 1, memoryMb: 0, gpus: 0, timeLimitMs: 90_000 } })))
  assert.deepEqual(lines.slice(-2), ['--qos=long', '--constraint=skylake'])
  assert.ok(lines.includes('--time=0-00:02:00'), '90 s -> 2 minutes')
  const env = buildArrayScript(spec({ env: { MESHFARM_JOB_DIR: "/x/it's" } }))
  assert.match(env, /export MESHFARM_JOB_DIR='\/x\/it'\\''s'/)
  assert.throws(() => checkSbatchArgs(['--qos=a\n#SBATCH --x']), /--sbatch-arg: .*no newlines/)
  assert.throws(() => checkSbatchArgs(['--array=0-9']), /--sbatch-arg: --array=0-9: the bridge sets --array itself/)
  assert.throws(() => checkSbatchArgs(['-J', 'x']), /the bridge sets -J itself/)
  assert.throws(() => checkSbatchArgs(['qos=x']), /expected an option/)
  assert.throws(() => buildArrayScript(spec({ chunkDir: '/my scratch/x' })), /work folder: .*plain characters/)
  assert.throws(() => buildArrayScript(spec({ partition: 'a b' })), /--partition: "a b"/)
  assert.throws(() => buildArrayScript(spec({ tasks: [] })), /chunk 3: no tasks/)
})

test('manifest: one line per index, commands of any text survive base64, bad folders and ids refused', () => {
  const cmd = "printf '%s\\n' \"$HOME\"\ttab\nsecond line"
  const m = buildManifest([{ taskId: 'j:0', folder: '/a', command: cmd }, { taskId: 'j:1', folder: '/b', command: '' }])
  const lines = m.trimEnd().split('\n')
  assert.equal(lines.length, 2)
  const [folder, id, b64] = lines[0].split('\t')
  assert.equal(folder, '/a'); assert.equal(id, 'j:0')
  assert.equal(Buffer.from(b64, 'base64').toString('utf8'), cmd)
  assert.throws(() => buildManifest([{ taskId: 'x', folder: 'relative', command: 'true' }]), /task 0: folder "relative"/)
  assert.throws(() => buildManifest([{ taskId: 'a b', folder: '/a', command: 'true' }]), /task 0: id "a b"/)
})

test('labels round-trip; foreign or malformed names are not ours', () => {
  assert.equal(chunkLabel('b1', '42', 0), 'mf:b1:42:0')
  assert.deepEqual(parseChunkLabel('mf:b1:42:7'), { bridgeId: 'b1', meshJobId: '42', chunk: 7 })
  for (const s of ['wrap', 'mf:b1:42', 'mf:b1:42:x', 'mfa:b1:1', '']) assert.equal(parseChunkLabel(s), null, s)
  assert.throws(() => chunkLabel('b:1', '42', 0), /bridge id/)
})

test('chunking: no chunk over min(MaxArraySize - 1, max_array_tasks), indexes per chunk, shapes never mixed', () => {
  assert.equal(chunkLimit({ maxArraySize: 1001, maxArrayTasks: null }), 1000)
  assert.equal(chunkLimit({ maxArraySize: 1001, maxArrayTasks: 200 }), 200)
  assert.equal(chunkLimit({ maxArraySize: 21, maxArrayTasks: 1000 }), 20)
  assert.throws(() => chunkLimit({ maxArraySize: 1, maxArrayTasks: null }), /allows no job arrays/)
  const tasks = Array.from({ length: 45 }, (_, i) => ({ i, shape: i % 10 === 9 ? 'gpu' : 'cpu' }))
  const chunks = planChunks(tasks, 20, t => t.shape)
  assert.deepEqual(chunks.map(c => c.length), [20, 20, 1, 4])
  for (const c of chunks) assert.equal(new Set(c.map(t => t.shape)).size, 1)
  assert.deepEqual(chunks.flat().map(t => t.i).sort((a, b) => a - b), tasks.map(t => t.i), 'every task once')
  assert.deepEqual(chunks[0].map(t => t.i).slice(0, 3), [0, 1, 2], 'order kept')
  assert.deepEqual(planChunks([], 20, () => ''), [])
})

test('wrapper status: only complete, well-formed records are read', () => {
  const ok = '{"index":2,"taskId":"j:2","exitCode":139,"signal":11,"terminated":false,"startedAt":1,"endedAt":2,"host":"vm","slurmJobId":"217_2"}'
  assert.equal(parseWrapperStatus(ok)?.signal, 11)
  assert.equal(parseWrapperStatus(ok.slice(0, 40)), null)
  assert.equal(parseWrapperStatus('{"index":2}'), null)
})

test('holder script and srun step arguments', () => {
  const h = buildHolderScript({ bridgeId: 'b1', n: 4, resources: { cores: 8, memoryMb: 0, gpus: 1, timeLimitMs: 7_200_000 }, logDir: '/s/alloc', partition: 'gpu', signalBeforeEndS: 120 })
  const lines = sbatchLines(h)
  assert.deepEqual(lines.slice(0, 6), ['--job-name=mfa:b1:4', '--comment=mfa:b1:4', '--output=/s/alloc/%j.out', '--error=/s/alloc/%j.err', '--no-requeue', '--signal=B:USR1@120'])
  assert.ok(lines.includes('--cpus-per-task=8') && lines.includes('--gres=gpu:1') && lines.includes('--time=0-02:00:00'))
  assert.deepEqual(srunArgs({ jobId: '77', cores: 2, memoryMb: 512, gpus: 1, node: 'n1', folder: '/t', stdout: '/t/o', stderr: '/t/e', command: 'echo hi' }),
    ['--jobid=77', '--exact', '-N1', '-n1', '-c2', '--quiet', '--mem=512M', '--gres=gpu:1', '--nodelist=n1', '--chdir=/t', '--output=/t/o', '--error=/t/e', '/bin/sh', '-c', 'echo hi'])
  assert.throws(() => srunArgs({ jobId: '7;rm', cores: 1, memoryMb: 0, gpus: 0, folder: '/t', stdout: '/o', stderr: '/e', command: 'x' }), /srun: job id/)
})

test('property: random task lists and limits: every task in exactly one chunk, none over the limit, one shape each, order kept', () => {
  let seed = 99
  const rand = (n: number): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed >>> 8) % n }
  for (let run = 0; run < 500; run++) {
    const limit = 1 + rand(50)
    const tasks = Array.from({ length: rand(300) }, (_, i) => ({ i, shape: `s${rand(3)}` }))
    const chunks = planChunks(tasks, limit, t => t.shape)
    assert.deepEqual(chunks.flat().map(t => t.i).sort((a, b) => a - b), tasks.map(t => t.i))
    for (const c of chunks) {
      assert.ok(c.length >= 1 && c.length <= limit)
      assert.equal(new Set(c.map(t => t.shape)).size, 1)
      for (let k = 1; k < c.length; k++) assert.ok(c[k].i > c[k - 1].i)
    }
    const perShape = new Map<string, number>()
    for (const t of tasks) perShape.set(t.shape, (perShape.get(t.shape) ?? 0) + 1)
    assert.equal(chunks.length, [...perShape.values()].reduce((n, k) => n + Math.ceil(k / limit), 0), 'as few chunks as the limit allows')
  }
})
