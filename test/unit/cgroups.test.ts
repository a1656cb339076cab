import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { buildLayout, cgroupDir, parseMountinfo, parseProcCgroup } from '../../node/cgroups/detect.ts'
import { groupTasks, markerEntries, markerOf, parseProcStat, type ProcEntry } from '../../node/cgroups/proctree.ts'
import { parseKeyed, parseLimit, parsePids } from '../../node/cgroups/fsutil.ts'
import { v2CpuMax, v2CpuWeight } from '../../node/cgroups/v2.ts'
import { v1Shares } from '../../node/cgroups/v1.ts'
import { launchSettings, memoryFailure, wrapShellCommand } from '../../node/cgroups/index.ts'
import { openProcessTree } from '../../node/cgroups/fallback.ts'
import type { TaskGroup, TaskGroups } from '../../node/cgroups/types.ts'

// This test machine: v1 controllers, each its own hierarchy, and an (almost empty) unified hierarchy beside them.
const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
const HYBRID_SELF = '9:name=systemd:/\n8:pids:/\n6:freezer:/\n4:memory:/process_api/9036c0\n2:cpuacct:/\n1:cpu:/\n0::/\n'
// A systemd desktop (Fedora, Ubuntu 22.04+): cgroup v2 only.
const PURE_V2 = '35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n'
const PURE_V2_SELF = '0::/system.slice/meshfarm.service\n'
// An older distribution: cpu and cpuacct co-mounted, and a container that sees only its own subtree.
const COMOUNT = `25 18 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
26 18 0:23 /docker/abc /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
`
const COMOUNT_SELF = '3:cpu,cpuacct:/user.slice\n2:memory:/docker/abc\n'

describe('detecting cgroups', () => {
  test('this machine: hybrid, v1 controllers win, own folders per hierarchy', () => {
    const l = buildLayout(parseMountinfo(HYBRID), parseProcCgroup(HYBRID_SELF))
    assert.equal(l.pureV2, false)
    assert.deepEqual([...l.v1.keys()].sort(), ['cpu', 'cpuacct', 'freezer', 'memory', 'pids'])
    assert.equal(l.v1.get('memory')!.ownDir, '/sys/fs/cgroup/memory/process_api/9036c0')
    assert.equal(l.v1.get('freezer')!.ownDir, '/sys/fs/cgroup/freezer')
    assert.equal(l.v2!.ownDir, '/sys/fs/cgroup/unified')
    assert.equal(parseMountinfo(HYBRID).find(m => m.mountPoint.endsWith('systemd'))!.controllers.length, 0, 'name=systemd is no controller')
  })

  test('a systemd desktop: pure v2, own cgroup is the service', () => {
    const l = buildLayout(parseMountinfo(PURE_V2), parseProcCgroup(PURE_V2_SELF))
    assert.equal(l.pureV2, true)
    assert.equal(l.v2!.ownPath, '/system.slice/meshfarm.service')
    assert.equal(l.v2!.ownDir, '/sys/fs/cgroup/system.slice/meshfarm.service')
  })

  test('co-mounted controllers share a hierarchy; a container mount shows a subtree', () => {
    const mounts = parseMountinfo(COMOUNT)
    assert.deepEqual(mounts[0].controllers, ['cpu', 'cpuacct'])
    const l = buildLayout(mounts, parseProcCgroup(COMOUNT_SELF))
    assert.equal(l.v1.get('cpu')!.ownDir, '/sys/fs/cgroup/cpu,cpuacct/user.slice')
    assert.equal(l.v1.get('cpuacct')!.mount, l.v1.get('cpu')!.mount)
    assert.equal(l.v1.get('memory')!.ownDir, '/sys/fs/cgroup/memory', 'the container sees /docker/abc as its root')
    assert.equal(cgroupDir(mounts[1], '/docker/abc/x'), '/sys/fs/cgroup/memory/x')
    assert.equal(buildLayout([], new Map()).v2, null)
  })

  test('mount points with escaped spaces', () => {
    assert.equal(parseMountinfo('1 2 0:1 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n')[0].mountPoint, '/mnt/my cg')
  })
})

describe('process trees', () => {
  test('/proc/<pid>/stat, names with spaces and parentheses', () => {
    const s = parseProcStat('9803 (bash) S 9802 9803 9803 34816 -1 4194560 14998 546680 0 387 2 9 782 191 20 0 1 0 49491 5251072 1031 18446744073709551615')!
    assert.deepEqual(s, { pid: 9803, comm: 'bash', state: 'S', ppid: 9802, pgrp: 9803, session: 9803, ttyNr: 34816, cpuTicks: 11, startTicks: 49491 })
    const odd = parseProcStat('77 (a) b (c) T 1 77 77 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 99 0 0')!
    assert.equal(odd.comm, 'a) b (c')
    assert.equal(odd.state, 'T')
    assert.equal(odd.cpuTicks, 11)
    assert.equal(parseProcStat('garbage'), null)
  })

  test('the marker in an environment block', () => {
    const env = Buffer.from(['PATH=/bin', ...markerEntries({ attemptId: '42', agentPid: 100 }), 'X=1', ''].join('\0'))
    assert.deepEqual(markerOf(env), { attemptId: '42', agentPid: 100 })
    assert.equal(markerOf(Buffer.from('MESHFARM_ATTEMPT_ID=42\0')), null, 'both entries are needed')
    assert.equal(markerOf(Buffer.from('MESHFARM_ATTEMPT_ID=42\0MESHFARM_AGENT_PID=x\0')), null)
  })

  test('a task is its marked processes, their descendants and its root\'s descendants, double-forked ones included', () => {
    const p = (pid: number, ppid: number, marker: ProcEntry['marker'] = null): ProcEntry => ({ stat: { pid, comm: 'x', state: 'S', ppid, pgrp: pid, session: pid, ttyNr: 0, cpuTicks: 0, startTicks: 0 }, marker })
    const m = (attemptId: string, agentPid = 100): ProcEntry['marker'] => ({ attemptId, agentPid })
    const entries = [
      p(100, 1), // the agent
      p(200, 100, m('7')), // task 7's shell
      p(201, 200, m('7')),
      p(202, 1, m('7')), // double-forked: reparented to init, found by its marker
      p(203, 202), // its child, which cleared its environment
      p(300, 100, m('8')),
      p(301, 300), // a child that dropped the marker, found by the tree
      p(400, 1, m('7', 999)), // another agent's task 7
      p(500, 100) // task 9's root, known by pid only
    ]
    const g = groupTasks(entries, 100, new Map([['9', 500], ['10', 12345]]))
    assert.deepEqual(Object.fromEntries(g), { 7: [200, 201, 202, 203], 8: [300, 301], 9: [500] })
  })
})

