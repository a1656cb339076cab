import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { parseSessionIds, parseShowSession, logindView } from '../../node/harvest/sources/logind.ts'
import { ttyReading, type TtyEntry } from '../../node/harvest/sources/ttys.ts'
import { checkPresenceReport, helperReading } from '../../node/harvest/sources/helper.ts'
import { parseBusctlUint, parseDbusBool, parseGdbusUint, parseXprintidle, pickIdleProbe, shouldPost, type Exec } from '../../node/harvest/presence-helper.ts'
import { loadNotOurs, parseProcStatCpu } from '../../node/harvest/sources/load.ts'
import { gpuReading, parseComputeApps } from '../../node/harvest/sources/gpu.ts'
import { injectedReading, parseInjected } from '../../node/harvest/sources/injected.ts'
import { composeObservation, presenceStartLine } from '../../node/harvest/compose.ts'
import type { Reading } from '../../node/harvest/types.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'

const NOW = 1_800_000_000_000
const MONO = 9_000_000 // ms of CLOCK_MONOTONIC at NOW

// `loginctl list-sessions --no-legend` from systemd 252 (Debian 12) and 256 (new columns).
const LIST_252 = '      2 1000 alice seat0 tty2 \n      5 1001 bob         pts/1\n     c1  120 gdm   seat0 tty1 \n'
const LIST_256 = '2 1000 alice seat0 1834 user   tty2 no  -\n5 1001 bob   -     2291 user   pts/1 yes 20min\nc1 120 gdm seat0 1201 greeter tty1 no -\n'

// `loginctl show-session 2 5 c1 7 9 -p ...`: GNOME idle with hint, ssh tty, greeter, KDE without hint, closing.
const SHOW = `Id=2
User=1000
Name=alice
Class=user
State=active
Active=yes
Type=wayland
Remote=no
TTY=tty2
Seat=seat0
IdleHint=yes
IdleSinceHint=1799998800000000
IdleSinceHintMonotonic=7800000000
LockedHint=no

Id=5
User=1001
Name=bob
Class=user
State=online
Active=no
Type=tty
Remote=yes
TTY=pts/1
IdleHint=no
IdleSinceHint=0
IdleSinceHintMonotonic=0
LockedHint=no

Id=c1
User=120
Name=gdm
Class=greeter
State=online
Active=no
Type=wayland
Remote=no
TTY=tty1
Seat=seat0
IdleHint=no
LockedHint=no

Id=7
User=1002
Name=carol
Class=user
State=active
Active=yes
Type=x11
Remote=no
Seat=seat1
IdleHint=no
IdleSinceHint=0
IdleSinceHintMonotonic=0
LockedHint=no

Id=9
User=1003
Name=dave
Class=user
State=closing
Active=no
Type=tty
TTY=tty5
IdleHint=no
LockedHint=no
`

