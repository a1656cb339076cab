import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { applyServicePlan, planService, renderAgentUnit, systemdWord, UNIT_NAME } from '../../bin/service-unit.ts'
import { colourEnabled, colours, stateColour } from '../../bin/colour.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'

const unit = { executable: '/opt/meshfarm/bin/meshfarm', agentArgs: ['--cores', '8', '--label', 'room=B 12'], home: '/home/ana/.meshfarm' }
const ana = { uid: 1000, userName: 'ana', homeDir: '/home/ana' }

test('a user unit: ExecStart with the agent flags as systemd quotes them, MESHFARM_HOME, restart, default.target', () => {
  const text = renderAgentUnit({ ...unit, mode: 'user' })
  assert.match(text, /^ExecStart=\/opt\/meshfarm\/bin\/meshfarm agent --cores 8 --label "room=B 12"$/m)
  assert.match(text, /^Environment=MESHFARM_HOME=\/home\/ana\/\.meshfarm$/m)
  assert.match(text, /^Restart=on-failure$/m)
  assert.match(text, /^WantedBy=default\.target$/m)
  assert.doesNotMatch(text, /^User=/m, 'a user unit runs as its user')
  assert.deepEqual(['plain', 'a b', '50%', '$HOME', 'say "hi"', 'a\\b', ';', ''].map(w => systemdWord(w)), ['plain', '"a b"', '50%%', '$$HOME', '"say \\"hi\\""', '"a\\\\b"', '";"', '""'])
})

test('a system unit runs as an ordinary account and starts with the machine; root without one is refused', () => {
  const text = renderAgentUnit({ ...unit, mode: 'system', user: 'ana' })
  assert.match(text, /^User=ana$/m)
  assert.match(text, /^WantedBy=multi-user\.target$/m)
  for (const user of [undefined, 'root']) {
    assert.throws(() => renderAgentUnit({ ...unit, mode: 'system', user }), (e: unknown) => isMeshfarmError(e) && /needs --service-user NAME/.test(e.message))
  }
  assert.throws(() => renderAgentUnit({ ...unit, executable: 'bin/meshfarm', mode: 'user' }), /must be an absolute path/)
})

test('the plan: where the unit goes and the systemctl/loginctl lines, user or root, install or remove', () => {
  const user = planService('install', ana, unit)
  assert.equal(user.unitPath, `/home/ana/.config/systemd/user/${UNIT_NAME}`)
  assert.deepEqual(user.commands, [['systemctl', '--user', 'daemon-reload'], ['systemctl', '--user', 'enable', '--now', UNIT_NAME], ['loginctl', 'enable-linger', 'ana']])
  const root = planService('install', { uid: 0, userName: 'root', homeDir: '/root', sudoUser: 'ana' }, unit)
  assert.equal(root.unitPath, `/etc/systemd/system/${UNIT_NAME}`)
  assert.match(root.unitText ?? '', /^User=ana$/m, 'sudo: the unit runs as the user who asked')
  assert.match(planService('install', { uid: 0, userName: 'root', homeDir: '/root', sudoUser: 'ana', serviceUser: 'lab' }, unit).unitText ?? '', /^User=lab$/m)
  assert.deepEqual(root.commands, [['systemctl', 'daemon-reload'], ['systemctl', 'enable', '--now', UNIT_NAME]])
  assert.deepEqual(planService('uninstall', ana, unit).commands, [['systemctl', '--user', 'disable', '--now', UNIT_NAME], ['systemctl', '--user', 'daemon-reload']])
})

test('install and uninstall under a root folder: the file, the commands in order, and a clear word without systemd', () => {
  const root = mkdtempSync(join(tmpdir(), 'meshfarm-unit-'))
  try {
    const ran: string[] = []
    const run = (cmd: string[]): { status: number, stderr: string } => { ran.push(cmd.join(' ')); return { status: 0, stderr: '' } }
    // No systemd (as in this container): the unit is written, nothing is run, and the user is told.
    const without = applyServicePlan(planService('install', ana, unit), { root, run })
    const file = join(root, 'home/ana/.config/systemd/user', UNIT_NAME)
    assert.equal(readFileSync(file, 'utf8'), renderAgentUnit({ ...unit, mode: 'user' }))
    assert.deepEqual(ran, [])
    assert.match(without.at(-1) ?? '', /systemd is not running here \(a container\?\): nothing enabled; start the agent with `meshfarm agent`/)
    // With systemd: reload, enable --now, linger; then removal stops it before the file goes.
    mkdirSync(join(root, 'run/systemd/system'), { recursive: true })
    applyServicePlan(planService('install', ana, unit), { root, run })
    assert.deepEqual(ran, ['systemctl --user daemon-reload', `systemctl --user enable --now ${UNIT_NAME}`, 'loginctl enable-linger ana'])
    ran.length = 0
    const removed = applyServicePlan(planService('uninstall', ana, unit), { root, run })
    assert.deepEqual(ran, [`systemctl --user disable --now ${UNIT_NAME}`, 'systemctl --user daemon-reload'])
    assert.equal(existsSync(file), false)
    assert.ok(removed.includes(`removed /home/ana/.config/systemd/user/${UNIT_NAME}`))
    // A failing systemctl is one line naming it.
    const failing = (): { status: number, stderr: string } => ({ status: 1, stderr: 'Failed to connect to bus: No medium found\nmore' })
    assert.throws(() => applyServicePlan(planService('install', ana, unit), { root, run: failing }),
      (e: unknown) => isMeshfarmError(e) && e.message === 'service: systemctl --user daemon-reload failed: Failed to connect to bus: No medium found')
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('colours only on a terminal: NO_COLOR wins, FORCE_COLOR forces, TERM=dumb and pipes stay plain', () => {
  const tty = { isTTY: true }
  const pipe = { isTTY: false }
  assert.equal(colourEnabled(tty, {}), true)
  assert.equal(colourEnabled(pipe, {}), false)
  assert.equal(colourEnabled(tty, { NO_COLOR: '1' }), false)
  assert.equal(colourEnabled(tty, { NO_COLOR: '1', FORCE_COLOR: '1' }), false)
  assert.equal(colourEnabled(tty, { NO_COLOR: '' }), true, 'an empty NO_COLOR does not count (no-color.org)')
  assert.equal(colourEnabled(pipe, { FORCE_COLOR: '1' }), true)
  assert.equal(colourEnabled(tty, { FORCE_COLOR: '0' }), false)
  assert.equal(colourEnabled(tty, { TERM: 'dumb' }), false)
  assert.equal(colours(true).red('x'), '\u001b[31mx\u001b[39m')
  assert.equal(colours(false).red('x'), 'x')
  assert.deepEqual(['done', 'failed', 'queued'].map(s => stateColour(colours(true), s)), ['\u001b[32mdone\u001b[39m', '\u001b[31mfailed\u001b[39m', 'queued'])
})
