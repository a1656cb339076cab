/** Choosing the isolation: the flag, the candidates a machine offers, and the decision from the probes. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { candidatesFor, decide, describeIsolation, parseIsolationFlag, type MachineFacts } from '../../node/isolation.ts'
import { agentPaths, checkWorkDir } from '../../node/work-dir.ts'

const ROOT_NATIVE: MachineFacts = { root: true, nativeSandbox: true, canSwitchUser: true, bwrap: true }
const USER_NATIVE: MachineFacts = { root: false, nativeSandbox: true, canSwitchUser: true, bwrap: false }
const USER_JS: MachineFacts = { root: false, nativeSandbox: false, canSwitchUser: true, bwrap: false }

test('--isolation takes the five modes and names itself when refused', () => {
  assert.equal(parseIsolationFlag('Slot-Users'), 'slot-users')
  assert.equal(parseIsolationFlag(' none '), 'none')
  assert.throws(() => parseIsolationFlag('chroot'), /^MeshfarmError: --isolation: expected auto, namespace, slot-users, bubblewrap, none, got "chroot"$/)
})

test('auto: slot users for root agents, a user namespace otherwise, bubblewrap as the fallback', () => {
  assert.deepEqual(candidatesFor('auto', ROOT_NATIVE).map(c => [c.mode, c.mounts, c.userns, c.slotUsers]), [
    ['slot-users', 'native', false, true], ['slot-users', 'bubblewrap', false, true], ['slot-users', null, false, true]
  ])
  assert.deepEqual(candidatesFor('auto', USER_NATIVE).map(c => [c.mode, c.mounts, c.userns]), [['namespace', 'native', true]])
  assert.deepEqual(candidatesFor('auto', { ...USER_JS, bwrap: true }).map(c => [c.mode, c.mounts]), [['bubblewrap', 'bubblewrap']])
  assert.deepEqual(candidatesFor('auto', USER_JS), [])
})

test('forced modes: namespace as root runs on slot users (uid 0 is never the task\'s); slot users need root', () => {
  assert.deepEqual(candidatesFor('namespace', ROOT_NATIVE).map(c => [c.mode, c.userns, c.slotUsers]), [['namespace', true, true]])
  assert.deepEqual(candidatesFor('slot-users', USER_NATIVE), [])
  assert.deepEqual(candidatesFor('namespace', USER_JS), [])
  assert.deepEqual(candidatesFor('none', ROOT_NATIVE).map(c => c.mode), ['none'])
})

test('the decision: the first candidate that worked; a forced mode that cannot work is refused with why', () => {
  const [native, bwrap] = candidatesFor('auto', ROOT_NATIVE)
  const d = decide('auto', [{ candidate: native, error: 'sandbox: mount /proc: Operation not permitted' }, { candidate: bwrap, error: null }], ROOT_NATIVE, true)
  assert.ok(d.ok)
  if (d.ok) {
    assert.equal(d.candidate.mounts, 'bubblewrap')
    assert.deepEqual(d.notes, ['slot users + mount namespace: sandbox: mount /proc: Operation not permitted'])
  }
  const forced = decide('namespace', [], USER_JS, false)
  assert.deepEqual(forced, { ok: false, message: '--isolation namespace: not available on this machine: needs the native task launcher (a C compiler; not MESHFARM_LAUNCHER=js)' })
})

test('the first machine\'s agent refuses to run tasks unisolated unless told to; another agent falls back to none', () => {
  const refused = decide('auto', [], USER_JS, true)
  assert.equal(refused.ok, false)
  if (!refused.ok) assert.match(refused.message, /shares its state folder with the coordinator.*--isolation none/)
  const elsewhere = decide('auto', [], USER_JS, false)
  assert.ok(elsewhere.ok && elsewhere.candidate.mode === 'none')
  const told = decide('none', [{ candidate: candidatesFor('none', USER_JS)[0], error: null }], USER_JS, true)
  assert.ok(told.ok && told.candidate.mode === 'none')
})

test('the start line says what is hidden', () => {
  const [c] = candidatesFor('auto', ROOT_NATIVE)
  assert.equal(describeIsolation(c, ['/root/.meshfarm', '/var/tmp/meshfarm-0']), 'isolation: slot users + mount namespace (hides /root/.meshfarm, /var/tmp/meshfarm-0)')
  assert.match(describeIsolation(candidatesFor('none', USER_JS)[0], []), /^isolation: none \(tasks run as the agent's user/)
})

test('task folders live outside the state folder; a --work-dir that overlaps it is refused', () => {
  const p = agentPaths('/home/ann/.meshfarm', { uid: 1000 })
  assert.equal(p.state, '/home/ann/.meshfarm/agent')
  assert.equal(p.capture, '/home/ann/.meshfarm/agent/capture')
  assert.equal(p.workRoot, '/var/tmp/meshfarm-1000')
  assert.match(p.tasks, /^\/var\/tmp\/meshfarm-1000\/[0-9a-f]{12}\/tasks$/)
  assert.notEqual(agentPaths('/home/ann/other', { uid: 1000 }).work, p.work, 'one folder per agent')
  checkWorkDir(p)
  assert.throws(() => { checkWorkDir(agentPaths('/home/ann/.meshfarm', { uid: 1000, workDir: '/home/ann/.meshfarm/work' })) }, /--work-dir: .* overlaps the state folder/)
  assert.throws(() => { checkWorkDir(agentPaths('/home/ann/.meshfarm', { uid: 1000, workDir: '/home' })) }, /overlaps/)
})
