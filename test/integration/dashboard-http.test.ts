/**
 * The dashboard's HTTP server on a real loopback socket, attacked as Ray's dashboard was: no cookie, forged
 * cookies, foreign Host (DNS rebinding), foreign Origin (CSRF, DELETE included), huge bodies, bad ids.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { startDashboard, type Dashboard } from '../../coordinator/dashboard/server.ts'
import { MemoryMesh } from '../helpers/memory-mesh.ts'
import type { DashboardUser } from '../../coordinator/dashboard/source.ts'
import { login, originOf, raw, SseReader, seqOf } from '../helpers/dashboard-http.ts'

const ana = { peerId: 'peer-ana', name: 'ana', role: 'submitter' as const }
const bo = { peerId: 'peer-bo', name: 'bo', role: 'submitter' as const }
const root = { peerId: 'peer-root', name: 'root', role: 'admin' as const }
const reader = { peerId: 'peer-rita', name: 'rita', role: 'reader' as const }

let mesh: MemoryMesh
let d: Dashboard
let clock = Date.parse('2026-11-22T10:00:00Z')
const logs: string[] = []
let agent: string
let anaJob: number
let boJob: number

before(async () => {
  mesh = new MemoryMesh()
  agent = mesh.addAgent('alpha', { slots: 2 })
  anaJob = mesh.submit(ana, 'ana-sweep', 3)
  boJob = mesh.submit(bo, 'bo-sweep', 3)
  mesh.start(anaJob, 0, agent)
  d = await startDashboard({ source: mesh, port: 0, now: () => clock, log: l => logs.push(l), heartbeatMs: 100, maxStreams: 6, maxQueuedBytes: 1024 * 1024, sessions: { idleMs: 60_000 } })
})

after(async () => { await d.close() })

const SECURITY_HEADERS = {
  'content-security-policy': /default-src 'none'; script-src 'self';.*frame-ancestors 'none'/,
  'x-content-type-options': /^nosniff$/,
  'referrer-policy': /^same-origin$/,
  'x-frame-options': /^DENY$/
}

function assertSecurityHeaders (headers: Record<string, unknown>, what: string): void {
  for (const [h, re] of Object.entries(SECURITY_HEADERS)) assert.match(String(headers[h]), re, `${what}: ${h}`)
}

test('binds 127.0.0.1 only; any other address or a bad port is refused', async () => {
  for (const host of ['0.0.0.0', '::', '::1', '192.168.1.10', 'localhost']) {
    await assert.rejects(startDashboard({ source: mesh, host }), /binds 127\.0\.0\.1 only/, host)
  }
  for (const port of [-1, 65536, 1.5, NaN]) await assert.rejects(startDashboard({ source: mesh, port }), /is not a port number/)
  // Another loopback address of this machine does not reach it.
  await assert.rejects(new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.2', port: d.port }, () => { s.destroy(); resolve(null) })
    s.on('error', reject)
  }), /ECONNREFUSED/)
})

test('a foreign Host is refused before routing, on every path, cookie or not (DNS rebinding)', async () => {
  const cookie = await login(d, mesh, root)
  const code = mesh.login(root)
  for (const host of ['evil.example', `evil.example:${d.port}`, `127.0.0.1:${d.port + 1}`, `localhost.:${d.port}`, `127.0.0.1.nip.io:${d.port}`]) {
    for (const path of ['/', '/login', '/static/app.js', '/api/overview', '/api/events', '/api/jobs/1/timeline.svg']) {
      const r = await raw(d, path, { headers: { host, cookie } })
      assert.equal(r.status, 421, `${host} ${path}`)
      assert.ok(!r.body.includes('ana-sweep'))
      assertSecurityHeaders(r.headers, `${host} ${path}`)
    }
    const post = await raw(d, '/login', { method: 'POST', headers: { host, origin: `http://${host}`, 'content-type': 'application/x-www-form-urlencoded' }, body: `code=${code}` })
    assert.equal(post.status, 421)
  }
  assert.equal((await raw(d, '/login', { noHost: true })).status, 400)
  // The refused login did not use the code up.
  assert.deepEqual(mesh.codes.redeem(code, Date.now()), root)
  for (const host of [`localhost:${d.port}`, `[::1]:${d.port}`]) assert.equal((await raw(d, '/api/me', { headers: { host, cookie } })).status, 200, host)
})

test('login: a form POST with our Origin, once; the cookie is HttpOnly, SameSite=Strict, never in a URL or page', async () => {
  const page = await raw(d, '/login')
  assert.equal(page.status, 200)
  assert.match(page.body, /<form method="post" action="\/login"/)
  assert.ok(!/<script/i.test(page.body) && !/ style=/.test(page.body), 'no inline script or style')
  assertSecurityHeaders(page.headers, 'login page')
  assert.equal((await raw(d, '/')).status, 303, 'no session: to the login page')

  const code = mesh.login(ana)
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const body = `code=${code}`
  assert.equal((await raw(d, '/login', { method: 'POST', headers: form, body })).status, 403, 'no Origin')
  assert.equal((await raw(d, '/login', { method: 'POST', headers: { ...form, origin: 'http://evil.example' }, body })).status, 403)
  assert.equal((await raw(d, '/login', { method: 'POST', headers: { ...form, origin: originOf(d), 'sec-fetch-site': 'cross-site' }, body })).status, 403)
  assert.equal((await raw(d, '/login', { method: 'POST', headers: { ...form, origin: originOf(d) }, body: 'code=WRONG' })).status, 401)

  const ok = await raw(d, '/login', { method: 'POST', headers: { ...form, origin: originOf(d), 'sec-fetch-site': 'same-origin' }, body })
  assert.equal(ok.status, 303)
  assert.equal(ok.headers.location, '/')
  const set = ok.headers['set-cookie']![0]
  assert.match(set, new RegExp(`^meshfarm-${d.port}=[A-Za-z0-9_-]{43}; Path=/; HttpOnly; SameSite=Strict$`))
  const id = set.split(';')[0].split('=')[1]
  assert.ok(!ok.headers.location.includes(id))
  const again = await raw(d, '/login', { method: 'POST', headers: { ...form, origin: originOf(d) }, body })
  assert.equal(again.status, 401, 'the code works once')
  const home = await raw(d, '/', { headers: { cookie: set.split(';')[0] } })
  assert.equal(home.status, 200)
  assert.ok(!home.body.includes(id) && !home.body.includes(code), 'no token in the page')
  assert.ok(!/<script(?![^>]*\bsrc=)/i.test(home.body), 'scripts only from files')
  assert.ok(logs.every(l => !l.includes(code) && !l.includes(id)), 'no secret in the logs')
})

test('the API and the event stream refuse requests without a valid cookie', async () => {
  const good = await login(d, mesh, ana)
  const id = good.split('=')[1]
  const bad = [undefined, '', 'meshfarm=x', `meshfarm-${d.port}=`, `meshfarm-${d.port}=${'A'.repeat(43)}`, `meshfarm-${d.port + 1}=${id}`,
    `meshfarm-${d.port}=${id}x`, `meshfarm-${d.port}=${id.slice(1)}`, `other=1; meshfarm-${d.port}=${id}%00`, `meshfarm-${d.port}=../../${id}`]
  for (const path of ['/api/me', '/api/overview', `/api/jobs/${anaJob}/tasks`, `/api/jobs/${anaJob}/timeline.svg`, `/api/jobs/${anaJob}/failures`, '/api/events', '/api/nothing']) {
    for (const cookie of bad) {
      const r = await raw(d, path, { headers: cookie != null ? { cookie } : {} })
      assert.equal(r.status, 401, `${path} with ${cookie}`)
      assertSecurityHeaders(r.headers, path)
    }
    // (the stream with a good cookie never ends: the event-stream test reads it)
    if (path !== '/api/events') assert.notEqual((await raw(d, path, { headers: { cookie: good } })).status, 401, path)
  }
  assert.equal((await raw(d, `/api/jobs/${anaJob}/cancel`, { method: 'POST', headers: { origin: originOf(d) } })).status, 401)
  // A header too large for the server is refused by Node itself, not processed.
  assert.equal((await raw(d, '/api/me', { headers: { cookie: `${good}; pad=${'x'.repeat(20_000)}` } })).status, 431)
})

test('sessions expire, and logging out ends one', async () => {
  const cookie = await login(d, mesh, ana)
  assert.equal((await raw(d, '/api/me', { headers: { cookie } })).status, 200)
  clock += 61_000
  assert.equal((await raw(d, '/api/me', { headers: { cookie } })).status, 401, 'idle past the limit')
  const c2 = await login(d, mesh, ana)
  assert.equal((await raw(d, '/logout', { method: 'POST', headers: { cookie: c2 } })).status, 403, 'logout needs our Origin too')
  const out = await raw(d, '/logout', { method: 'POST', headers: { cookie: c2, origin: originOf(d) } })
  assert.equal(out.status, 303)
  assert.match(out.headers['set-cookie']![0], /Max-Age=0/)
  assert.equal((await raw(d, '/api/me', { headers: { cookie: c2 } })).status, 401)
})

test('request bodies are bounded; unknown methods, paths and bad ids are refused plainly', async () => {
  const cookie = await login(d, mesh, root)
  const origin = originOf(d)
  const huge = 'code=' + 'A'.repeat(5 * 1024 * 1024)
  assert.equal((await raw(d, '/login', { method: 'POST', headers: { origin, 'content-type': 'application/x-www-form-urlencoded' }, body: huge })).status, 413)
  assert.equal((await raw(d, '/login', { method: 'POST', headers: { origin, 'content-type': 'application/x-www-form-urlencoded' }, body: huge, chunked: true })).status, 413, 'no Content-Length')
  assert.equal((await raw(d, '/login', { method: 'POST', headers: { origin, 'content-type': 'multipart/form-data; boundary=x' }, body: '--x\r\nbroken' })).status, 401)
  assert.equal((await raw(d, `/api/jobs/${anaJob}/cancel`, { method: 'POST', headers: { cookie, origin }, body: 'x'.repeat(10_000) })).status, 413)
  for (const method of ['PUT', 'PATCH', 'OPTIONS', 'TRACE']) assert.equal((await raw(d, `/api/jobs/${anaJob}`, { method, headers: { cookie, origin } })).status, 405, method)
  assert.equal((await raw(d, '/api/events', { method: 'HEAD', headers: { cookie } })).status, 405)
  assert.equal(d.streams(), 0, 'no stream left open by HEAD')
  for (const [path, status] of [
    ['/api/jobs/abc/tasks', 400], ['/api/jobs/0/tasks', 400], ['/api/jobs/-1/timeline.svg', 400], ['/api/jobs/1e3/timeline.svg', 400],
    ['/api/jobs/99999999999999999999/tasks', 400], ['/api/jobs/999/tasks', 404], ['/api/jobs/999/timeline.svg', 404], ['/api/jobs/999/failures', 404],
    [`/api/jobs/${anaJob}/tasks?after=-1`, 400], [`/api/jobs/${anaJob}/tasks?limit=99999`, 400], [`/api/jobs/${anaJob}/tasks?after=1&limit=x`, 400],
    ['/static/../server.ts', 404], ['/static/%2e%2e%2fserver.ts', 404], ['/static/app.js%00.html', 404], ['/static/constructor', 404], ['/static/__proto__', 404],
    ['/nothing', 404], ['//evil.example/', 404]
  ] as const) {
    const r = await raw(d, path, { headers: { cookie } })
    assert.equal(r.status, status, path)
    assert.ok(!/at .*\.ts:\d+/.test(r.body), `${path}: no stack trace`)
  }
  const tasks = JSON.parse((await raw(d, `/api/jobs/${anaJob}/tasks?after=1&limit=1`, { headers: { cookie } })).body)
  assert.deepEqual(tasks.tasks.map((t: { index: number }) => t.index), [1])
  const svg = await raw(d, `/api/jobs/${anaJob}/timeline.svg`, { headers: { cookie } })
  assert.match(String(svg.headers['content-type']), /^image\/svg\+xml/)
  assert.equal(svg.body.match(/<rect class="bar /g)?.length, 1, 'one task has started')
  const js = await raw(d, '/static/app.js', { headers: {} })
  assert.match(String(js.headers['content-type']), /^text\/javascript/)
})

test('cancel: readers cannot, submitters only their own jobs, admins any; DELETE needs our Origin too', async () => {
  const origin = originOf(d)
  const as = async (user: DashboardUser, jobId: number, method = 'POST', o: Record<string, string> = { origin }): Promise<number> => {
    const cookie = await login(d, mesh, user)
    return (await raw(d, method === 'POST' ? `/api/jobs/${jobId}/cancel` : `/api/jobs/${jobId}`, { method, headers: { cookie, ...o } })).status
  }
  assert.equal(await as(reader, anaJob), 403)
  assert.equal(await as(bo, anaJob), 403)
  assert.equal(await as(ana, anaJob, 'DELETE', {}), 403, 'DELETE without Origin (Ray gated only POST/PUT)')
  assert.equal(await as(ana, anaJob, 'DELETE', { origin: 'http://evil.example' }), 403)
  assert.equal(await as(ana, anaJob, 'POST', { origin, 'sec-fetch-site': 'same-site' }), 403)
  assert.equal(mesh.jobs.get(anaJob)!.state, 'active', 'nothing refused changed anything')
  assert.equal(await as(ana, anaJob, 'DELETE'), 200)
  assert.equal(mesh.jobs.get(anaJob)!.state, 'cancelled')
  assert.equal(await as(root, boJob), 200)
  assert.equal(mesh.jobs.get(boJob)!.state, 'cancelled')
  assert.equal(await as(root, 999), 404)
})

test('event stream: hello with the seq, live events, heartbeats, resume after Last-Event-ID', { timeout: 30_000 }, async () => {
  const cookie = await login(d, mesh, reader)
  const s = await SseReader.open(d, cookie)
  assert.equal(s.status, 200)
  const hello = await s.next()
  assert.match(hello!, new RegExp(`event: hello\\nid: ${mesh.lastSeq()}\\n`))
  const job = mesh.submit(ana, 'live', 2)
  mesh.start(job, 0, agent)
  const seen = await s.until(f => /task\.started/.test(f))
  assert.ok(seen.some(f => /job\.submitted/.test(f)))
  await s.until(f => f.startsWith(': heartbeat'))
  const last = mesh.lastSeq()
  s.close()
  // Missed while away:
  mesh.finish(job, 0)
  mesh.start(job, 1, agent)
  mesh.finish(job, 1, { exitCode: 2, stderr: 'boom' })
  const r = await SseReader.open(d, cookie, last)
  const frames = await r.until(f => /job\.done/.test(f))
  assert.match(frames[0], new RegExp(`event: hello\\nid: ${last}\\ndata: \\{"seq":${last},"resumed":true\\}`))
  const seqs = frames.map(seqOf).filter(x => x != null)
  assert.deepEqual(seqs, mesh.events.map(e => e.seq).filter(x => x > last), 'every missed event once, in order')
  r.close()
})

test('a page that stops reading is dropped; another page gets every event; the stream count is bounded', { timeout: 60_000 }, async () => {
  const cookie = await login(d, mesh, reader)
  const fast = await SseReader.open(d, cookie)
  await fast.next()
  const dropped = new Promise<void>(resolve => {
    const check = setInterval(() => { if (logs.some(l => /dropped a slow event stream/.test(l))) { clearInterval(check); resolve() } }, 20)
  })
  // A client that sends the request and never reads a byte of the answer.
  const slow = connect({ host: '127.0.0.1', port: d.port })
  await new Promise(resolve => slow.once('connect', resolve))
  slow.pause()
  slow.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${d.port}\r\nCookie: ${cookie}\r\n\r\n`)
  await new Promise<void>(resolve => { const w = setInterval(() => { if (d.streams() === 2) { clearInterval(w); resolve() } }, 10) })
  const from = mesh.lastSeq()
  // 24 MiB of events over time: more than any socket buffer holds for the paused client. Each burst waits
  // until the reading page has it, so that page is never behind by more than one burst, however slow the machine.
  const seqs: number[] = []
  for (let i = 0; i < 120; i++) {
    mesh.flood(50, 4096)
    const end = mesh.lastSeq()
    seqs.push(...(await fast.until(f => seqOf(f) === end)).map(seqOf).filter(x => x != null))
  }
  await dropped
  assert.deepEqual(seqs, Array.from({ length: 6000 }, (_, i) => from + 1 + i), 'the reading page got every event, in order')
  assert.equal(d.streams(), 1)
  slow.destroy()
  const extra: SseReader[] = []
  for (let i = 0; i < 6; i++) extra.push(await SseReader.open(d, cookie))
  assert.deepEqual(extra.map(e => e.status).sort(), [200, 200, 200, 200, 200, 503])
  for (const e of [fast, ...extra]) e.close()
})

test('a restarted dashboard shows the source\'s finished jobs; sessions do not survive it', async () => {
  const cookie = await login(d, mesh, ana)
  const d2 = await startDashboard({ source: mesh, port: 0 })
  try {
    assert.equal((await raw(d2, '/api/me', { headers: { cookie: cookie.replace(`meshfarm-${d.port}`, `meshfarm-${d2.port}`) } })).status, 401)
    const c2 = await login(d2, mesh, ana)
    const o = JSON.parse((await raw(d2, '/api/overview', { headers: { cookie: c2 } })).body)
    assert.deepEqual(o.jobs.map((j: { jobId: number, state: string }) => [j.jobId, j.state]).slice(0, 2), [[anaJob, 'cancelled'], [boJob, 'cancelled']])
    assert.equal(o.seq, mesh.lastSeq())
  } finally {
    await d2.close()
  }
})
