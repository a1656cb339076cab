/**
 * The dashboard's HTTP server: Hono on Node's http server, bound to 127.0.0.1 only.
 * Order of checks on every request: Host allowlist (DNS rebinding) -> method, Origin and fetch metadata ->
 * route -> session cookie (401) -> role. Security headers on every answer, refusals included.
 */
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { readFileSync } from 'node:fs'
import { Hono, type Context } from 'hono'
import { serve, type HttpBindings } from '@hono/node-server'
import { bodyLimit } from 'hono/body-limit'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import { streamSSE } from 'hono/streaming'
import { barsFromRecords, renderTimelineSvg, type TimelineBar } from '../../shared/report/timeline-svg.ts'
import { earlierAttemptBars } from '../../shared/report/attempts.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'
import type { TaskRecord } from '../../shared/protocol/messages.ts'
import type { MeshEvent } from '../../shared/protocol/events.ts'
import { allowedHosts, checkHost, checkRequest, mayDo, parseJobId, parseLastEventId, type Refusal } from './guard.ts'
import { createSessions, type Session, type SessionOptions } from './sessions.ts'
import { EventHub } from './event-hub.ts'
import { loginPage } from './login-page.ts'
import { pageTask } from './views.ts'
import type { DashboardSource } from './source.ts'

export interface DashboardOptions {
  source: DashboardSource
  /** Only 127.0.0.1 is accepted: the dashboard is never reachable from the network. */
  host?: string
  /** 0 picks a free port. */
  port?: number
  now?: () => number
  log?: (line: string) => void
  sessions?: SessionOptions
  /** Event streams open at once at most (default 32); more are answered 503. */
  maxStreams?: number
  heartbeatMs?: number
  /** Bytes queued per event stream before it is dropped as too slow (default 2 MiB). */
  maxQueuedBytes?: number
  retryMs?: number
  /** Tasks drawn in a timeline at most (default 20000). */
  maxTimelineTasks?: number
  /** A job's events read for its earlier attempts at most (default 100000). */
  maxTimelineEvents?: number
}

export interface Dashboard {
  /** http://127.0.0.1:PORT/ */
  url: string
  port: number
  /** Event streams open now. */
  streams (): number
  /** Ends every event stream; pages reconnect and resume. */
  dropStreams (): void
  close (): Promise<void>
}

const STATIC: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'render.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8'
}

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

const MAX_LOGIN_FAILURES = 20
const LOGIN_WINDOW_MS = 60_000

type Env = { Bindings: HttpBindings, Variables: { session: Session, sessionId: string } }

function refuse (c: Context, r: Refusal): Response {
  return c.json({ error: r.reason }, r.status)
}