describe('cgroup files', () => {
  test('keyed files, pid lists, limits', () => {
    assert.deepEqual(Object.fromEntries(parseKeyed('populated 1\nfrozen 0\n')), { populated: 1, frozen: 0 })
    assert.equal(parseKeyed('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n').get('oom_kill'), 3)
    assert.equal(parseKeyed('low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 1\n').get('oom_kill'), 1)
    assert.deepEqual(parsePids('12\n13\n\n'), [12, 13])
    assert.deepEqual(parsePids(null), [])
    assert.equal(parseLimit('max\n'), null)
    assert.equal(parseLimit('9223372036854771712\n'), null, 'v1 "unlimited"')
    assert.equal(parseLimit('536870912\n'), 536870912)
  })

  test('CPU weight and quota from cores; harvested tasks at the bottom', () => {
    assert.equal(v2CpuWeight({ cores: 2, harvested: false, memoryBytes: null }), 200)
    assert.equal(v2CpuWeight({ cores: 2, harvested: true, memoryBytes: null }), 1)
    assert.equal(v2CpuWeight({ cores: 500, harvested: false, memoryBytes: null }), 10_000)
    assert.equal(v2CpuMax(1.5), '150000 100000')
    assert.equal(v1Shares({ cores: 2, harvested: false, memoryBytes: null }), 2048)
    assert.equal(v1Shares({ cores: 2, harvested: true, memoryBytes: null }), 2)
  })
})

describe('launching into a group', () => {
  const fakeGroups = (controllers: string[]): TaskGroups => ({ ...openProcessTree('test'), controllers: new Set(controllers) })
  const group = (files: string[]): TaskGroup => ({ procFiles: files } as unknown as TaskGroup)

  test('settings: cgroup files; RLIMIT_DATA only when no memory cgroup enforces the request', () => {
    const limits = { memoryBytes: 512 * 2 ** 20, cores: 1, harvested: true }
    assert.deepEqual(launchSettings(fakeGroups(['memory', 'cpu']), group(['/sys/fs/cgroup/memory/m/7/cgroup.procs']), limits), { procFiles: ['/sys/fs/cgroup/memory/m/7/cgroup.procs'], nice: 19, ioIdle: true, rlimitDataBytes: null })
    assert.deepEqual(launchSettings(fakeGroups([]), group([]), { ...limits, harvested: false }), { procFiles: [], nice: 0, ioIdle: false, rlimitDataBytes: 512 * 2 ** 20 })
  })

  test('the shell form for the Node launcher quotes paths and commands', () => {
    const s = { procFiles: ["/sys/fs/cgroup/x y/it's/cgroup.procs"], nice: 19, ioIdle: true, rlimitDataBytes: 64 * 2 ** 20 }
    const script = wrapShellCommand(s, "echo 'hi' && sleep 1")
    assert.equal(script, [
      `echo 0 > '/sys/fs/cgroup/x y/it'\\''s/cgroup.procs' || { echo "meshfarm: cannot join cgroup /sys/fs/cgroup/x y/it's/cgroup.procs" >&2; exit 125; }`,
      'ulimit -d 65536 || exit 125',
      `exec nice -n 19 ionice -c 3 /bin/sh -c 'echo '\\''hi'\\'' && sleep 1'`
    ].join('\n'))
    assert.equal(wrapShellCommand({ procFiles: [], nice: 0, ioIdle: true, rlimitDataBytes: null }, 'true', { ionice: false }), "exec /bin/sh -c 'true'")
  })

  test('a memory kill reads truthfully: at the limit under a hard limit, used-of-request where nothing capped it', () => {
    const MiB = 2 ** 20
    assert.deepEqual(memoryFailure({ oomKilled: true, oomKills: 1, peakBytes: 512 * MiB, limitBytes: 512 * MiB }, 512 * MiB), { kind: 'memory', message: 'needed more than its 512 MiB of memory (peak 512 MiB, at the limit): killed by the kernel; ask for more memory', retryable: false })
    assert.equal(memoryFailure({ oomKilled: true, oomKills: 1, peakBytes: null, limitBytes: null }, 2 ** 30).message, 'needed more than its 1.0 GiB of memory: killed by the kernel; ask for more memory')
    assert.equal(memoryFailure({ oomKilled: true, oomKills: 1, peakBytes: 2.1 * 2 ** 30, limitBytes: null }, 512 * MiB).message, 'used 2.1 GiB of its 512 MiB: stopped')
    assert.equal(memoryFailure({ oomKilled: true, oomKills: 1, peakBytes: 3 * MiB, limitBytes: null }, null).message, 'ran out of memory (peak 3.0 MiB): killed by the kernel')
  })
})