describe('logind', () => {
  test('session ids from old and new list-sessions columns', () => {
    assert.deepEqual(parseSessionIds(LIST_252), ['2', '5', 'c1'])
    assert.deepEqual(parseSessionIds(LIST_256), ['2', '5', 'c1'])
    assert.deepEqual(parseSessionIds('\nNo sessions.\n'), [], 'an old loginctl\'s legend is not a session')
    assert.deepEqual(parseSessionIds(''), [])
  })

  test('show-session blocks, by blank line or by a repeated key', () => {
    const s = parseShowSession(SHOW)
    assert.deepEqual(s.map(x => x.id), ['2', '5', 'c1', '7', '9'])
    assert.deepEqual(s[0], { id: '2', uid: 1000, name: 'alice', class: 'user', state: 'active', active: true, type: 'wayland', remote: false, tty: 'tty2', seat: 'seat0', idleHint: true, idleSinceUs: 1799998800000000, idleSinceMonoUs: 7800000000, locked: false })
    const squeezed = parseShowSession(SHOW.replace(/\n\n/g, '\n'))
    assert.deepEqual(squeezed.map(x => x.id), ['2', '5', 'c1', '7', '9'])
    assert.deepEqual(parseShowSession('garbage\n=x\n'), [])
  })

  test('channels: user sessions that take input; the hint gives idle time (monotonic first); no hint is blind', () => {
    const v = logindView(parseShowSession(SHOW), NOW, MONO, new Map())
    const ch = v.reading.channels!
    assert.deepEqual(ch.map(c => c.key), ['session:2', 'session:5', 'session:7'], 'greeter and closing sessions are not channels')
    assert.equal(ch[0].idleMs, 1_200_000, 'monotonic: 9000 s - 7800 s')
    assert.equal(ch[0].how, 'idle hint')
    assert.equal(ch[1].idleMs, null, 'tty session: its terminal tells')
    assert.equal(ch[1].tty, 'pts/1')
    assert.equal(ch[2].idleMs, null, 'KDE-style x11 session without hint: unknown')
    assert.equal(v.reading.sessions, 3)
    assert.match(v.reading.detail, /logind: 3 sessions; session 2 \(wayland, alice\) idle hint 20 min; 2 without input/)
    // Realtime when the monotonic stamp is missing.
    const rt = logindView(parseShowSession(SHOW.replace('IdleSinceHintMonotonic=7800000000', 'IdleSinceHintMonotonic=0')), NOW, MONO, new Map())
    assert.equal(rt.reading.channels![0].idleMs, 1_200_000)
  })

  test('a locked screen without a hint is idle since it was first seen locked', () => {
    const locked = SHOW.replace('Id=7\nUser=1002\nName=carol\nClass=user\nState=active\nActive=yes\nType=x11\nRemote=no\nSeat=seat1\nIdleHint=no\nIdleSinceHint=0\nIdleSinceHintMonotonic=0\nLockedHint=no', 'Id=7\nUser=1002\nName=carol\nClass=user\nState=active\nActive=yes\nType=x11\nRemote=no\nSeat=seat1\nIdleHint=no\nLockedHint=yes')
    const first = logindView(parseShowSession(locked), NOW, MONO, new Map())
    assert.equal(first.reading.channels!.find(c => c.key === 'session:7')!.idleMs, 0)
    const later = logindView(parseShowSession(locked), NOW + 600_000, MONO + 600_000, first.lockedSeen)
    const c7 = later.reading.channels!.find(c => c.key === 'session:7')!
    assert.equal(c7.idleMs, 600_000)
    assert.equal(c7.how, 'screen locked')
    const unlocked = logindView(parseShowSession(SHOW), NOW + 700_000, MONO + 700_000, later.lockedSeen)
    assert.equal(unlocked.lockedSeen.size, 0, 'unlocking forgets')
  })

  test('a graphical session switched away from on its seat takes no input', () => {
    const v = logindView(parseShowSession(SHOW.replace('Active=yes\nType=wayland', 'Active=no\nType=wayland')), NOW, MONO, new Map())
    assert.ok(!v.reading.channels!.some(c => c.key === 'session:2'))
  })
})

describe('ttys', () => {
  const entries: TtyEntry[] = [
    { name: 'pts/0', uid: 1000, atimeMs: NOW - 20_000, rdev: 34816 },
    { name: 'pts/3', uid: 0, atimeMs: NOW - 3_600_000, rdev: 34819 },
    { name: 'tty1', uid: 0, atimeMs: NOW - 86_400_000, rdev: 1025 },
    { name: 'tty2', uid: 1000, atimeMs: NOW - 600_000, rdev: 1026 },
    { name: 'pts/7', uid: 1000, atimeMs: NOW - 1000, rdev: 34823 }
  ]

  test('ptys and logged-in consoles are sessions; root consoles are only evidence; task terminals left out', () => {
    const r = ttyReading(entries, NOW, new Set([34823]))
    assert.deepEqual(r.channels!.map(c => [c.label, c.idleMs]), [['pts/0', 20_000], ['pts/3', 3_600_000], ['tty2', 600_000]])
    assert.deepEqual(r.signals!.map(c => c.label), ['tty1'])
    assert.equal(r.sessions, 3)
    assert.equal(r.detail, "ttys: 3 in use, last input 20 s ago on pts/0, 1 of meshfarm's tasks left out")
  })

  test('beside logind, terminals are evidence only', () => {
    const r = ttyReading(entries, NOW, new Set(), true)
    assert.equal(r.channels, undefined)
    assert.equal(r.sessions, undefined)
    assert.equal(r.signals!.length, 5)
  })
})

