/**
 * Tasks cannot touch the mesh's secrets. A hostile task (fixtures/attack-secrets.sh) tries every path it can
 * think of (relative ../../.., absolute paths from its environment, /proc/<pid>/root and cwd of every process,
 * hard links) to read or change the key files, the access list, the state database, the outbox, another task's
 * folder and another job's cached inputs; it reads nothing, changes nothing, and its job still completes. On the
 * first machine (its agent shares the coordinator's state folder: slot users + mount namespace when root) and on
 * other agents (--isolation namespace: the user-namespace path; bubblewrap with the Node launcher). The same task
 * on an agent started with --isolation none does read the keys: the attack is real.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { freePort, startMeshfarm, type MeshProcess } from '../../bin/processes.ts'
import { AccessList } from '../../coordinator/access.ts'
import { writeMesh, loadMeshConfig } from '../../shared/local/mesh-config.ts'
import { loadOrCreateIdentity } from '../../shared/local/identity.ts'
import { agentPaths, realHome } from '../../node/work-dir.ts'
import { findBwrap } from '../../node/bwrap.ts'
import { hashBytes } from '../../shared/files/hash.ts'
import { runCli, runCliJson, until } from '../helpers/cli.ts'

const ATTACK = fileURLToPath(new URL('./fixtures/attack-secrets.sh', import.meta.url))
const ROOT = process.getuid?.() === 0
const MODEL = 'MODEL-SECRET: another job\'s cached input\n'
const DATA = 'SHARED-DATA\n'

let dir: string
let coordHome: string
const procs: MeshProcess[] = []
const homes = new Map<string, string>()
const userDirs: string[] = []
const uids = new Map<string, number>()

function sha (path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

/** Every file under the state folders, hashed (the coordinator's database changes on its own: left out). */
function fingerprint (): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile() && !/state\.db|\.log$|agent\.pid|outbox|capture|known-coordinator/.test(p)) out.set(p, sha(p))
    }
  }
  for (const h of new Set(homes.values())) walk(h)
  return out
}

async function addAgent (where: string, extra: string[], env: NodeJS.ProcessEnv = {}, uid?: number): Promise<void> {
  let home = coordHome
  if (where !== 'first') {
    // An ordinary user's agent needs a state folder it owns, on a path it can reach.
    home = uid != null ? join(mkdtempSync(join(tmpdir(), 'meshfarm-iso-user-')), 'home') : join(dir, `agent-${where}`)
    const mesh = loadMeshConfig(coordHome)
    writeMesh(home, mesh.swarmKey, { bootstrap: [bootstrap], mdns: false, coordinator: mesh.coordinator })
    const id = peerIdFromPrivateKey(await loadOrCreateIdentity(home)).toString()
    new AccessList(join(coordHome, 'coordinator', 'access.json'), mesh.coordinator!).add(id, ['agent'], where)
    if (uid != null) {
      chmodSync(join(home, '..'), 0o755)
      for (const p of [home, ...readdirSync(home).map(n => join(home, n))]) chownSync(p, uid, uid)
      userDirs.push(join(home, '..'))
    }
  }
  homes.set(where, realHome(home))
  uids.set(where, uid ?? process.getuid?.() ?? 0)
  const args = ['agent', '--listen', '/ip4/127.0.0.1/tcp/0', '--hostname', where, '--slots', '2', '--label', `where=${where}`, ...extra]
  if (ROOT && uid == null) args.push('--allow-root')
  const p = startMeshfarm(args, { home, env, logFile: join(dir, `agent-${where}.log`), uid })
  procs.push(p)
  await p.waitFor(/agent: connected to coordinator/, 60_000)
}

let bootstrap: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-iso-'))
  coordHome = join(dir, 'lab1')
  assert.equal((await runCli(coordHome, ['init', '--no-mdns'])).code, 0)
  const port = await freePort('127.0.0.1')
  const coordinator = startMeshfarm(['coordinator', '--listen', `/ip4/127.0.0.1/tcp/${port}`], { home: coordHome, logFile: join(dir, 'coordinator.log') })
  procs.push(coordinator)
  const ready = await coordinator.waitFor(/coordinator: ready as (\w+)/, 60_000)
  bootstrap = `/ip4/127.0.0.1/tcp/${port}/p2p/${ready[1]}`
  writeFileSync(join(dir, 'model.bin'), MODEL)
  writeFileSync(join(dir, 'data.txt'), DATA)
  copyFileSync(ATTACK, join(dir, 'attack-secrets.sh'))
})

after(async () => {
  await Promise.all(procs.map(async p => await p.stop()))
  if (process.env.KEEP_TEST_DIR == null) for (const d of [dir, ...userDirs]) rmSync(d, { recursive: true, force: true })
})

