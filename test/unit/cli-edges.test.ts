/**
 * The CLI's edges that phase 2 wired: submit's file flags and --format compiled once (config.ts), fetch --layout,
 * a job file read with --format, the output layer's colours (plain text unchanged), and agent --install-service
 * run under a temporary root with a recorded systemctl.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { compileFetch, compileSubmitOverrides } from '../../bin/config.ts'
import { parseJobFile } from '../../shared/client/spec.ts'
import { jobsTable, summaryLine } from '../../bin/output.ts'
import { colours } from '../../bin/colour.ts'
import { agentArgsOf, agentService, passwdHome, type ServiceHost } from '../../bin/commands/agent-service.ts'
import { UNIT_NAME } from '../../bin/service-unit.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'
import type { JobSummary } from '../../shared/protocol/messages.ts'

function badLine (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    assert.ok(isMeshfarmError(err) && err.exitCode === 2, `exit code 2: ${String(err)}`)
    assert.ok(!err.message.includes('\n'))
    return err.message
  }
  return assert.fail('no error')
}

test('submit: --input/--output/--shared go into the spec defaults, relative to the working folder; bad values name their flag', () => {
  const o = compileSubmitOverrides({ input: ['a.cfg', 'data/b.bin'], output: ['*.log'], shared: ['model.bin'], format: 'tasklist' }, '/work/here')
  assert.deepEqual(o.spec, { inputs: ['a.cfg', 'data/b.bin'], outputs: ['*.log'], shared: ['model.bin'], cwd: '/work/here' })
  assert.equal(o.format, 'tasklist')
  assert.ok(Object.isFrozen(o.spec) && Object.isFrozen(o))
  assert.deepEqual(compileSubmitOverrides({ input: [], output: [] }).spec, {}, 'empty repeatable flags add nothing')
  assert.equal(badLine(() => compileSubmitOverrides({ output: ['/etc/passwd'] })), '--output: must be a name or glob inside the task folder, got "/etc/passwd"')
  assert.equal(badLine(() => compileSubmitOverrides({ output: ['a/../../b'] })), '--output: must be a name or glob inside the task folder, got "a/../../b"')
  assert.equal(badLine(() => compileSubmitOverrides({ input: [''] })), '--input: must be a file name, got ""')
  assert.equal(badLine(() => compileSubmitOverrides({ shared: ['a\nb'] })), '--shared: must be a file name, got "a\\nb"')
  assert.equal(badLine(() => compileSubmitOverrides({ format: 'json' })), '--format: must be yaml or tasklist, got "json"')
  assert.deepEqual(compileFetch({ layout: 'ictasks' }), { layout: 'ictasks' })
  assert.deepEqual(compileFetch({}), {})
  assert.equal(badLine(() => compileFetch({ layout: 'tree' })), '--layout: must be per-task, flat or ictasks, got "tree"')
})

test('submit: --format reads a file as it says; --input files are found from the working folder, a missing one named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-flags-'))
  try {
    mkdirSync(join(dir, 'jobs'))
    writeFileSync(join(dir, 'jobs', 'list'), 'tasks:\n  - command: "cat a.cfg"\n')
    writeFileSync(join(dir, 'a.cfg'), 'x')
    const asTasklist = parseJobFile(join(dir, 'jobs', 'list'), {}, 'tasklist')
    assert.deepEqual(asTasklist.tasks[0].commands, ['tasks:'], 'no extension: a tasklist unless --format says')
    const asYaml = parseJobFile(join(dir, 'jobs', 'list'), compileSubmitOverrides({ input: ['a.cfg'] }, dir).spec, 'yaml')
    assert.deepEqual(asYaml.tasks[0].inputs, [{ src: join(dir, 'a.cfg'), name: 'a.cfg' }], '--input is relative to where submit runs, not to the job file')
    assert.match(badLine(() => parseJobFile(join(dir, 'jobs', 'list'), compileSubmitOverrides({ input: ['nope.cfg'] }, dir).spec, 'yaml')), /--input: no such file "nope\.cfg"$/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('colours: the plain output is unchanged byte for byte; coloured output is the same text with ANSI codes', () => {
  const job: JobSummary = { jobId: 7, name: 'sweep', owner: '12D3KooWabcdefgh', ownerName: 'ana', state: 'failed', submittedAt: 0, total: 3, counts: { queued: 0, held: 0, staging: 0, running: 0, suspended: 0, done: 2, failed: 1, cancelled: 0 } }
  const plainTable = jobsTable([job])
  assert.equal(plainTable, jobsTable([job], colours(false)))
  assert.doesNotMatch(plainTable + summaryLine(job), /\u001b/)
  assert.equal(summaryLine(job), 'job 7 sweep (ana): failed, 2 done, 1 failed, 0 cancelled of 3')
  const coloured = jobsTable([job], colours(true))
  assert.match(coloured, /\u001b\[31mfailed\u001b\[39m/)
  assert.match(coloured, /\u001b\[1mjob\u001b\[22m/)
  // eslint-disable-next-line no-control-regex
  assert.equal(coloured.replace(/\u001b\[\d+m/g, ''), plainTable, 'columns stay aligned: only the codes differ')
})

test('agent --install-service: flags checked as the agent checks them, the unit written under the root, systemctl recorded; root runs it as an ordinary account', () => {
  const root = mkdtempSync(join(tmpdir(), 'meshfarm-svc-'))
  try {
    mkdirSync(join(root, 'run/systemd/system'), { recursive: true })
    const ran: string[] = []
    const host = (uid: number, extra: Partial<ServiceHost> = {}): ServiceHost => ({
      root, uid, userName: uid === 0 ? 'root' : 'ana', homeDir: uid === 0 ? '/root' : '/home/ana',
      run: cmd => { ran.push(cmd.join(' ')); return { status: 0, stderr: '' } },
      passwd: () => 'root:x:0:0:root:/root:/bin/bash\nana:x:1000:1000:Ana,,,:/home/ana:/bin/bash\nlab:x:1001:1001::/srv/lab:/bin/sh\n',
      ...extra
    })
    const flags = { listen: [], label: ['room=B 12'], cores: '4', memory: '8G' }
    assert.deepEqual(agentArgsOf(flags), ['--cores', '4', '--memory', '8G', '--label', 'room=B 12'])
    agentService('install', flags, { path: '/home/ana/.meshfarm', given: false }, '/opt/meshfarm/bin/meshfarm', host(1000))
    const userUnit = readFileSync(join(root, 'home/ana/.config/systemd/user', UNIT_NAME), 'utf8')
    assert.match(userUnit, /^ExecStart=\/opt\/meshfarm\/bin\/meshfarm agent --cores 4 --memory 8G --label "room=B 12"$/m)
    assert.match(userUnit, /^Environment=MESHFARM_HOME=\/home\/ana\/\.meshfarm$/m)
    assert.deepEqual(ran, ['systemctl --user daemon-reload', `systemctl --user enable --now ${UNIT_NAME}`, 'loginctl enable-linger ana'])
    // As root through sudo: a system unit as the sudo user (or --service-user), with that account's state folder.
    agentService('install', { ...flags, serviceUser: 'lab' }, { path: '/root/.meshfarm', given: false }, '/opt/meshfarm/bin/meshfarm', host(0, { sudoUser: 'ana' }))
    const systemUnit = readFileSync(join(root, 'etc/systemd/system', UNIT_NAME), 'utf8')
    assert.match(systemUnit, /^User=lab$/m)
    assert.match(systemUnit, /^Environment=MESHFARM_HOME=\/srv\/lab\/\.meshfarm$/m, "the service account's own state folder, not root's")
    agentService('install', flags, { path: '/data/mesh', given: true }, '/opt/meshfarm/bin/meshfarm', host(0, { sudoUser: 'ana' }))
    assert.match(readFileSync(join(root, 'etc/systemd/system', UNIT_NAME), 'utf8'), /^Environment=MESHFARM_HOME=\/data\/mesh$/m, 'a state folder given with --home is kept')
    agentService('uninstall', { listen: [], label: [] }, { path: '/home/ana/.meshfarm', given: false }, '/opt/meshfarm/bin/meshfarm', host(1000))
    assert.equal(existsSync(join(root, 'home/ana/.config/systemd/user', UNIT_NAME)), false)
    // Refusals, each one line naming what is wrong, before anything is written or run.
    ran.length = 0
    assert.match(badLine(() => agentService('install', { ...flags, cores: 'two' }, { path: '/x', given: true }, '/opt/m', host(1000))), /^--cores: /)
    assert.match(badLine(() => agentService('install', { ...flags, label: ['room'] }, { path: '/x', given: true }, '/opt/m', host(1000))), /^--label: expected key=value/)
    assert.match(badLine(() => agentService('install', flags, { path: '/x', given: true }, '/opt/m', host(0))), /needs --service-user NAME/)
    assert.match(badLine(() => agentService('install', { ...flags, serviceUser: 'ghost' }, { path: '/x', given: false }, '/opt/m', host(0))), /^--service-user: ghost has no home folder in \/etc\/passwd: give the agent's state folder with --home$/)
    assert.match(badLine(() => agentService('install', { ...flags, serviceUser: 'a b' }, { path: '/x', given: true }, '/opt/m', host(0))), /^--service-user: not an account name/)
    assert.deepEqual(ran, [])
    assert.equal(passwdHome('broken line\nana:x:1000', 'ana'), null)
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})