describe('presence helper', () => {
  test('D-Bus and xprintidle answers', () => {
    assert.equal(parseGdbusUint('(uint64 12345,)\n'), 12345)
    assert.equal(parseGdbusUint('(uint32 7,)'), 7)
    assert.equal(parseGdbusUint('(12,)'), 12)
    assert.equal(parseGdbusUint('Error: GDBus.Error:org.freedesktop.DBus.Error.ServiceUnknown'), null)
    assert.equal(parseBusctlUint('t 98765\n'), 98765)
    assert.equal(parseBusctlUint('s "x"'), null)
    assert.equal(parseDbusBool('(true,)'), true)
    assert.equal(parseDbusBool('b false'), false)
    assert.equal(parseDbusBool('(uint32 1,)'), null)
    assert.equal(parseXprintidle('4242\n'), 4242)
    assert.equal(parseXprintidle("couldn't open display"), null)
  })

  test('the first interface that answers is used: GNOME, then KDE, then X11', async () => {
    const kde: Exec = async (file, args) => {
      if (file === 'gdbus' && args.includes('org.freedesktop.ScreenSaver')) return args.at(-1)!.endsWith('GetActive') ? '(false,)' : '(uint32 5000,)'
      throw new Error(`${file}: not here`)
    }
    const picked = await pickIdleProbe(kde)
    assert.equal(picked.probe?.via, 'kde')
    assert.deepEqual(await picked.probe!.ask(kde), { idleMs: 5000, locked: false })
    assert.match(picked.tried[0], /^gnome: gdbus: not here/)
    // No gdbus: the same calls through busctl --user.
    const busctlOnly: Exec = async (file, args) => {
      if (file === 'gdbus') throw new Error('no gdbus (ENOENT)')
      if (file === 'busctl' && args.join(' ') === '--user call org.gnome.Mutter.IdleMonitor /org/gnome/Mutter/IdleMonitor/Core org.gnome.Mutter.IdleMonitor GetIdletime') return 't 777\n'
      if (file === 'busctl' && args.includes('org.gnome.ScreenSaver')) return 'b true\n'
      throw new Error(`${file}: not here`)
    }
    const gnome = await pickIdleProbe(busctlOnly)
    assert.equal(gnome.probe?.via, 'gnome')
    assert.deepEqual(await gnome.probe!.ask(busctlOnly), { idleMs: 777, locked: true })
    const none = await pickIdleProbe(async () => { throw new Error('no session bus') })
    assert.equal(none.probe, null)
    assert.equal(none.tried.length, 3)
  })

  test('posts on new input or on the heartbeat', () => {
    assert.equal(shouldPost(null, 5000, NOW, 10_000), true)
    assert.equal(shouldPost({ idleMs: 5000, at: NOW }, 7000, NOW + 2000, 10_000), false, 'still idle: wait for the heartbeat')
    assert.equal(shouldPost({ idleMs: 5000, at: NOW }, 100, NOW + 2000, 10_000), true, 'input since the last post')
    assert.equal(shouldPost({ idleMs: 5000, at: NOW }, 15_000, NOW + 10_000, 10_000), true, 'heartbeat')
  })

  test('reports are checked field by field; fresh ones are aged, stale ones named', () => {
    const r = checkPresenceReport({ idleMs: 1000, via: 'gnome', session: '2', uid: 1000, locked: false })
    assert.deepEqual(r, { idleMs: 1000, via: 'gnome', session: '2', uid: 1000, locked: false })
    for (const [bad, field] of [[null, 'report'], [[], 'report'], [{ idleMs: -1, via: 'x', uid: 1 }, 'idleMs'], [{ idleMs: 1.5, via: 'x', uid: 1 }, 'idleMs'],
      [{ idleMs: 1, via: 'Bad Name!', uid: 1 }, 'via'], [{ idleMs: 1, via: 'x', uid: 1, session: '../x' }, 'session'], [{ idleMs: 1, via: 'x', uid: -3 }, 'uid'],
      [{ idleMs: 1, via: 'x', uid: 1, locked: 'yes' }, 'locked']] as const) {
      assert.throws(() => checkPresenceReport(bad), (e: unknown) => isMeshfarmError(e) && e.code === 'PROTOCOL' && e.message.startsWith(`presence report: ${field}:`))
    }
    const read = helperReading([{ report: r, at: NOW - 4000 }, { report: { ...r, uid: 1001, session: null }, at: NOW - 60_000 }], NOW, 30_000)
    assert.deepEqual(read.signals!.map(s => [s.key, s.idleMs, s.sessionId]), [['helper:1000:2', 5000, '2']])
    assert.match(read.detail, /uid 1001 silent 1 min/)
  })
})