/** A victim job holding a secret in its running task's folder, then the attack job beside it; the report. */
async function attack (where: string): Promise<{ report: string, state: string, start: string }> {
  const home = homes.get(where)!
  const tasksDir = agentPaths(home, { uid: uids.get(where)! }).tasks
  writeFileSync(join(dir, `victim-${where}.yaml`), [
    `name: victim-${where}`, 'shared: [model.bin]', `defaults: { constraints: { where: ${where} } }`,
    'tasks:', '  - command: "echo SIBLING-SECRET > secret.txt; sleep 60"', '    inputs: [data.txt]', ''
  ].join('\n'))
  const victim = await runCliJson<{ jobId: number }>(coordHome, ['submit', join(dir, `victim-${where}.yaml`)], { cwd: dir })
  let victimAttempt = ''
  await until(() => {
    victimAttempt = readdirSync(tasksDir).find(n => existsSync(join(tasksDir, n, 'secret.txt'))) ?? ''
    return victimAttempt !== ''
  }, 30_000, 'the victim task running')
  // The unisolated control gets only its own state folder to attack: it would damage the others for real.
  const targets = where === 'none' ? [home] : [...new Set(homes.values())]
  const env = { HOMES: targets.join(' '), VICTIM_JOB: String(victim.jobId), VICTIM_ATTEMPT: victimAttempt, MODEL_HASH: hashBytes(Buffer.from(MODEL)) }
  writeFileSync(join(dir, `attack-${where}.yaml`), [
    `name: attack-${where}`, 'shared: [model.bin]',
    `defaults: { constraints: { where: ${where} }, env: ${JSON.stringify(env)} }`,
    'tasks:', '  - command: "sh attack-secrets.sh"', '    inputs: [attack-secrets.sh, data.txt]', '    outputs: [report.txt]', ''
  ].join('\n'))
  const dest = join(dir, `results-${where}`)
  const out = await runCliJson<{ summary: { state: string } }>(coordHome, ['submit', join(dir, `attack-${where}.yaml`), '--wait', '--results', dest], { cwd: dir, timeoutMs: 180_000 })
  if (where !== 'none') assert.equal(readFileSync(join(tasksDir, victimAttempt, 'secret.txt'), 'utf8'), 'SIBLING-SECRET\n', 'the other task\'s file is as it wrote it')
  assert.equal(await runCli(coordHome, ['cancel', String(victim.jobId)]).then(r => r.code), 0)
  const log = readFileSync(join(dir, `agent-${where}.log`), 'utf8')
  return { report: readFileSync(join(dest, 'task-0', 'report.txt'), 'utf8'), state: out.summary.state, start: log.match(/agent: isolation: .*/)?.[0] ?? '' }
}

/** Nothing read or changed; folders that must look empty do, and the task folder's neighbours are hidden. */
function assertNothingReached (report: string, where: string): void {
  const lines = report.trim().split('\n').filter(Boolean)
  const reached = lines.filter(l => /^(READ|WROTE|LINKED|CHANGED|SIGNALLED)/.test(l))
  assert.deepEqual(reached, [], `${where}: the task reached what it must not:\n${reached.join('\n')}`)
  for (const l of lines.filter(x => x.startsWith('LS '))) {
    const [path, entries] = l.slice(3).split(': ')
    const names = (entries ?? '').trim().split(/\s+/).filter(Boolean)
    if ([...homes.values()].some(h => path === h || path.startsWith(`${h}/`) || path.endsWith(h) || path.includes(`${h}/`))) {
      assert.deepEqual(names, [], `${where}: ${path} shows ${names.join(' ')}`)
    }
    if (path.endsWith('/tasks') || path.endsWith('/jobs')) assert.ok(names.length <= 1, `${where}: ${path} shows its neighbours: ${names.join(' ')}`)
  }
}

test('a hostile task reads and changes nothing of the mesh\'s, on the first machine and on other agents', { timeout: 600_000 }, async () => {
  await addAgent('first', [])
  await addAgent('ns', ['--isolation', 'namespace'])
  const bwrap = findBwrap() != null
  if (bwrap) await addAgent('bwrap', ['--isolation', 'bubblewrap'], { MESHFARM_LAUNCHER: 'js' })
  else console.log('bubblewrap is not installed here: its case is skipped')
  // An agent of an ordinary user: its tasks have its uid, and only the namespaces keep its keys from them.
  if (ROOT) await addAgent('user', [], {}, 65534)
  await addAgent('none', ['--isolation', 'none'])
  const before = fingerprint()

  const first = await attack('first')
  assert.equal(first.state, 'done', 'the hostile task\'s job still completes')
  assert.match(first.start, ROOT ? /^agent: isolation: slot users \+ mount namespace \(hides .*lab1, \/var\/tmp\/meshfarm-0\)$/ : /user \+ mount namespace/)
  assertNothingReached(first.report, 'first machine')

  const ns = await attack('ns')
  assert.equal(ns.state, 'done')
  assert.match(ns.start, /user \+ mount namespace/)
  assertNothingReached(ns.report, 'namespace')

  if (bwrap) {
    const bw = await attack('bwrap')
    assert.equal(bw.state, 'done')
    assert.match(bw.start, /bubblewrap/)
    assertNothingReached(bw.report, 'bubblewrap')
  }

  if (ROOT) {
    const user = await attack('user')
    assert.equal(user.state, 'done')
    assert.match(user.start, /^agent: isolation: user \+ mount namespace \(hides .*meshfarm-iso-user-.*\/home, \/var\/tmp\/meshfarm-65534\)$/)
    assertNothingReached(user.report, 'an ordinary user\'s agent')
  }

  // The control: unisolated, the very same task does reach the keys.
  const none = await attack('none')
  assert.match(none.report, /^READ .*agent-none\/identity\.key$/m, 'without isolation the attack succeeds: the test can fail')

  // Nothing changed on disk: keys, access list, the caches (hard-linked inputs a task might have written through).
  const afterwards = fingerprint()
  const changed = [...before].filter(([p, h]) => afterwards.has(p) && afterwards.get(p) !== h && !p.includes('agent-none')).map(([p]) => p)
  assert.deepEqual(changed, [], 'no state file changed')
  for (const where of ['first', 'ns', 'bwrap', 'user']) {
    const home = homes.get(where)
    if (home == null) continue
    const cache = join(home, 'agent', 'cache')
    for (const [content, name] of [[MODEL, 'model.bin'], [DATA, 'data.txt']]) {
      const h = hashBytes(Buffer.from(content))
      const blob = join(cache, h.slice(0, 2), h)
      if (existsSync(blob)) assert.equal(readFileSync(blob, 'utf8'), content, `${where}: the cached ${name} is intact`)
    }
  }
  mkdirSync(join(dir, 'done'), { recursive: true })
})
