import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Launcher, NODE_LAUNCHER, type RunRequest } from '../../node/launcher-client.ts'
import { nativeLauncher } from '../../node/native-launcher.ts'

let dir: string
let launcher: Launcher
let n = 0

// Both launchers pass the same tests: the Node one, and the native one built from launcher.c (where there is a
// C compiler; CI machines have one).
const buildDir = mkdtempSync(path.join(tmpdir(), 'meshfarm-launcher-build-'))
const native = nativeLauncher(buildDir, line => { console.log(line) })
const FLAVOURS: Array<[string, readonly string[] | null]> = [['node', NODE_LAUNCHER], ['native', native]]
after(() => { rmSync(buildDir, { recursive: true, force: true }) })

/** A request with fresh output files in the test folder. */
function req (commands: string[], extra: Partial<RunRequest> = {}): RunRequest {
  n++
  return {
    commands,
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stdoutPath: path.join(dir, `${n}.out`),
    stderrPath: path.join(dir, `${n}.err`),
    timeoutMs: 0,
    ...extra
  }
}

/** Alive means signalable and not a zombie (a container's pid 1 may never reap). */
function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return true // no /proc (macOS): kill(0) is all we have
  }
}

async function waitFor (cond: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting')
    await sleep(20)
  }
}

async function readPid (file: string): Promise<number> {
  let text = ''
  await waitFor(async () => {
    text = await readFile(file, 'utf8').catch(() => '')
    return text.trim() !== ''
  })
  return Number(text.trim())
}