export async function startDashboard (opts: DashboardOptions): Promise<Dashboard> {
  const bindHost = opts.host ?? '127.0.0.1'
  if (bindHost !== '127.0.0.1') throw new Error(`dashboard: host ${bindHost} refused: the dashboard binds 127.0.0.1 only`)
  const port = opts.port ?? 0
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`dashboard: port ${String(port)} is not a port number`)
  const { source } = opts
  const now = opts.now ?? Date.now
  const log = opts.log ?? (() => {})
  const maxStreams = opts.maxStreams ?? 32
  const maxTimeline = opts.maxTimelineTasks ?? 20_000
  const maxTimelineEvents = opts.maxTimelineEvents ?? 100_000
  const sessions = createSessions(opts.sessions)
  const files = new Map(Object.keys(STATIC).map(name => [name, readFileSync(new URL(`./static/${name}`, import.meta.url))]))
  let hosts: ReadonlySet<string> = new Set()
  let cookieName = 'meshfarm'
  let failures: number[] = []

  const app = new Hono<Env>()

  app.use(async (c, next) => {
    await next()
    c.header('Content-Security-Policy', CSP)
    c.header('X-Content-Type-Options', 'nosniff')
    // Not `no-referrer`: under it Chromium sends `Origin: null` on our own form posts and fetches, and the
    // Origin check below could not tell them from an opaque (sandboxed) attacker. `same-origin` sends nothing
    // to any other site, and our URLs carry no secrets anyway.
    c.header('Referrer-Policy', 'same-origin')
    c.header('X-Frame-Options', 'DENY')
    c.header('Cross-Origin-Opener-Policy', 'same-origin')
    c.header('Cross-Origin-Resource-Policy', 'same-origin')
    if (c.res.headers.get('Cache-Control') == null) c.header('Cache-Control', 'no-store')
  })

  app.use(async (c, next) => {
    const host = c.req.header('host')
    const bad = checkHost(host, hosts) ?? checkRequest({
      method: c.req.method, path: c.req.path, host: host!, origin: c.req.header('origin'), secFetchSite: c.req.header('sec-fetch-site')
    })
    if (bad != null) {
      log(`dashboard: ${c.req.method} ${c.req.path.slice(0, 80)} refused: ${bad.reason}`)
      return refuse(c, bad)
    }
    await next()
  })

  // Bodies: a login form at most; nothing else takes one.
  app.use(bodyLimit({ maxSize: 2048, onError: c => c.json({ error: 'request body too large' }, 413) }))

  const sessionOf = (c: Context<Env>): { id: string, session: Session } | null => {
    const id = getCookie(c, cookieName)
    const session = sessions.get(id, now())
    if (session == null || id == null) return null
    if (source.roleOf != null) {
      // Membership is checked on every request: someone removed from the mesh is logged out at once.
      const role = source.roleOf(session.user.peerId)
      if (role == null) {
        sessions.end(id)
        log(`dashboard: ${session.user.name} is no longer a member: session ended`)
        return null
      }
      session.user.role = role
    }
    return { id, session }
  }

  // Everything under /api/ needs a session.
  app.use('/api/*', async (c, next) => {
    const s = sessionOf(c)
    if (s == null) return c.json({ error: 'log in first' }, 401)
    c.set('session', s.session)
    c.set('sessionId', s.id)
    await next()
  })

  app.get('/', c => sessionOf(c) == null ? c.redirect('/login', 303) : c.body(files.get('index.html')!, 200, { 'Content-Type': STATIC['index.html'] }))
  app.get('/login', c => c.html(loginPage(null)))
  app.get('/favicon.ico', c => c.body(null, 204))
  app.get('/static/:name', c => {
    const name = c.req.param('name')
    const body = Object.hasOwn(STATIC, name) ? files.get(name) : undefined
    if (body == null) return c.json({ error: 'not found' }, 404)
    return c.body(body, 200, { 'Content-Type': STATIC[name], 'Cache-Control': 'no-cache' })
  })

  app.post('/login', async c => {
    const t = now()
    failures = failures.filter(f => t - f < LOGIN_WINDOW_MS)
    if (failures.length >= MAX_LOGIN_FAILURES) return c.html(loginPage('Too many failed logins; wait a minute.'), 429)
    const form = await c.req.parseBody().catch(() => null)
    const code = form != null && typeof form.code === 'string' ? form.code : ''
    const who = code === '' ? null : source.redeemLoginCode(code, t)
    if (who == null) {
      failures.push(t)
      log('dashboard: a login code was refused')
      return c.html(loginPage('That code is unknown, used or expired. Run `meshfarm dashboard` for a new one.'), 401)
    }
    const id = sessions.create(who, t)
    setCookie(c, cookieName, id, { httpOnly: true, sameSite: 'Strict', path: '/' })
    log(`dashboard: ${who.name} (${who.role}) logged in`)
    return c.redirect('/', 303)
  })

  app.post('/logout', c => {
    const s = sessionOf(c)
    if (s != null) sessions.end(s.id)
    deleteCookie(c, cookieName, { path: '/' })
    return c.redirect('/login', 303)
  })

  app.get('/api/me', c => {
    const { user } = c.get('session')
    return c.json({ peerId: user.peerId, name: user.name, role: user.role })
  })

  app.get('/api/overview', c => {
    const seq = hub.lastSeq
    const { agents, jobs } = source.overview(now())
    return c.json({ seq, agents, jobs })
  })

  const jobTasks = (jobId: number, after: number, limit: number): { tasks: TaskRecord[], next: number | null } | null => {
    try {
      return source.tasks(jobId, after, limit)
    } catch (err) {
      if ((err as { code?: string }).code === 'NOT_FOUND') return null
      throw err
    }
  }

  app.get('/api/jobs/:id/tasks', c => {
    const jobId = parseJobId(c.req.param('id'))
    const after = c.req.query('after') ?? '0'
    const limit = c.req.query('limit') ?? '200'
    if (jobId == null) return c.json({ error: 'job id: not a job id' }, 400)
    if (!/^\d{1,9}$/.test(after) || !/^\d{1,4}$/.test(limit)) return c.json({ error: 'after, limit: not counts' }, 400)
    const page = jobTasks(jobId, Number(after), Math.max(1, Math.min(1000, Number(limit))))
    return page == null ? c.json({ error: `job ${jobId}: no such job` }, 404) : c.json({ tasks: page.tasks.map(pageTask), next: page.next })
  })

  /** The first `maxTimeline` records of a job; null for an unknown job. */
  const allTasks = (jobId: number): TaskRecord[] | null => {
    const records: TaskRecord[] = []
    let after: number | null = 0
    while (after != null && records.length < maxTimeline) {
      const page = jobTasks(jobId, after, Math.min(1000, maxTimeline - records.length))
      if (page == null) return null
      records.push(...page.tasks)
      after = page.tasks.length === 0 ? null : page.next
    }
    return records
  }

  /** A job's earlier attempts, from its events (when the source can give them). */
  const earlierBars = (jobId: number, records: readonly TaskRecord[]): TimelineBar[] => {
    if (source.jobEvents == null) return []
    const events: MeshEvent[] = []
    let seq = 0
    while (events.length < maxTimelineEvents) {
      const page = source.jobEvents(jobId, seq, Math.min(5000, maxTimelineEvents - events.length))
      if (page.length === 0) break
      events.push(...page)
      seq = page[page.length - 1].seq
    }
    const names = new Map(records.map(r => [r.index, r.name]))
    return earlierAttemptBars(events, i => names.get(i) ?? `task ${i}`)
  }

  app.get('/api/jobs/:id/failures', async c => {
    const jobId = parseJobId(c.req.param('id'))
    if (jobId == null) return c.json({ error: 'job id: not a job id' }, 400)
    const records = allTasks(jobId)
    if (records == null) return c.json({ error: `job ${jobId}: no such job` }, 404)
    const failed = records.filter(r => r.state === 'failed')
    const failures = failed.slice(0, 50).map(pageTask)
    if (source.stderrTail != null) {
      for (const f of failures) {
        if (f.stderrTail == null && (f.stderr?.size ?? 0) > 0) f.stderrTail = (await source.stderrTail(jobId, f.index)) ?? undefined
      }
    }
    return c.json({ total: failed.length, failures })
  })

  app.get('/api/jobs/:id/timeline.svg', c => {
    const jobId = parseJobId(c.req.param('id'))
    if (jobId == null) return c.json({ error: 'job id: not a job id' }, 400)
    const job = source.overview(now()).jobs.find(j => j.jobId === jobId)
    const records = allTasks(jobId)
    if (records == null) return c.json({ error: `job ${jobId}: no such job` }, 404)
    const title = `job ${jobId}${job != null ? ` ${job.name}` : ''}`
    const svg = renderTimelineSvg([...barsFromRecords(records), ...earlierBars(jobId, records)], { now: now(), title, width: 960 })
    return c.body(svg, 200, { 'Content-Type': 'image/svg+xml; charset=utf-8' })
  })

  const cancel = async (c: Context<Env>): Promise<Response> => {
    const jobId = parseJobId(c.req.param('id'))
    if (jobId == null) return c.json({ error: 'job id: not a job id' }, 400)
    const job = source.overview(now()).jobs.find(j => j.jobId === jobId)
    if (job == null) return c.json({ error: `job ${jobId}: no such job` }, 404)
    const { user } = c.get('session')
    const no = mayDo(user, { kind: 'cancel', owner: job.owner })
    if (no != null) return refuse(c, no)
    let cancelled: number
    try {
      cancelled = await source.cancelJob(jobId, { peerId: user.peerId, role: user.role })
    } catch (err) {
      if (isMeshfarmError(err) && err.code === 'NOT_FOUND') return c.json({ error: `job ${jobId}: no such job` }, 404)
      if (isMeshfarmError(err) && err.code === 'FORBIDDEN') return c.json({ error: err.message }, 403)
      throw err
    }
    log(`dashboard: ${user.name} cancelled job ${jobId} (${cancelled} tasks)`)
    return c.json({ jobId, cancelled })
  }
  app.post('/api/jobs/:id/cancel', cancel)
  app.delete('/api/jobs/:id', cancel)

  app.get('/api/events', c => {
    if (hub.streams >= maxStreams) return c.json({ error: 'too many event streams' }, 503)
    const lastEventId = parseLastEventId(c.req.header('last-event-id'))
    const socket = c.env.incoming.socket
    return streamSSE(c, async stream => {
      const handle = hub.open({
        write: async frame => await stream.write(frame),
        kill: () => { void stream.close(); socket.destroy() }
      }, lastEventId)
      stream.onAbort(() => handle.close())
      await handle.done
    })
  })

  app.notFound(c => c.json({ error: 'not found' }, 404))
  app.onError((err, c) => {
    log(`dashboard: ${c.req.method} ${c.req.path.slice(0, 80)}: ${err instanceof Error ? err.message : String(err)}`)
    return c.json({ error: 'internal error' }, 500)
  })

  const hub = new EventHub(source, { heartbeatMs: opts.heartbeatMs, maxQueuedBytes: opts.maxQueuedBytes, retryMs: opts.retryMs, log })

  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: bindHost, port }, () => resolve(s as Server)) as Server
    s.once('error', reject)
  }).catch(err => {
    hub.stop()
    throw new Error(`dashboard: cannot listen on ${bindHost}:${port}: ${err instanceof Error ? err.message : String(err)}`)
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000
  const actual = (server.address() as AddressInfo).port
  hosts = allowedHosts(actual)
  // Cookies are not per port: a name with the port keeps two dashboards on one machine apart.
  cookieName = `meshfarm-${actual}`
  log(`dashboard: listening on http://127.0.0.1:${actual}/`)

  return {
    url: `http://127.0.0.1:${actual}/`,
    port: actual,
    streams: () => hub.streams,
    dropStreams: () => hub.closeAll(),
    close: async () => {
      hub.stop()
      await new Promise<void>(resolve => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    }
  }
}
