import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { decodeLocalFrame, encodeLocalFrame, MAX_LOCAL_FRAME } from '../../node/harvest/local-socket.ts'
import { checkOwnerRequest, ownerControlPaths } from '../../node/harvest/owner-control.ts'
import { compileHarvestConfig, DEFAULT_HARVEST_CONFIG, parseLendUntil } from '../../node/harvest/config.ts'
import { formatBytes, formatDuration, parseDuration } from '../../node/harvest/format.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'

function oneLine (fn: () => unknown, code: string, match: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isMeshfarmError(e), String(e))
    assert.equal(e.code, code)
    assert.ok(!e.message.includes('\n'))
    assert.match(e.message, match)
    return true
  })
}

function rng (seed: number): () => number {
  let a = seed
  return () => { a = (Math.imul(a, 1103515245) + 12345) & 0x7fffffff; return a / 0x7fffffff }
}

describe('local frames', () => {
  test('round trip, split anywhere', () => {
    const frame = encodeLocalFrame({ v: 1, op: 'status', token: 'ab' })
    for (let cut = 0; cut < frame.length; cut++) assert.equal(decodeLocalFrame(frame.subarray(0, cut)).kind, 'need-more', `cut at ${cut}`)
    assert.deepEqual(decodeLocalFrame(frame), { kind: 'frame', value: { v: 1, op: 'status', token: 'ab' } })
  })

  test('oversize is refused from the header alone; junk and trailing bytes are errors', () => {
    const head = Buffer.alloc(4)
    head.writeUInt32BE(MAX_LOCAL_FRAME + 1)
    assert.equal(decodeLocalFrame(head).kind, 'error')
    head.writeUInt32BE(0xffffffff)
    assert.match((decodeLocalFrame(head) as { message: string }).message, /over the 16384-byte limit/)
    const junk = Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{x}')])
    assert.deepEqual(decodeLocalFrame(junk), { kind: 'error', message: 'not JSON' })
    assert.deepEqual(decodeLocalFrame(Buffer.concat([encodeLocalFrame(1), Buffer.from('x')])), { kind: 'error', message: 'bytes after the request' })
    oneLine(() => encodeLocalFrame('x'.repeat(MAX_LOCAL_FRAME)), 'PROTOCOL', /over the 16384-byte limit/)
  })

  test('fuzz: random bytes never throw', () => {
    const r = rng(7)
    for (let i = 0; i < 2000; i++) {
      const buf = Buffer.from(Array.from({ length: Math.floor(r() * 40) }, () => Math.floor(r() * 256)))
      if (r() < 0.5 && buf.length >= 4) buf.writeUInt32BE(buf.length - 4)
      const out = decodeLocalFrame(buf)
      assert.ok(['need-more', 'frame', 'error'].includes(out.kind))
    }
  })
})

describe('owner requests', () => {
  test('well-formed requests', () => {
    assert.deepEqual(checkOwnerRequest({ v: 1, op: 'status', token: 'x' }), { op: 'status' })
    assert.deepEqual(checkOwnerRequest({ v: 1, op: 'lend', untilMs: 1800000000000, label: '18:00' }), { op: 'command', command: { op: 'lend', untilMs: 1800000000000, label: '18:00' } })
    assert.deepEqual(checkOwnerRequest({ v: 1, op: 'lend' }), { op: 'command', command: { op: 'lend', untilMs: null, label: null } })
    assert.deepEqual(checkOwnerRequest({ v: 1, op: 'reclaim' }), { op: 'command', command: { op: 'reclaim' } })
    assert.deepEqual(checkOwnerRequest({ v: 1, op: 'presence', report: { idleMs: 5, via: 'x11', uid: 1000 } }).op, 'presence')
  })

  test('malformed ones are one PROTOCOL line naming the field', () => {
    oneLine(() => checkOwnerRequest(null), 'PROTOCOL', /^owner request: request: expected an object/)
    oneLine(() => checkOwnerRequest({ v: 2, op: 'status' }), 'PROTOCOL', /^owner request: v: unsupported version 2/)
    oneLine(() => checkOwnerRequest({ v: 1, op: 'rm -rf' }), 'PROTOCOL', /^owner request: op: expected one of lend, reclaim/)
    oneLine(() => checkOwnerRequest({ v: 1, op: 'lend', untilMs: 'soon' }), 'PROTOCOL', /^owner request: untilMs:/)
    oneLine(() => checkOwnerRequest({ v: 1, op: 'lend', untilMs: 1e300 }), 'PROTOCOL', /^owner request: untilMs:/)
    oneLine(() => checkOwnerRequest({ v: 1, op: 'lend', label: 'x'.repeat(65) }), 'PROTOCOL', /^owner request: label:/)
    oneLine(() => checkOwnerRequest({ v: 1, op: 'lend', label: '18:00\nowner present' }), 'PROTOCOL', /^owner request: label: expected up to 64 printable characters/)
    oneLine(() => checkOwnerRequest({ v: 1, op: 'presence', report: { idleMs: 'x' } }), 'PROTOCOL', /^presence report: idleMs:/)
    oneLine(() => checkOwnerRequest({ v: 1, op: '__proto__' }), 'PROTOCOL', /op: expected one of/)
  })

  test('paths: the state folder, or /run/meshfarm as root', () => {
    assert.deepEqual(ownerControlPaths('/home/a/.meshfarm', false), { socketPath: '/home/a/.meshfarm/owner.sock', tokenPath: '/home/a/.meshfarm/owner.token' })
    assert.deepEqual(ownerControlPaths('/root/.meshfarm', true), { socketPath: '/run/meshfarm/owner.sock', tokenPath: '/run/meshfarm/owner.token' })
  })
})

