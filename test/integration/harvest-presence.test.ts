/**
 * The presence sources this machine really has, probed and read, with what they found printed; a real pty's
 * input seen by the tty source; input devices drained (a FIFO stands in for /dev/input where the machine has none).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync, mkdtempSync, rmSync, utimesSync, existsSync, openSync, writeSync, closeSync, readFileSync, constants } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setupPresence, observe } from '../../node/harvest/compose.ts'
import { LogindSource } from '../../node/harvest/sources/logind.ts'
import { TtySource } from '../../node/harvest/sources/ttys.ts'
import { InputSource } from '../../node/harvest/sources/input.ts'
import { LoadSource } from '../../node/harvest/sources/load.ts'
import { GpuSource } from '../../node/harvest/sources/gpu.ts'
import { NO_OURS } from '../../node/harvest/types.ts'
import { pickIdleProbe, execText } from '../../node/harvest/presence-helper.ts'
import { waitUntil } from '../helpers/harvest-procs.ts'
import { openMachine } from '../../node/harvest/agent-harvest.ts'
import { DEFAULT_HARVEST_CONFIG } from '../../node/harvest/config.ts'
import { hereStatus } from '../../node/harvest/owner-control.ts'
import { CLI_ENTRY, TS_ARGS } from '../../bin/processes.ts'

const ctx = (now = Date.now()): { now: number, monotonicMs: number, ours: typeof NO_OURS } => ({ now, monotonicMs: Number(process.hrtime.bigint() / 1_000_000n), ours: NO_OURS })

test('every real source on this machine: probed, read, printed', async () => {
  for (const s of [new LogindSource(), new TtySource(), new InputSource(), new LoadSource(), new GpuSource()]) {
    const probe = await s.probe()
    const reading = await s.read(ctx())
    console.log(`# ${s.name}: ${probe.available ? 'available' : 'unavailable'} (${probe.why}); read: ${reading.detail}`)
    assert.ok(probe.why.length > 0 && !probe.why.includes('\n'), 'one line saying why')
    if (!probe.available) continue
    assert.equal(reading.error, undefined, `${s.name} read: ${reading.error}`)
  }
  const setup = await setupPresence({ helperSocket: '/run/meshfarm/owner.sock' })
  try {
    console.log(`# ${setup.line}`)
    assert.match(setup.line, /^presence: /)
    await observe(setup.sources, NO_OURS)
    await new Promise(resolve => setTimeout(resolve, 600)) // two load samples need time between them
    const obs = await observe(setup.sources, NO_OURS)
    console.log(`# observation: input ${JSON.stringify(obs.input)}, load not ours ${obs.loadNotOurs?.toFixed(2)}, gpu ${JSON.stringify(obs.foreignGpu)}`)
    for (const d of obs.details) console.log(`#   ${d}`)
    assert.ok(obs.loadNotOurs != null && obs.loadNotOurs >= 0)
  } finally {
    await setup.close()
  }
})

test('an agent with --harvest and no injected file: its start lines name this machine\'s real sources and cgroups; meshfarm presence reaches it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-machine-'))
  const lines: string[] = []
  const machine = await openMachine({
    cgroups: 'auto',
    harvest: { config: DEFAULT_HARVEST_CONFIG, inputDevices: false, ownerUid: null, ownerSocket: join(dir, 'owner.sock'), presenceFile: null, tickMs: 1000 }
  }, { stateDir: dir, features: new Set(['cgroup', 'nice', 'ioprio', 'rlimits']), log: l => { lines.push(l) } })
  try {
    for (const l of lines) console.log(`# ${l}`)
    const presence = lines.find(l => l.startsWith('agent: harvest: presence: '))
    assert.ok(presence != null, lines.join('\n'))
    assert.doesNotMatch(presence, /injected/)
    assert.match(presence, /ttys \(/, 'this machine has terminals')
    assert.match(lines[0], /^agent: cgroups/)

    // `meshfarm presence` as the desktop user would run it; this machine has no desktop, so a gdbus on PATH
    // answers as GNOME's Mutter would. Its posts reach the agent through the owner socket.
    const bin = join(dir, 'bin')
    mkdirSync(bin)
    writeFileSync(join(bin, 'gdbus'), '#!/bin/sh\ncase "$*" in *GetIdletime*) echo "(uint64 1500,)";; *GetActive*) echo "(false,)";; *) exit 1;; esac\n', { mode: 0o755 })
    const helper = spawn(process.execPath, [...TS_ARGS, CLI_ENTRY, '--home', dir, 'presence', '--socket', join(dir, 'owner.sock'), '--poll', '200ms'], { env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, XDG_SESSION_ID: '7' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let said = ''
    helper.stdout.on('data', (d: Buffer) => { said += d.toString() })
    helper.stderr.on('data', (d: Buffer) => { said += d.toString() })
    try {
      const seen = await waitUntil(async () => (await hereStatus({ socketPath: join(dir, 'owner.sock') })).sources.find(l => /^helper: 1 desktop reporting/.test(l)) ?? null, 'the helper\'s report in status --here', 30_000)
      console.log(`# ${said.trim()}; agent: ${seen}`)
      assert.match(seen, /^helper: 1 desktop reporting, gnome desktop of uid 0 session 7 idle \d+ s$/)
    } finally {
      helper.kill('SIGTERM')
    }
    assert.equal(await new Promise(resolve => helper.on('exit', code => resolve(code))), 0)
    assert.match(said, /presence: asking gnome for idle time/)
  } finally {
    await machine.close()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the presence helper on this machine: which desktop interface answers, or why none does', async () => {
  const picked = await pickIdleProbe(execText)
  console.log(`# helper: ${picked.probe != null ? `asks ${picked.probe.via}` : 'no desktop here'}${picked.tried.length > 0 ? ` (${picked.tried.join('; ')})` : ''}`)
  if (picked.probe == null) assert.equal(picked.tried.length, 3)
  for (const why of picked.tried) assert.ok(!why.includes('\n'), why)
})

test('logind: a machine without it says why (and is not taken for idle)', async t => {
  const probe = await new LogindSource().probe()
  if (probe.available) { t.skip(`logind runs here: ${probe.why}`); return }
  assert.match(probe.why, /^(no loginctl|no system bus|not booted with systemd|loginctl list-sessions: .+)$/)
  const reading = await new LogindSource().read(ctx())
  assert.ok(reading.error != null, 'a failed read is an error, which makes presence unknown')
})

test('ttys: input typed into a real pty shows as recent; an old pty as idle', async () => {
  // `script` allocates a pty; the shell inside reads one line from it and says so in a file, not on the pty:
  // input moves the terminal's access time, output its modification time, and only input is the owner's.
  const dir = mkdtempSync(join(tmpdir(), 'mf-pty-'))
  const mark = join(dir, 'got')
  const child = spawn('script', ['-q', '-c', `tty; read line; echo $line > ${mark}; sleep 30`, '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] })
  try {
    let out = ''
    child.stdout.on('data', d => { out += d })
    const pts = await waitUntil(() => /\/dev\/(pts\/\d+)/.exec(out)?.[1] ?? null, 'the pty name')
    const dev = `/dev/${pts}`
    const hourAgo = (Date.now() - 3600_000) / 1000
    utimesSync(dev, hourAgo, hourAgo) // as if nobody had typed there for an hour
    const src = new TtySource()
    const before = (await src.read(ctx())).channels!.find(c => c.label === pts)!
    console.log(`# ${pts} before typing: idle ${Math.round(before.idleMs! / 1000)} s`)
    assert.ok(before.idleMs! > 3500_000)
    child.stdin.write('hello\n')
    await waitUntil(() => existsSync(mark) && readFileSync(mark, 'utf8') === 'hello\n', 'the shell reading the line')
    const after = (await src.read(ctx())).channels!.find(c => c.label === pts)!
    console.log(`# ${pts} after typing: idle ${Math.round(after.idleMs! / 1000)} s`)
    assert.ok(after.idleMs! < 10_000, `input seen: ${after.idleMs} ms`)
    // A task's own terminal is not the owner's.
    const rdev = (await import('node:fs')).statSync(dev).rdev
    assert.equal((await src.read({ ...ctx(), ours: { ...NO_OURS, ttys: new Set([rdev]) } })).channels!.some(c => c.label === pts), false)
  } finally {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
})

test('input devices: off unless root, and any event is input now', async () => {
  assert.deepEqual(await new InputSource({ isRoot: false }).probe(), { available: false, why: 'not root' })
  const real = await new InputSource().probe()
  console.log(`# /dev/input here: ${real.available ? 'available' : 'unavailable'} (${real.why})`)
  // This machine has no /dev/input: a FIFO named like an event device carries real bytes through the same reads.
  const dir = mkdtempSync(join(tmpdir(), 'mf-input-'))
  let clock = 1_000_000
  const src = new InputSource({ dir, isRoot: true, pollMs: 3_600_000, now: () => clock })
  try {
    execFileSync('mkfifo', [join(dir, 'event0')])
    assert.ok(existsSync(join(dir, 'event0')))
    assert.deepEqual(await src.probe(), { available: true, why: '1 device' })
    await src.start()
    clock += 60_000
    await src.drain()
    const quiet = await src.read(ctx(clock))
    assert.equal(quiet.signals![0].idleMs, 60_000, 'nothing since start: idle at least since then')
    assert.equal(quiet.signals![0].coversLocal, true)
    const w = openSync(join(dir, 'event0'), constants.O_WRONLY | constants.O_NONBLOCK)
    writeSync(w, Buffer.alloc(24, 1)) // one struct input_event
    clock += 5000
    await src.drain()
    closeSync(w)
    clock += 2000
    const busy = await src.read(ctx(clock))
    assert.equal(busy.signals![0].idleMs, 2000)
    assert.match(busy.detail, /1 open, last event 2 s ago/)
  } finally {
    await src.close()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('gpu: without nvidia-smi the source is unavailable, not "idle"', async t => {
  const probe = await new GpuSource().probe()
  if (probe.available) { t.skip(`nvidia-smi here: ${probe.why}`); return }
  assert.equal(probe.why, 'no nvidia-smi')
  const reading = await new GpuSource().read(ctx())
  assert.equal(reading.foreignGpu, null)
})