describe('load and GPU', () => {
  test('/proc/stat busy seconds; load not ours from two samples', () => {
    const stat = 'cpu  10000 500 3000 800000 2000 100 200 50 0 0\ncpu0 5000 250 1500 400000 1000 50 100 25 0 0\nintr 1 2 3\n'
    assert.equal(parseProcStatCpu(stat), (10000 + 500 + 3000 + 100 + 200 + 50) / 100)
    assert.equal(parseProcStatCpu('intr 1\n'), null)
    const a = { at: NOW, busySec: 1000, oursSec: 50 }
    assert.equal(loadNotOurs(a, { at: NOW + 10_000, busySec: 1015, oursSec: 60 }), 0.5, '15 s busy, 10 ours, over 10 s')
    assert.equal(loadNotOurs(a, { at: NOW + 10_000, busySec: 1010, oursSec: 61 }), 0, 'never negative')
    assert.equal(loadNotOurs(a, { at: NOW, busySec: 1010, oursSec: 50 }), null, 'no time passed')
    assert.equal(loadNotOurs(a, { at: NOW + 1000, busySec: 10, oursSec: 50 }), null, 'counter went back')
  })

  test('nvidia-smi compute apps, ours left out', () => {
    const csv = '4242, 2048\n5151, 512 MiB\n6000, [N/A]\n'
    assert.deepEqual(parseComputeApps(csv), [{ pid: 4242, usedMb: 2048 }, { pid: 5151, usedMb: 512 }, { pid: 6000, usedMb: 0 }])
    assert.deepEqual(parseComputeApps('No running processes found\n'), [])
    assert.deepEqual(parseComputeApps(''), [])
    const r = gpuReading(parseComputeApps(csv), new Set([5151]))
    assert.deepEqual(r.foreignGpu, { processes: 2, memoryMb: 2048, pids: [4242, 6000] })
    assert.match(r.detail, /2 other processes \(pid 4242, 6000\) using 2048 MiB/)
    assert.match(gpuReading([{ pid: 1, usedMb: 9 }], new Set([1])).detail, /no other process on the GPUs \(1 of meshfarm's\)/)
  })
})

describe('injected source', () => {
  test('file -> reading; bad files are one line naming the field', () => {
    const s = parseInjected('{"lastInputAt": 1799999990000, "loadNotOurs": 0.1, "blind": ["session 3"]}', 'x.json')
    const r = injectedReading(s, NOW)
    assert.deepEqual(r.channels!.map(c => [c.label, c.idleMs]), [['injected', 10_000], ['session 3', null]])
    assert.equal(r.loadNotOurs, 0.1)
    assert.equal(r.sessions, 2)
    assert.throws(() => parseInjected('{"idle": 1}', 'x.json'), /^Error: x\.json: idle: unknown field/)
    assert.throws(() => parseInjected('{"idleMs": -5}', 'x.json'), /x\.json: idleMs: expected a number >= 0 or null/)
    assert.throws(() => parseInjected('[1]', 'x.json'), /x\.json: expected an object/)
    assert.throws(() => parseInjected('{', 'x.json'), /x\.json: not JSON/)
    assert.equal(injectedReading(parseInjected('{"sessions": 0}', 'x'), NOW).sessions, 0)
  })
})

describe('composing an observation', () => {
  const logind = (channels: Reading['channels'], sessions = channels!.length): Reading => ({ source: 'logind', channels, sessions, detail: 'logind' })

  test('the most recent input wins; a tty session is seen through its terminal', () => {
    const obs = composeObservation([
      logind([{ key: 'session:5', label: 'session 5 (tty, bob)', idleMs: null, kind: 'tty', tty: 'pts/1' }]),
      { source: 'ttys', signals: [{ key: 'tty:pts/1', label: 'pts/1', idleMs: 40_000, tty: 'pts/1', how: 'tty atime' }, { key: 'tty:pts/2', label: 'pts/2', idleMs: 900_000, tty: 'pts/2', how: 'tty atime' }], detail: 'ttys' },
      { source: 'load', loadNotOurs: 0.2, detail: 'load' },
      { source: 'gpu', foreignGpu: null, detail: 'gpu' }
    ], NOW)
    assert.deepEqual(obs.input, { idleMs: 40_000, from: 'session 5 (tty, bob) via pts/1 (tty atime)', blind: [], sessions: 1 })
    assert.equal(obs.loadNotOurs, 0.2)
    assert.equal(obs.foreignGpu, null)
    assert.deepEqual(obs.details, ['logind', 'ttys', 'load', 'gpu'])
  })

  test('a desktop without an idle hint is blind, unless the helper or the input devices see it', () => {
    const kde = { key: 'session:7', label: 'session 7 (wayland, carol)', idleMs: null, kind: 'graphical' as const, uid: 1002, sessionId: '7', remote: false }
    assert.deepEqual(composeObservation([logind([kde])], NOW).input.blind, ['session 7 (wayland, carol)'])
    const helper = (session: string | undefined, uid: number): Reading => ({ source: 'helper', signals: [{ key: `helper:${uid}:${session ?? '*'}`, label: `kde desktop of uid ${uid}`, idleMs: 300_000, uid, sessionId: session, kind: 'graphical', how: 'kde' }], detail: 'helper' })
    const seen = composeObservation([logind([kde]), helper('7', 1002)], NOW)
    assert.deepEqual(seen.input.blind, [])
    assert.equal(seen.input.idleMs, 300_000)
    assert.equal(composeObservation([logind([kde]), helper('8', 1002)], NOW).input.blind.length, 1, 'another session\'s report does not cover it')
    assert.equal(composeObservation([logind([kde]), helper(undefined, 1002)], NOW).input.blind.length, 0, 'a report without a session covers the user\'s desktops')
    assert.equal(composeObservation([logind([kde]), helper(undefined, 1003)], NOW).input.blind.length, 1, 'but not another user\'s')
    const input: Reading = { source: 'input', signals: [{ key: 'input', label: 'keyboard and mouse', idleMs: 5000, coversLocal: true, how: 'input devices' }], detail: 'input' }
    assert.equal(composeObservation([logind([kde]), input], NOW).input.idleMs, 5000)
    assert.equal(composeObservation([logind([{ ...kde, remote: true }]), input], NOW).input.blind.length, 1, 'input devices do not see remote desktops')
  })

  test('a failed session source is blind; failed load and GPU reads are just unknown', () => {
    const obs = composeObservation([{ source: 'logind', detail: 'logind: timeout', error: 'no answer in 3000 ms' }, { source: 'load', detail: 'load', error: 'x', loadNotOurs: null }], NOW)
    assert.deepEqual(obs.input.blind, ['logind: no answer in 3000 ms'])
    assert.equal(obs.loadNotOurs, null)
  })

  test('nobody logged in, and no source at all', () => {
    assert.deepEqual(composeObservation([logind([], 0)], NOW).input, { idleMs: null, from: null, blind: [], sessions: 0 })
    assert.deepEqual(composeObservation([], NOW).input, { idleMs: null, from: null, blind: [], sessions: null })
  })

  test('the start line says what is used and what is off, and why', () => {
    assert.equal(presenceStartLine([
      { name: 'logind', probe: { available: true, why: '2 sessions' } },
      { name: 'ttys', probe: { available: true, why: '3 in use, 6 consoles' } },
      { name: 'helper', probe: { available: true, why: 'socket ready at /run/meshfarm/owner.sock' } },
      { name: 'gpu', probe: { available: false, why: 'no nvidia-smi' } },
      { name: 'input', probe: { available: false, why: 'not root' } }
    ]), 'presence: logind (2 sessions), ttys (3 in use, 6 consoles), helper (socket ready at /run/meshfarm/owner.sock); gpu off (no nvidia-smi); input devices off (not root)')
    assert.equal(presenceStartLine([{ name: 'logind', probe: { available: false, why: 'no loginctl' } }]), 'presence: no source can tell: not lent unless its owner says meshfarm lend; logind off (no loginctl)')
  })
})
