/** The launch plan: argv, environment, user and sandbox of a task, decided once for every launcher. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { bwrapArgv, commandArgv, launchRequest, plainArgv, SEQUENCE_SCRIPT, taskEnv, type Isolation } from '../../node/backend/launch-plan.ts'

const NONE: Isolation = { mode: 'none', mounts: null, userns: false, hide: [], slotUsers: null, bwrap: null, inputs: 'link', shared: 'link' }
const BASE = { commands: ['true'], envAdd: { A: '1' }, taskDir: '/w/tasks/7', jobDir: '/w/jobs/3', stdoutPath: '/s/7.out', stderrPath: '/s/7.err', slot: 1 }

test('plain commands skip the shell; anything the shell would interpret does not', () => {
  assert.deepEqual(plainArgv('python3 sim.py --x 1'), ['python3', 'sim.py', '--x', '1'])
  assert.deepEqual(plainArgv('  true  '), ['true'])
  for (const cmd of ['echo hi', 'cd /tmp', 'A=1 env', 'ls *.txt', 'cat a > b', 'x $HOME', "sh -c 'x'", 'a; b', 'a # c', '']) {
    assert.equal(plainArgv(cmd), null, cmd)
  }
})

test('one command is one process; several run in sequence through eval, never pasted into the script', () => {
  assert.deepEqual(commandArgv(['true']), ['true'])
  assert.deepEqual(commandArgv(['echo $X']), ['/bin/sh', '-c', 'echo $X'])
  const argv = commandArgv(['cd sub # go in', 'echo "a\nb"', 'pwd'])
  assert.deepEqual(argv, ['/bin/sh', '-c', SEQUENCE_SCRIPT, 'sh', 'cd sub # go in', 'echo "a\nb"', 'pwd'])
  assert.ok(!SEQUENCE_SCRIPT.includes('cd sub'), 'the commands are arguments, not script text')
})

test('the task environment: meshfarm variables win, the job file\'s override the defaults, slot users get their own HOME', () => {
  const env = taskEnv({ attemptId: 9, jobId: 3, index: 2, cores: 4, gpuIds: [1], agentHasGpus: true, env: { OMP_NUM_THREADS: '1', MESHFARM_TASK_ID: 'forged', X: 'y' }, taskDir: '/t', jobDir: '/j', agentPid: 42 })
  assert.equal(env.OMP_NUM_THREADS, '1')
  assert.equal(env.CUDA_VISIBLE_DEVICES, '1')
  assert.equal(env.MESHFARM_TASK_ID, '3.2')
  assert.equal(env.MESHFARM_ATTEMPT_ID, '9')
  assert.equal(env.MESHFARM_TASK_DIR, '/t')
  assert.equal(env.MESHFARM_JOB_DIR, '/j')
  assert.equal(env.X, 'y')
  assert.equal(env.HOME, undefined)
  const slot = taskEnv({ attemptId: 9, jobId: 3, index: 2, cores: 1, gpuIds: [], agentHasGpus: true, env: {}, taskDir: '/t', jobDir: '/j', agentPid: 42, slotUser: { name: 'meshfarm-slot2', uid: 998, gid: 995 } })
  assert.equal(slot.CUDA_VISIBLE_DEVICES, '', 'no GPU for a task without one on a GPU machine')
  assert.deepEqual([slot.HOME, slot.USER, slot.LOGNAME], ['/t', 'meshfarm-slot2', 'meshfarm-slot2'])
})

test('the request: no sandbox without isolation; the native sandbox covers the hidden folders and binds the task\'s back', () => {
  assert.deepEqual(launchRequest(BASE, NONE), { argv: ['true'], cwd: '/w/tasks/7', envAdd: { A: '1' }, stdoutPath: '/s/7.out', stderrPath: '/s/7.err' })
  const users = [{ name: 's1', uid: 1001, gid: 900 }, { name: 's2', uid: 1002, gid: 900 }]
  const iso: Isolation = { ...NONE, mode: 'slot-users', mounts: 'native', hide: ['/home/a/.meshfarm', '/w'], slotUsers: users }
  const req = launchRequest({ ...BASE, nice: 5, cgroupProcs: ['/cg/cgroup.procs'] }, iso)
  assert.deepEqual(req.user, { uid: 1002, gid: 900 }, 'slot 1 runs as the second slot user')
  assert.deepEqual(req.sandbox, { userns: false, hide: ['/home/a/.meshfarm', '/w'], binds: [{ src: '/w/tasks/7', dst: '/w/tasks/7', ro: false }, { src: '/w/jobs/3', dst: '/w/jobs/3', ro: true }] })
  assert.equal(req.nice, 5)
  assert.deepEqual(req.cgroupProcs, ['/cg/cgroup.procs'])
  assert.throws(() => launchRequest({ ...BASE, slot: 5 }, iso), /no slot user for slot 5/)
})

test('bubblewrap gives the same view through its command line', () => {
  const iso: Isolation = { ...NONE, mode: 'bubblewrap', mounts: 'bubblewrap', hide: ['/h', '/w'], bwrap: '/usr/bin/bwrap' }
  const req = launchRequest({ ...BASE, commands: ['echo $X'] }, iso)
  assert.equal(req.sandbox, undefined)
  assert.deepEqual(req.argv, bwrapArgv('/usr/bin/bwrap', ['/h', '/w'], [{ src: '/w/tasks/7', dst: '/w/tasks/7', ro: false }, { src: '/w/jobs/3', dst: '/w/jobs/3', ro: true }], '/w/tasks/7', ['/bin/sh', '-c', 'echo $X']))
  assert.deepEqual(req.argv.slice(0, 10), ['/usr/bin/bwrap', '--unshare-user', '--unshare-pid', '--die-with-parent', '--dev-bind', '/', '/', '--proc', '/proc', '--tmpfs'])
  const tail = req.argv.slice(req.argv.indexOf('--'))
  assert.deepEqual(tail, ['--', '/bin/sh', '-c', 'echo $X'])
  assert.ok(req.argv.indexOf('--ro-bind') > req.argv.lastIndexOf('--tmpfs'), 'binds come after the covers')
})
