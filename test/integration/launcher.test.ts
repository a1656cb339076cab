/**
 * Both task launchers (launcher.c, built here with the machine's C compiler, and launcher.mjs) pass the same
 * tests: spawn, signal, wait, with real processes. What only one of them can do is tested where its hello
 * says it can, and the other must refuse it.
 */
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat, writeFile, symlink } from 'node:fs/promises'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { Launcher, NODE_LAUNCHER, type SpawnRequest } from '../../node/launcher/client.ts'
import { nativeLauncher } from '../../node/launcher/native.ts'
import { alive, readPid, waitFor } from '../helpers/processes.ts'

let dir: string
let launcher: Launcher
let n = 0

const buildDir = mkdtempSync(path.join(tmpdir(), 'meshfarm-launcher-build-'))
const native = nativeLauncher(buildDir, line => { console.log(line) })
const FLAVOURS: Array<[string, readonly string[] | null]> = [['node', NODE_LAUNCHER], ['native', native]]
after(() => { rmSync(buildDir, { recursive: true, force: true }) })

/** A request with fresh output files in the test folder. */
function req (argv: string[], extra: Partial<SpawnRequest> = {}): SpawnRequest {
  n++
  return { argv, cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdoutPath: path.join(dir, `${n}.out`), stderrPath: path.join(dir, `${n}.err`), ...extra }
}

