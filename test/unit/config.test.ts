/**
 * The configuration compiler: every flag checked once, at the edge; each bad value is one line naming the flag
 * (exit 2), and the result is frozen, with durations in ms and sizes in MB.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compileAgent, compileAgentEnv, compileClient, compileCoordinator, compileSubmitOverrides, DEFAULTS, jobIdArg, taskArg } from '../../bin/config.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'
import { parseDuration, parseSize, parseSizeMb, parseWholeNumber } from '../../shared/util/units.ts'

function refused (fn: () => unknown, flag: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isMeshfarmError(err), String(err))
    assert.equal(err.exitCode, 2)
    assert.ok(err.message.startsWith(`${flag}: `), `names ${flag}: ${err.message}`)
    assert.ok(!err.message.includes('\n'))
    return true
  })
}

test('coordinator flags: defaults in one place, values converted, the result frozen', () => {
  const c = compileCoordinator({ listen: [] }, {})
  assert.deepEqual([...c.listen], DEFAULTS.coordinatorListen)
  assert.equal(c.heartbeatMs, DEFAULTS.heartbeatMs)
  assert.equal(c.crashLimit, 3)
  assert.ok(Object.isFrozen(c))
  const d = compileCoordinator({ listen: ['/ip4/127.0.0.1/tcp/0'], agentLost: '1m', heartbeat: '500ms', crashLimit: '5', prefetch: '0' }, { MESHFARM_LOG: 'debug' })
  assert.deepEqual({ ...d, listen: [...d.listen] }, { listen: ['/ip4/127.0.0.1/tcp/0'], agentLostMs: 60_000, heartbeatMs: 500, crashLimit: 5, prefetch: 0, debug: true, dashboardPort: null, spread: true })
  assert.equal(compileCoordinator({ listen: [] }, { MESHFARM_SPREAD: 'off' }).spread, false)
})

test('each bad coordinator flag is named', () => {
  refused(() => compileCoordinator({ listen: [], crashLimit: 'abc' }, {}), '--crash-limit')
  refused(() => compileCoordinator({ listen: [], crashLimit: '0' }, {}), '--crash-limit')
  refused(() => compileCoordinator({ listen: [], agentLost: 'soon' }, {}), '--agent-lost')
  refused(() => compileCoordinator({ listen: [], heartbeat: '10s', agentLost: '5s' }, {}), '--agent-lost')
  refused(() => compileCoordinator({ listen: [], heartbeat: '1ms' }, {}), '--heartbeat')
  refused(() => compileCoordinator({ listen: [], prefetch: '-1' }, {}), '--prefetch')
  refused(() => compileCoordinator({ listen: ['tcp://0.0.0.0:7341'] }, {}), '--listen')
  refused(() => compileCoordinator({ listen: [] }, { MESHFARM_SPREAD: 'maybe' }), 'MESHFARM_SPREAD')
})

test('agent flags: compiled once (the agent and its service unit use the same), frozen, each bad one named', () => {
  const a = compileAgent({ listen: ['/ip4/127.0.0.2/tcp/0'], cores: '4', slots: '2', memory: '16G', gpus: '0-1', label: ['rack=b'], hostname: 'lab7', isolation: 'namespace', allowRoot: true, workDir: '/scratch/mf' })
  assert.deepEqual(JSON.parse(JSON.stringify(a)), {
    listen: ['/ip4/127.0.0.2/tcp/0'], offer: { cores: 4, slots: 2, memoryMb: 16384, gpus: [0, 1], labels: { rack: 'b' }, hostname: 'lab7' },
    isolation: 'namespace', allowRoot: true, workDir: '/scratch/mf'
  })
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a.offer) && Object.isFrozen(a.offer.labels))
  const plain = compileAgent({ listen: [], label: [] })
  assert.deepEqual([plain.isolation, plain.allowRoot, plain.offer], ['auto', false, { labels: {} }])
  refused(() => compileAgent({ listen: [], label: [], cores: 'all' }), '--cores')
  refused(() => compileAgent({ listen: [], label: [], slots: '0' }), '--slots')
  refused(() => compileAgent({ listen: [], label: [], slots: '1e12' }), '--slots')
  refused(() => compileAgent({ listen: [], label: [], memory: 'lots' }), '--memory')
  refused(() => compileAgent({ listen: [], label: [], gpus: 'first' }), '--gpus')
  refused(() => compileAgent({ listen: [], label: ['rack'] }), '--label')
  refused(() => compileAgent({ listen: [], label: [], hostname: 'two words' }), '--hostname')
  refused(() => compileAgent({ listen: [], label: [], isolation: 'chroot' }), '--isolation')
  refused(() => compileAgent({ listen: ['localhost:7341'], label: [] }), '--listen')
  refused(() => compileAgent({ listen: [], label: [], workDir: ' ' }), '--work-dir')
})

test('submit flags are checked before anything reaches the coordinator', () => {
  const o = compileSubmitOverrides({ cores: '2', gpus: '1', memory: '1.5G', timeout: '90s', retries: '2', name: 'sweep', layout: 'flat', priority: '-5', allowUnplaceable: true })
  assert.deepEqual({ ...o.spec }, { cores: 2, gpus: 1, memoryMb: 1536, timeoutMs: 90_000, retries: 2, name: 'sweep', layout: 'flat' })
  assert.deepEqual({ ...o.job }, { priority: -5, allowUnplaceable: true })
  refused(() => compileSubmitOverrides({ cores: 'two' }), '--cores')
  refused(() => compileSubmitOverrides({ cores: '0' }), '--cores')
  refused(() => compileSubmitOverrides({ retries: 'x' }), '--retries')
  refused(() => compileSubmitOverrides({ memory: 'lots' }), '--memory')
  refused(() => compileSubmitOverrides({ timeout: '-3s' }), '--timeout')
  refused(() => compileSubmitOverrides({ gpus: '1000' }), '--gpus')
  refused(() => compileSubmitOverrides({ name: 'a/b' }), '--name')
  refused(() => compileSubmitOverrides({ layout: 'sideways' }), '--layout')
  refused(() => compileSubmitOverrides({ priority: '5000' }), '--priority')
})

test('environment variables are checked like flags', () => {
  assert.equal(compileClient({}).discoveryMs, DEFAULTS.discoveryMs)
  assert.deepEqual(compileAgentEnv({}), { launcher: 'auto', cc: 'cc', detectGpus: true })
  assert.deepEqual(compileAgentEnv({ MESHFARM_LAUNCHER: 'js', CC: 'clang', MESHFARM_GPU_DETECT: '0' }), { launcher: 'js', cc: 'clang', detectGpus: false })
  refused(() => compileAgentEnv({ MESHFARM_LAUNCHER: 'rust' }), 'MESHFARM_LAUNCHER')
  refused(() => compileAgentEnv({ MESHFARM_GPU_DETECT: 'yes' }), 'MESHFARM_GPU_DETECT')
  assert.equal(compileClient({ MESHFARM_DISCOVERY_MS: '2500' }).discoveryMs, 2500)
  refused(() => compileClient({ MESHFARM_DISCOVERY_MS: 'ten' }), 'MESHFARM_DISCOVERY_MS')
})

test('job and task arguments', () => {
  assert.equal(jobIdArg('12'), 12)
  refused(() => jobIdArg('0'), 'JOB')
  refused(() => jobIdArg('x'), 'JOB')
  assert.deepEqual(taskArg('3.14'), { jobId: 3, index: 14 })
  assert.deepEqual(taskArg('3', '7'), { jobId: 3, index: 7 })
  assert.deepEqual(taskArg('3'), { jobId: 3 })
  refused(() => taskArg('3', '-1'), 'TASK')
})

test('one size parser and one duration parser for files, flags and settings', () => {
  assert.equal(parseSize('2G', 'x'), 2 * 1024 ** 3)
  assert.equal(parseSize('512', 'x', 'M'), 512 * 1024 ** 2)
  assert.equal(parseSize('100', 'x', 'B'), 100)
  assert.equal(parseSizeMb('1.5G', 'x'), 1536)
  assert.equal(parseSizeMb(256, 'x'), 256)
  assert.equal(parseSizeMb('16GiB', 'x'), 16384)
  refused(() => parseSize('1P', '--memory'), '--memory')
  refused(() => parseSize('100T', '--memory'), '--memory')
  assert.equal(parseDuration('250ms', 'x'), 250)
  assert.equal(parseDuration('2h', 'x'), 7_200_000)
  assert.equal(parseDuration(30, 'x'), 30_000)
  refused(() => parseDuration('2 years', '--ttl'), '--ttl')
  refused(() => parseDuration('400d', '--ttl'), '--ttl')
  assert.equal(parseWholeNumber('7', 'x', 0, 10), 7)
  refused(() => parseWholeNumber('7.5', '--n', 0, 10), '--n')
})
