/**
 * The dashboard of a real coordinator over raw HTTP (the browser tests need Chromium; this needs nothing):
 * `--dashboard` checked at the edge, login with the code `meshfarm dashboard` prints, the page's event stream
 * carries the same events as `meshfarm watch`, stderr tails come from the coordinator's blob store, and after
 * the coordinator restarts its dashboard still shows the finished job from the store. (A coordinator without a
 * dashboard answering `meshfarm dashboard`: report.test.ts.)
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { connect, type MeshClient } from '../../shared/client/client.ts'
import { parseJobFile } from '../../shared/client/spec.ts'
import type { MeshEvent } from '../../shared/protocol/events.ts'
import type { Dashboard } from '../../coordinator/dashboard/server.ts'
import { raw, SseReader, seqOf } from '../helpers/dashboard-http.ts'
import { runCli, runCliJson } from '../helpers/cli.ts'

let dir: string
let mesh: LocalMesh
let client: MeshClient
const timeout = 60_000
/** A coordinator given a bad --dashboard, started beside the mesh (a process start costs seconds here). */
let badFlag: ReturnType<typeof runCli>

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-dashc-'))
  // Refused before it reads any state folder: this one does not exist.
  badFlag = runCli(join(dir, 'nowhere'), ['coordinator', '--dashboard', '70000', '--listen', '/ip4/127.0.0.1/tcp/0'])
  badFlag.catch(() => {})
  mesh = await startLocalMesh({ dir, coordinatorArgs: ['--dashboard', '0'], agents: [{ ip: '127.0.0.2', hostname: 'd1', slots: 2 }] })
  client = await connect({ home: mesh.clientHome })
}, { timeout: 120_000 })

after(async () => {
  await client?.close()
  await mesh?.stop()
  if (dir != null && process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})

/** The dashboard the coordinator says it serves, as the raw-HTTP helpers take it. */
function served (): Dashboard {
  const all = [...mesh.coordinator.output().matchAll(/dashboard: listening on http:\/\/127\.0\.0\.1:(\d+)\//g)]
  const port = Number(all.at(-1)![1])
  return { port, url: `http://127.0.0.1:${port}/` } as unknown as Dashboard
}

/** Logs in with a fresh code from `meshfarm dashboard --json`, as the login form would; returns the Cookie header. */
async function login (d: Dashboard): Promise<string> {
  const code = await runCliJson<{ url: string, code: string, expiresAt: number }>(mesh.clientHome, ['dashboard'])
  assert.equal(code.url, d.url)
  assert.ok(code.expiresAt > Date.now())
  const r = await raw(d, '/login', {
    method: 'POST',
    headers: { origin: `http://127.0.0.1:${d.port}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ code: code.code }).toString()
  })
  assert.equal(r.status, 303, r.body)
  const set = String(r.headers['set-cookie'])
  assert.match(set, /HttpOnly/i)
  assert.match(set, /SameSite=Strict/i)
  return set.split(';')[0]
}

test('--dashboard takes a port number and nothing else, in one line', { timeout }, async () => {
  // The values it refuses are the unit test's (dashboard-config.test.ts); here, that the coordinator refuses one.
  const r = await badFlag
  assert.equal(r.code, 2)
  assert.equal(r.stderr, 'error: --dashboard: must be a port number from 0 to 65535 (0: any free port), got "70000"\n')
})

test('the coordinator serves its dashboard on 127.0.0.1; a code logs in; the event stream is the mesh\'s', { timeout }, async () => {
  const d = served()
  assert.match(mesh.coordinator.output(), /dashboard: listening on http:\/\/127\.0\.0\.1:\d+\//)
  assert.equal((await raw(d, '/api/overview')).status, 401)
  const cookie = await login(d)
  const me = JSON.parse((await raw(d, '/api/me', { headers: { cookie } })).body)
  assert.deepEqual([me.name, me.role], ['client', 'admin'])
  const stream = await SseReader.open(d, cookie)
  const hello = await stream.next()
  const from = Number(/^id: (\d+)$/m.exec(hello!)![1])

  const file = join(dir, 'job.txt')
  writeFileSync(file, ['sleep 0.2; echo a', 'echo "disk quota exceeded" >&2; exit 4', 'sleep 0.3; echo c'].join('\n') + '\n')
  const { jobId } = await client.submit(parseJobFile(file, { name: 'small' }))
  const frames = await stream.until(f => /"type":"job\.done"/.test(f) && f.includes(`"jobId":${jobId}`))
  stream.close()
  const seqs = frames.map(seqOf).filter((s): s is number => s != null)
  const watched: MeshEvent[] = []
  await client.events({ after: from, follow: false }, events => { watched.push(...events) })
  assert.deepEqual(seqs, watched.map(e => e.seq).filter(s => s <= seqs.at(-1)!), 'the same events as `meshfarm watch`, in the same order')

  const o = JSON.parse((await raw(d, '/api/overview', { headers: { cookie } })).body)
  assert.deepEqual(o.agents.map((a: { hostname: string, slots: number }) => [a.hostname, a.slots]), [['d1', 2]])
  assert.deepEqual(o.jobs.map((j: { jobId: number, state: string, ownerName: string }) => [j.jobId, j.state, j.ownerName]), [[jobId, 'failed', 'client']])
  const f = JSON.parse((await raw(d, `/api/jobs/${jobId}/failures`, { headers: { cookie } })).body)
  assert.deepEqual(f.failures.map((x: { index: number, exitCode: number, stderrTail: string }) => [x.index, x.exitCode, x.stderrTail]), [[1, 4, 'disk quota exceeded']])
})

test('after a restart the coordinator\'s dashboard shows the finished job from its store; old sessions are gone', { timeout }, async () => {
  const before = served()
  const cookie = await login(before)
  const [job] = await client.status()
  await mesh.coordinator.stop()
  await mesh.startCoordinator()
  const d = served()
  assert.equal((await raw(d, '/api/overview', { headers: { cookie: cookie.replace(`meshfarm-${before.port}`, `meshfarm-${d.port}`) } })).status, 401)
  const fresh = await login(d)
  const o = JSON.parse((await raw(d, '/api/overview', { headers: { cookie: fresh } })).body)
  assert.deepEqual(o.jobs.map((j: { jobId: number, state: string }) => [j.jobId, j.state]), [[job.jobId, 'failed']])
  assert.ok(o.seq >= 1)
  const svg = (await raw(d, `/api/jobs/${job.jobId}/timeline.svg`, { headers: { cookie: fresh } })).body
  assert.equal(svg.match(/<rect class="bar /g)?.length, 3, 'one bar per task')
  const f = JSON.parse((await raw(d, `/api/jobs/${job.jobId}/failures`, { headers: { cookie: fresh } })).body)
  assert.equal(f.failures[0].stderrTail, 'disk quota exceeded')
})