for (const [flavour, command] of FLAVOURS) {
describe(`${flavour} launcher`, { skip: command == null ? 'no C compiler here' : false }, () => {
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'meshfarm-launcher-'))
    launcher = Launcher.start(command!)
  })
  after(async () => {
    await launcher.close()
    await rm(dir, { recursive: true, force: true })
  })

  describe('launcher', () => {
    test('true exits 0, false exits 1', async () => {
      const ok = await launcher.run(req(['true'])).done
      assert.equal(ok.exitCode, 0)
      assert.equal(ok.signal, null)
      assert.equal(ok.timedOut, false)
      assert.equal(ok.error, null)
      assert.ok(ok.endedAt >= ok.startedAt && ok.startedAt > 0)
      const bad = await launcher.run(req(['false'])).done
      assert.equal(bad.exitCode, 1)
    })

    test('stdout and stderr go to their files', async () => {
      const r = req(["sh -c 'echo out; echo err >&2'", 'echo second'])
      const res = await launcher.run(r).done
      assert.equal(res.exitCode, 0)
      assert.equal(await readFile(r.stdoutPath, 'utf8'), 'out\nsecond\n')
      assert.equal(await readFile(r.stderrPath, 'utf8'), 'err\n')
    })

    test('a sequence stops at the first failure', async () => {
      const r = req(['echo one', 'exit 3', 'echo never'])
      const res = await launcher.run(r).done
      assert.equal(res.exitCode, 3)
      assert.equal(await readFile(r.stdoutPath, 'utf8'), 'one\n')
    })

    test('env and cwd are used, on both the shell and the direct path', async () => {
      const r = req(['echo "$MESHFARM_X"', 'pwd', 'printenv MESHFARM_X', 'ls marker.txt'], { env: { PATH: process.env.PATH ?? '', MESHFARM_X: 'hello' } })
      await rm(path.join(dir, 'marker.txt'), { force: true })
      await import('node:fs/promises').then(async fs => await fs.writeFile(path.join(dir, 'marker.txt'), ''))
      const res = await launcher.run(r).done
      assert.equal(res.exitCode, 0, await readFile(r.stderrPath, 'utf8'))
      assert.equal(await readFile(r.stdoutPath, 'utf8'), `hello\n${dir}\nhello\nmarker.txt\n`)
    })

    test('an env assignment prefix goes through the shell', async () => {
      const r = req(['MESHFARM_Y=2 printenv MESHFARM_Y'])
      const res = await launcher.run(r).done
      assert.equal(res.exitCode, 0)
      assert.equal(await readFile(r.stdoutPath, 'utf8'), '2\n')
    })

    test('a missing command exits 127 on both paths', async () => {
      const direct = req(['no-such-command-meshfarm arg'])
      const res = await launcher.run(direct).done
      assert.equal(res.exitCode, 127)
      assert.match(res.error ?? '', /no-such-command-meshfarm: command not found/)
      assert.match(await readFile(direct.stderrPath, 'utf8'), /meshfarm: no-such-command-meshfarm: command not found/)
      const viaShell = await launcher.run(req(['no-such-command-meshfarm "quoted"'])).done
      assert.equal(viaShell.exitCode, 127)
    })

    test('a missing working folder is an error, not a missing command', async () => {
      const res = await launcher.run(req(['true'], { cwd: path.join(dir, 'nope') })).done
      assert.equal(res.exitCode, null)
      assert.match(res.error ?? '', /working folder not found/)
    })

    test('an unwritable output file is an error', async () => {
      const res = await launcher.run(req(['true'], { stdoutPath: path.join(dir, 'nope', 'x.out') })).done
      assert.equal(res.exitCode, null)
      assert.match(res.error ?? '', /cannot open output file/)
    })

    test('timeout kills sleep 30 quickly', async () => {
      const t0 = Date.now()
      const res = await launcher.run(req(['sleep 30'], { timeoutMs: 300 })).done
      const took = Date.now() - t0
      assert.equal(res.timedOut, true)
      assert.equal(res.exitCode, null)
      assert.equal(res.signal, 'SIGTERM')
      assert.ok(took < 1500, `took ${took} ms`)
    })

    test('kill takes the grandchild too, and onStart fires', async () => {
      const pidFile = path.join(dir, 'grandchild.pid')
      let started = false
      const { id, done } = launcher.run(req([`sh -c 'sleep 30 & echo $! > ${pidFile}; wait'`, 'echo never']), () => { started = true })
      const grandchild = await readPid(pidFile)
      assert.ok(alive(grandchild))
      assert.equal(started, true)
      assert.equal(launcher.running, 1)
      launcher.kill(id)
      const res = await done
      assert.equal(res.signal, 'SIGTERM')
      assert.equal(res.timedOut, false)
      await waitFor(() => !alive(grandchild))
      assert.equal(launcher.running, 0)
    })

    test('SIGTERM-ignoring tasks are escalated by an explicit SIGKILL', async () => {
      const pidFile = path.join(dir, 'stubborn.pid')
      const { id, done } = launcher.run(req([`trap '' TERM; echo $$ > ${pidFile}; while true; do sleep 0.05; done`]))
      const pid = await readPid(pidFile)
      launcher.kill(id, 'SIGTERM')
      await sleep(200)
      assert.ok(alive(pid), 'survives SIGTERM')
      launcher.kill(id, 'SIGKILL')
      const res = await done
      assert.equal(res.signal, 'SIGKILL')
      await waitFor(() => !alive(pid))
    })

    test('500 true tasks, 2 at a time', async () => {
      const total = 500
      let sent = 0
      let ok = 0
      const t0 = performance.now()
      async function worker (): Promise<void> {
        while (sent < total) {
          sent++
          const res = await launcher.run(req(['true'])).done
          if (res.exitCode === 0) ok++
        }
      }
      await Promise.all([worker(), worker()])
      const secs = (performance.now() - t0) / 1000
      console.log(`launcher: ${total} tasks of true in ${secs.toFixed(2)} s = ${Math.round(total / secs)} tasks/s (2 concurrent)`)
      assert.equal(ok, total)
    })
  })

  describe('launcher lifecycle', () => {
    test('close kills running tasks', async () => {
      const l = Launcher.start(command!)
      const pidFile = path.join(dir, 'close.pid')
      const { done } = l.run(req([`sh -c 'sleep 30 & echo $! > ${pidFile}; wait'`]))
      const grandchild = await readPid(pidFile)
      await l.close()
      const res = await done
      assert.equal(res.error, 'launcher closed')
      await waitFor(() => !alive(grandchild))
    })

    test('a launcher that dies fails pending runs and restarts on the next run', async () => {
      const l = Launcher.start(command!)
      const pidFile = path.join(dir, 'orphan.pid')
      const { done } = l.run(req([`sh -c 'echo $$ > ${pidFile}; exec sleep 30'`]))
      const orphan = await readPid(pidFile)
      const first = l.pid
      assert.ok(first != null)
      process.kill(first, 'SIGKILL')
      const res = await done
      assert.equal(res.error, 'launcher died')
      try { process.kill(-orphan, 'SIGKILL') } catch {} // SIGKILL leaves no chance to clean up
      const again = await l.run(req(['true'])).done
      assert.equal(again.exitCode, 0)
      assert.notEqual(l.pid, first)
      await l.close()
    })

    test('a task ignoring SIGTERM gets SIGKILL after the grace period', async () => {
      process.env.MESHFARM_KILL_GRACE_MS = '300' // read by the launcher at startup
      const l = Launcher.start(command!)
      delete process.env.MESHFARM_KILL_GRACE_MS
      const pidFile = path.join(dir, 'grace.pid')
      const { id, done } = l.run(req([`trap '' TERM; echo $$ > ${pidFile}; while true; do sleep 0.05; done`]))
      const pid = await readPid(pidFile)
      const t0 = Date.now()
      l.kill(id)
      const res = await done
      assert.equal(res.signal, 'SIGKILL')
      assert.ok(Date.now() - t0 >= 250, 'waited for the grace period')
      await waitFor(() => !alive(pid))
      await l.close()
    })

    test('the launcher exits when its stdin closes and replies survive partial lines', async () => {
      // Drive the launcher by hand: one request split across writes, byte by byte.
      const { spawn } = await import('node:child_process')
      const p = spawn(command![0], command!.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] })
      const out = path.join(dir, 'manual.out')
      const line = JSON.stringify({ op: 'run', id: 7, commands: ['echo é'], cwd: dir, env: process.env, stdout: out, stderr: out, timeoutMs: 0 }) + '\n'
      const bytes = Buffer.from(line)
      let replies = ''
      p.stdout.on('data', (c: Buffer) => { replies += c.toString() })
      for (let i = 0; i < bytes.length; i += 7) {
        p.stdin.write(bytes.subarray(i, i + 7))
        await sleep(0)
      }
      await waitFor(() => replies.includes('\n'))
      const reply = JSON.parse(replies.trim())
      assert.equal(reply.op, 'exit')
      assert.equal(reply.id, 7)
      assert.equal(reply.exitCode, 0)
      assert.equal(await readFile(out, 'utf8'), 'é\n')
      const exited = new Promise(resolve => p.once('exit', resolve))
      p.stdin.end()
      assert.equal(await exited, 0)
      assert.ok((await stat(out)).size > 0)
    })
  })
})
}