describe('harvest config', () => {
  test('defaults are HTCondor\'s desktop policy', () => {
    assert.deepEqual(compileHarvestConfig(), { startIdleMs: 900_000, continueIdleMs: 300_000, keyboardBusyMs: 60_000, maxSuspendMs: 600_000, backgroundLoad: 0.3, highLoad: 0.5, highLoadMs: 120_000 })
    assert.ok(Object.isFrozen(compileHarvestConfig()))
    assert.equal(DEFAULT_HARVEST_CONFIG.startIdleMs, 15 * 60_000)
  })

  test('each bad setting is one line naming its flag', () => {
    oneLine(() => compileHarvestConfig({ startIdleMs: 'soon' }), 'BAD_ARGUMENT', /^--start-idle: expected a duration like 15m/)
    oneLine(() => compileHarvestConfig({ maxSuspendMs: 0 }), 'BAD_ARGUMENT', /^--max-suspend: expected a duration from 1 ms to 7 days/)
    oneLine(() => compileHarvestConfig({ maxSuspendMs: '8d' }), 'BAD_ARGUMENT', /^--max-suspend: expected a duration from 1 ms to 7 days/)
    oneLine(() => compileHarvestConfig({ backgroundLoad: -1 }), 'BAD_ARGUMENT', /^--background-load: expected a load in cores/)
    oneLine(() => compileHarvestConfig({ highLoad: 'high' }), 'BAD_ARGUMENT', /^--high-load: expected a load in cores/)
    oneLine(() => compileHarvestConfig({ backgroundLoad: 0.6 }), 'BAD_ARGUMENT', /^--background-load: must not exceed --high-load \(0\.5\)/)
    oneLine(() => compileHarvestConfig({ startIdleMs: '30s' }), 'BAD_ARGUMENT', /^--start-idle: must be at least --keyboard-busy/)
    oneLine(() => compileHarvestConfig({ continueIdleMs: '10s' }), 'BAD_ARGUMENT', /^--continue-idle: must be at least --keyboard-busy/)
    oneLine(() => compileHarvestConfig({ startIdle: 5 } as never), 'BAD_ARGUMENT', /^harvest: unknown setting "startIdle"/)
  })

  test('lend --until: clock times, dates and durations', () => {
    const now = new Date(2026, 10, 23, 9, 30).getTime() // local time
    assert.deepEqual(parseLendUntil('18:00', now), { untilMs: new Date(2026, 10, 23, 18, 0).getTime(), label: '18:00' })
    assert.equal(parseLendUntil('08:00', now).untilMs, new Date(2026, 10, 24, 8, 0).getTime(), 'a time already past today is tomorrow')
    assert.deepEqual(parseLendUntil('2h', now), { untilMs: now + 7_200_000, label: '+2h' })
    assert.deepEqual(parseLendUntil('+90m', now), { untilMs: now + 5_400_000, label: '+90m' })
    assert.equal(parseLendUntil('2026-11-24T07:00:00Z', now).untilMs, Date.UTC(2026, 10, 24, 7))
    oneLine(() => parseLendUntil('25:00', now), 'BAD_ARGUMENT', /^--until: no such time of day "25:00"/)
    oneLine(() => parseLendUntil('2020-01-01T00:00', now), 'BAD_ARGUMENT', /^--until: 2020-01-01T00:00 is in the past/)
    oneLine(() => parseLendUntil('tomorrow', now), 'BAD_ARGUMENT', /^--until: expected a time like 18:00/)
  })
})

describe('format', () => {
  test('durations, sizes', () => {
    assert.deepEqual([0, 20_000, 59_999, 60_000, 16 * 60_000, 3_600_000, 3_900_000, 86_400_000, 97_200_000].map(formatDuration), ['0 s', '20 s', '59 s', '1 min', '16 min', '1 h', '1 h 5 min', '1 d', '1 d 3 h'])
    assert.deepEqual([512, 2048, 512 * 2 ** 20, 2.1 * 2 ** 30, 1.5 * 2 ** 20].map(formatBytes), ['512 B', '2 KiB', '512 MiB', '2.1 GiB', '1.5 MiB'])
    assert.equal(parseDuration('15m', 'x'), 900_000)
    assert.equal(parseDuration('1h30m', 'x'), 5_400_000)
    assert.equal(parseDuration('2 min', 'x'), 120_000)
    assert.equal(parseDuration('500ms', 'x'), 500)
    assert.equal(parseDuration('90', 'x'), 90_000)
    oneLine(() => parseDuration('15 minutes', '--start-idle'), 'BAD_ARGUMENT', /^--start-idle: expected a duration/)
    oneLine(() => parseDuration('m', 'x'), 'BAD_ARGUMENT', /^x: expected a duration/)
  })
})
