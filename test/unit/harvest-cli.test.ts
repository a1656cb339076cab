/**
 * The harvest flags compiled once: each bad one is one line naming it (exit 2), thresholds reach the policy,
 * what needs root or --harvest says so, and the systemd unit gets the same flags back.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compileLend, compileMachine, compilePoll, compileSocketFlag, machineArgsOf, resolveUser, type MachineFlags } from '../../bin/harvest-config.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'

const PASSWD = 'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n'
const ROOT = { uid: 0, passwd: () => PASSWD }
const ALICE = { uid: 1000, passwd: () => PASSWD }

function refused (fn: () => unknown, line: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isMeshfarmError(err) && err.code === 'BAD_ARGUMENT' && err.exitCode === 2, String(err))
    assert.match(err.message, line)
    assert.ok(!err.message.includes('\n'), 'one line')
    return true
  })
}

test('without --harvest: cgroups on (or off with --no-cgroups), and every harvest flag refused by name', () => {
  assert.deepEqual(compileMachine({}, {}, ALICE), { cgroups: 'auto', harvest: null })
  assert.deepEqual(compileMachine({ cgroups: false }, {}, ALICE), { cgroups: 'none', harvest: null })
  assert.equal(compileMachine({}, { MESHFARM_PRESENCE_FILE: '/x' }, ALICE).harvest, null, 'the injected file means nothing without --harvest')
  for (const [flags, name] of [[{ startIdle: '1m' }, '--start-idle'], [{ highLoadFor: '1m' }, '--high-load-for'], [{ inputDevices: true }, '--input-devices'], [{ owner: 'alice' }, '--owner'], [{ ownerSocket: '/s' }, '--owner-socket']] as Array<[MachineFlags, string]>) {
    refused(() => compileMachine(flags, {}, ROOT), new RegExp(`^${name}: only with --harvest$`))
  }
})

test('--harvest: thresholds in words reach the policy; defaults are HTCondor\'s; the injected presence file', () => {
  const m = compileMachine({ harvest: true, startIdle: '20m', continueIdle: '90s', maxSuspend: '1h', backgroundLoad: '0.5', highLoad: '1.5', highLoadFor: '30s', keyboardBusy: '30s' }, { MESHFARM_PRESENCE_FILE: '/tmp/p.json' }, ALICE)
  assert.deepEqual(m.harvest?.config, { startIdleMs: 1_200_000, continueIdleMs: 90_000, keyboardBusyMs: 30_000, maxSuspendMs: 3_600_000, backgroundLoad: 0.5, highLoad: 1.5, highLoadMs: 30_000 })
  assert.equal(m.harvest?.presenceFile, '/tmp/p.json')
  assert.equal(m.harvest?.ownerUid, null)
  const d = compileMachine({ harvest: true }, {}, ALICE).harvest!
  assert.deepEqual([d.config.startIdleMs, d.config.continueIdleMs, d.config.maxSuspendMs, d.config.keyboardBusyMs, d.config.backgroundLoad], [900_000, 300_000, 600_000, 60_000, 0.3])
  assert.ok(Object.isFrozen(m) && Object.isFrozen(m.harvest))
})

test('--harvest: each bad value is one line naming its flag', () => {
  refused(() => compileMachine({ harvest: true, startIdle: 'soon' }, {}, ALICE), /^--start-idle: expected a duration like 15m/)
  refused(() => compileMachine({ harvest: true, backgroundLoad: 'low' }, {}, ALICE), /^--background-load: expected a load in cores like 0\.3, got "low"$/)
  refused(() => compileMachine({ harvest: true, startIdle: '10s' }, {}, ALICE), /^--start-idle: must be at least --keyboard-busy \(60000 ms\)$/)
  refused(() => compileMachine({ harvest: true, backgroundLoad: '2', highLoad: '1' }, {}, ALICE), /^--background-load: must not exceed --high-load \(1\)$/)
  refused(() => compileMachine({ harvest: true, owner: 'mallory' }, {}, ROOT), /^--owner: no user "mallory" on this machine$/)
  refused(() => compileMachine({ harvest: true, owner: 'root' }, {}, ALICE), /^--owner: only an agent running as root lends another user's machine \(this one runs as uid 1000\)$/)
  refused(() => compileMachine({ harvest: true, inputDevices: true }, {}, ALICE), /^--input-devices: only an agent running as root/)
  refused(() => compileMachine({ harvest: true, ownerSocket: 'rel.sock' }, {}, ALICE), /^--owner-socket: must be an absolute path, got "rel\.sock"$/)
  refused(() => compileMachine({ harvest: true, ownerSocket: `/${'x'.repeat(120)}` }, {}, ALICE), /^--owner-socket: .* too long for a Unix socket/)
  refused(() => compileMachine({ harvest: true }, { MESHFARM_PRESENCE_FILE: 'p.json' }, ALICE), /^MESHFARM_PRESENCE_FILE: must be an absolute path/)
})

test('--owner as root: a name or a uid; the agent\'s own user needs no root', () => {
  assert.equal(compileMachine({ harvest: true, owner: 'alice' }, {}, ROOT).harvest?.ownerUid, 1000)
  assert.equal(compileMachine({ harvest: true, owner: '1001' }, {}, ROOT).harvest?.ownerUid, 1001)
  assert.equal(compileMachine({ harvest: true, owner: 'alice' }, {}, ALICE).harvest?.ownerUid, 1000)
  assert.equal(resolveUser('alice', PASSWD), 1000)
  refused(() => resolveUser('99999999999', PASSWD), /^--owner: not a user id/)
})

test('the systemd unit gets the flags back, checked', () => {
  assert.deepEqual(machineArgsOf({ harvest: true, startIdle: '20m', inputDevices: true, owner: 'alice', cgroups: false }, ROOT), ['--harvest', '--start-idle', '20m', '--input-devices', '--owner', 'alice', '--no-cgroups'])
  assert.deepEqual(machineArgsOf({}, ALICE), [])
  refused(() => machineArgsOf({ startIdle: '20m' }, ALICE), /^--start-idle: only with --harvest$/)
})

test('lend: --until in words, --never, --policy default; one at a time', () => {
  const now = new Date(2026, 10, 23, 12, 0).getTime()
  assert.deepEqual(compileLend({}, now), { op: 'lend', untilMs: null, label: null })
  assert.deepEqual(compileLend({ until: '18:00' }, now), { op: 'lend', untilMs: new Date(2026, 10, 23, 18, 0).getTime(), label: '18:00' })
  assert.deepEqual(compileLend({ until: '2h' }, now), { op: 'lend', untilMs: now + 7_200_000, label: '+2h' })
  assert.deepEqual(compileLend({ never: true }, now), { op: 'never' })
  assert.deepEqual(compileLend({ policy: 'default' }, now), { op: 'default' })
  refused(() => compileLend({ policy: 'greedy' }, now), /^--policy: the only policy is default/)
  refused(() => compileLend({ never: true, until: '18:00' }, now), /^--until, --never: give one of them$/)
  refused(() => compileLend({ until: 'teatime' }, now), /^--until: expected a time like 18:00/)
  refused(() => compileLend({ until: '25:00' }, now), /^--until: no such time of day/)
})

test('presence --poll and --socket', () => {
  assert.equal(compilePoll(undefined), 2000)
  assert.equal(compilePoll('500ms'), 500)
  refused(() => compilePoll('10ms'), /^--poll: must be from 200ms to 1m/)
  assert.equal(compileSocketFlag(undefined), undefined)
  refused(() => compileSocketFlag('here.sock'), /^--socket: must be an absolute path/)
})