const sh = (script: string, extra: Partial<SpawnRequest> = {}): SpawnRequest => req(['/bin/sh', '-c', script], extra)

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

    test('it says what it can do', async () => {
      const features = await launcher.features
      if (flavour === 'native') assert.deepEqual([...features].sort(), ['cgroup', 'ioprio', 'nice', 'peak-memory', 'rlimits', 'sandbox', 'user'])
      else assert.deepEqual([...features].sort(), ['cgroup', 'nice', 'user'])
    })

    test('true exits 0, false exits 1, and onStart fires before the exit', async () => {
      let startedPid = 0
      const ok = await launcher.spawn(req(['true']), pid => { startedPid = pid }).done
      assert.equal(ok.exitCode, 0)
      assert.equal(ok.signal, null)
      assert.equal(ok.error, null)
      assert.ok(startedPid > 0)
      assert.ok(ok.endedAt >= ok.startedAt && ok.startedAt > 0)
      assert.equal((await launcher.spawn(req(['false'])).done).exitCode, 1)
    })

    test('stdout and stderr go to their files, private whatever the umask; stdout turns read-only when the task ends', async () => {
      const r = sh('echo out; echo err >&2; umask')
      const res = await launcher.spawn(r).done
      assert.equal(res.exitCode, 0)
      assert.equal(await readFile(r.stdoutPath, 'utf8'), 'out\n0022\n', 'tasks get the usual umask')
      assert.equal(await readFile(r.stderrPath, 'utf8'), 'err\n')
      assert.equal(res.stdoutBytes, 9)
      // 0400 once the task has exited: a restarted agent tells a task that ended from one that died with it.
      assert.equal((await stat(r.stdoutPath)).mode & 0o777, 0o400)
      assert.equal((await stat(r.stderrPath)).mode & 0o777, 0o600)
    })

    test('a task still running keeps its stdout writable (0600): what a restarted agent counts as died with it', async () => {
      const r = sh('sleep 30')
      let started!: () => void
      const running = new Promise<void>(resolve => { started = resolve })
      const run = launcher.spawn(r, () => { started() })
      await running
      assert.equal((await stat(r.stdoutPath)).mode & 0o777, 0o600)
      launcher.signal(run.id, 'SIGKILL')
      await run.done
      assert.equal((await stat(r.stdoutPath)).mode & 0o777, 0o400)
    })

    test('env and cwd are used; envAdd lays variables over the launcher\'s own, less MESHFARM_*', async () => {
      await writeFile(path.join(dir, 'marker.txt'), '')
      const r = sh('echo "$MESHFARM_X"; pwd; ls marker.txt', { env: { PATH: process.env.PATH ?? '', MESHFARM_X: 'hello' } })
      assert.equal((await launcher.spawn(r).done).exitCode, 0)
      assert.equal(await readFile(r.stdoutPath, 'utf8'), `hello\n${dir}\nmarker.txt\n`)
      const add = sh('echo "$MESHFARM_Y:${HOME:+home}"', { env: undefined, envAdd: { MESHFARM_Y: 'added' } })
      assert.equal((await launcher.spawn(add).done).exitCode, 0)
      assert.equal(await readFile(add.stdoutPath, 'utf8'), 'added:home\n')
    })

    test('a missing program exits 127 with the shell\'s words; a missing folder is an error', async () => {
      const direct = req(['no-such-command-meshfarm', 'arg'])
      const res = await launcher.spawn(direct).done
      assert.equal(res.exitCode, 127)
      assert.match(res.error ?? '', /no-such-command-meshfarm: command not found/)
      assert.match(await readFile(direct.stderrPath, 'utf8'), /meshfarm: no-such-command-meshfarm: command not found/)
      const gone = await launcher.spawn(req(['true'], { cwd: path.join(dir, 'nope') })).done
      assert.equal(gone.exitCode, null)
      assert.match(gone.error ?? '', /working folder not found/)
    })

    test('an unwritable output file is an error, and a symlink planted at its name is not followed', async () => {
      const res = await launcher.spawn(req(['true'], { stdoutPath: path.join(dir, 'nope', 'x.out') })).done
      assert.equal(res.exitCode, null)
      assert.match(res.error ?? '', /cannot open output file/)
      const victim = path.join(dir, 'victim.txt')
      await writeFile(victim, 'precious\n')
      const planted = path.join(dir, 'planted.out')
      await symlink(victim, planted)
      const r = await launcher.spawn(sh('echo overwritten', { stdoutPath: planted, stderrPath: planted })).done
      assert.match(r.error ?? '', /cannot open output file/)
      assert.equal(await readFile(victim, 'utf8'), 'precious\n')
    })

    test('a signal reaches the task\'s whole process group, grandchild included', async () => {
      const pidFile = path.join(dir, 'grandchild.pid')
      const { id, done } = launcher.spawn(sh(`sleep 30 & echo $! > ${pidFile}; wait`))
      const grandchild = await readPid(pidFile)
      assert.ok(alive(grandchild))
      assert.equal(launcher.running, 1)
      launcher.signal(id, 'SIGTERM')
      const res = await done
      assert.equal(res.signal, 'SIGTERM')
      await waitFor(() => !alive(grandchild))
      assert.equal(launcher.running, 0)
    })

    test('SIGSTOP freezes a task and SIGCONT thaws it; a task ignoring SIGTERM ends with SIGKILL', async () => {
      const ticks = path.join(dir, 'ticks.txt')
      const { id, done } = launcher.spawn(sh(`trap '' TERM; while true; do echo x >> ${ticks}; sleep 0.05; done`))
      await waitFor(() => existsSync(ticks))
      launcher.signal(id, 'SIGSTOP')
      await new Promise(resolve => setTimeout(resolve, 200))
      const frozen = readFileSync(ticks, 'utf8').length
      await new Promise(resolve => setTimeout(resolve, 300))
      assert.ok(readFileSync(ticks, 'utf8').length - frozen <= 2, 'no progress while stopped')
      launcher.signal(id, 'SIGCONT')
      await waitFor(() => readFileSync(ticks, 'utf8').length > frozen + 4)
      launcher.signal(id, 'SIGTERM')
      await new Promise(resolve => setTimeout(resolve, 200))
      assert.equal(launcher.running, 1, 'survives SIGTERM')
      launcher.signal(id, 'SIGKILL')
      assert.equal((await done).signal, 'SIGKILL')
    })

    test('cgroup.procs files are entered before the program runs', { skip: process.getuid?.() !== 0 || !existsSync('/sys/fs/cgroup/pids') ? 'needs root and a pids cgroup' : false }, async () => {
      const cg = `/sys/fs/cgroup/pids/meshfarm-test-${process.pid}-${flavour}`
      mkdirSync(cg, { recursive: true })
      try {
        const r = sh('grep pids /proc/self/cgroup', { cgroupProcs: [path.join(cg, 'cgroup.procs')] })
        assert.equal((await launcher.spawn(r).done).exitCode, 0)
        assert.match(await readFile(r.stdoutPath, 'utf8'), new RegExp(`meshfarm-test-${process.pid}-${flavour}`))
      } finally {
        rmdirSync(cg)
      }
    })

    test('a task of another user enters its cgroup too, and runs as that user', { skip: process.getuid?.() !== 0 || !existsSync('/sys/fs/cgroup/pids') ? 'needs root and a pids cgroup' : false }, async () => {
      const cg = `/sys/fs/cgroup/pids/meshfarm-test-user-${process.pid}-${flavour}`
      mkdirSync(cg, { recursive: true })
      try {
        const r = sh('grep pids /proc/self/cgroup; id -u; id -G', { cgroupProcs: [path.join(cg, 'cgroup.procs')], user: { uid: 65534, gid: 65534 }, cwd: '/' })
        const res = await launcher.spawn(r).done
        assert.equal(res.exitCode, 0, `${res.error ?? ''} ${await readFile(r.stderrPath, 'utf8').catch(() => '')}`)
        const [cgroup, uid, groups] = (await readFile(r.stdoutPath, 'utf8')).trim().split('\n')
        assert.match(cgroup, new RegExp(`meshfarm-test-user-${process.pid}-${flavour}`))
        assert.equal(uid, '65534')
        assert.equal(groups, '65534', 'no supplementary groups of the launcher\'s')
      } finally {
        rmdirSync(cg)
      }
    })

    test('nice applies; limits and I/O priority where the launcher can, refused where it cannot', async () => {
      const r = sh('cut -d" " -f19 /proc/self/stat; ulimit -n', { nice: 7 })
      const withLimits = { ...r, rlimits: { nofile: [64, 64] as [number, number] }, ioprio: { class: 2, level: 7 } }
      const res = await launcher.spawn(flavour === 'native' ? withLimits : r).done
      assert.equal(res.exitCode, 0, res.error ?? '')
      const [niceness, nofile] = (await readFile(r.stdoutPath, 'utf8')).trim().split('\n')
      assert.equal(niceness, '7')
      if (flavour === 'native') assert.equal(nofile, '64')
      else assert.match((await launcher.spawn(withLimits).done).error ?? '', /cannot set I\/O priority or resource limits/)
    })

    test('a sandbox is built by the native launcher and refused by the other', async () => {
      const hidden = path.join(dir, 'hidden')
      const own = path.join(dir, 'own')
      mkdirSync(path.join(hidden, 'inner'), { recursive: true })
      mkdirSync(own, { recursive: true })
      await writeFile(path.join(hidden, 'secret'), 'x')
      const root = process.getuid?.() === 0
      const r = sh(`cat ${hidden}/secret; ls ${hidden}; echo ok > ${own}/made; ls /proc | grep -c '^[0-9]'`, {
        cwd: own, sandbox: { userns: !root, hide: [hidden], binds: [{ src: own, dst: path.join(hidden, 'inner'), ro: false }] }
      })
      const res = await launcher.spawn(r).done
      if (flavour !== 'native') {
        assert.match(res.error ?? '', /cannot build a sandbox/)
        return
      }
      assert.equal(res.exitCode, 0, await readFile(r.stderrPath, 'utf8'))
      assert.match(await readFile(r.stderrPath, 'utf8'), /secret: No such file/)
      const [listing, pids] = (await readFile(r.stdoutPath, 'utf8')).trim().split('\n')
      assert.equal(listing, 'inner', 'the cover is empty but for the bind')
      assert.ok(Number(pids) <= 4, `/proc shows only the sandbox's processes (init, sh, ls, grep): ${pids}`)
      assert.equal(readFileSync(path.join(own, 'made'), 'utf8'), 'ok\n')
    })

    test('the native launcher reports peak memory and stays the parent of what a task double-forks', { skip: flavour !== 'native' }, async () => {
      const pidFile = path.join(dir, 'orphan.pid')
      const r = await launcher.spawn(sh(`(sleep 30 & echo $! > ${pidFile}) ; true`)).done
      assert.ok((r.peakMemoryBytes ?? 0) > 100_000)
      const orphan = await readPid(pidFile)
      const ppid = Number(readFileSync(`/proc/${orphan}/stat`, 'utf8').split(') ')[1].split(' ')[1])
      assert.equal(ppid, launcher.pid, 'reparented to the launcher (child subreaper), not to init')
      process.kill(orphan, 'SIGKILL')
    })

    test('500 true tasks, 2 at a time', async () => {
      const total = 500
      let sent = 0
      let ok = 0
      const t0 = performance.now()
      async function worker (): Promise<void> {
        while (sent < total) {
          sent++
          if ((await launcher.spawn(req(['true'])).done).exitCode === 0) ok++
        }
      }
      await Promise.all([worker(), worker()])
      const secs = (performance.now() - t0) / 1000
      console.log(`${flavour} launcher: ${total} tasks of true in ${secs.toFixed(2)} s = ${Math.round(total / secs)} tasks/s (2 concurrent)`)
      assert.equal(ok, total)
    })

    test('close kills running tasks', async () => {
      const l = Launcher.start(command!)
      const pidFile = path.join(dir, 'close.pid')
      const { done } = l.spawn(sh(`sleep 30 & echo $! > ${pidFile}; wait`))
      const grandchild = await readPid(pidFile)
      await l.close()
      assert.equal((await done).error, 'launcher closed')
      await waitFor(() => !alive(grandchild))
    })

    test('a launcher that dies fails pending tasks and restarts on the next spawn', async () => {
      const l = Launcher.start(command!)
      const pidFile = path.join(dir, 'orphan2.pid')
      const { done } = l.spawn(sh(`echo $$ > ${pidFile}; exec sleep 30`))
      const orphan = await readPid(pidFile)
      const first = l.pid!
      process.kill(first, 'SIGKILL')
      assert.equal((await done).error, 'launcher died')
      try { process.kill(-orphan, 'SIGKILL') } catch {} // SIGKILL leaves it no chance to clean up
      assert.equal((await l.spawn(req(['true'])).done).exitCode, 0)
      assert.notEqual(l.pid, first)
      await l.close()
    })

    test('it exits when stdin closes, and requests split across writes are read whole', async () => {
      const p = spawn(command![0], command!.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] })
      const out = path.join(dir, 'manual.out')
      const line = JSON.stringify({ op: 'spawn', id: 7, argv: ['/bin/sh', '-c', 'echo é'], cwd: dir, env: process.env, stdout: out, stderr: out }) + '\n'
      const bytes = Buffer.from(line)
      let replies = ''
      p.stdout.on('data', (c: Buffer) => { replies += c.toString() })
      for (let i = 0; i < bytes.length; i += 7) {
        p.stdin.write(bytes.subarray(i, i + 7))
        await new Promise(resolve => setImmediate(resolve))
      }
      await waitFor(() => replies.includes('"exit"'))
      const reply = replies.trim().split('\n').map(l => JSON.parse(l) as { op: string, id?: number, exitCode?: number }).find(m => m.op === 'exit')!
      assert.equal(reply.id, 7)
      assert.equal(reply.exitCode, 0)
      assert.equal(await readFile(out, 'utf8'), 'é\n')
      const exited = new Promise(resolve => p.once('exit', resolve))
      p.stdin.end()
      assert.equal(await exited, 0)
    })
  })
}
