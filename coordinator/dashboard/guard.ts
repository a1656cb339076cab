/**
 * The dashboard's request checks as pure functions of the request's headers (Ray's dashboard lessons):
 * - Host must be one of a fixed list, so a DNS-rebound name (evil.example resolving to 127.0.0.1) is refused
 *   before any routing, even though the browser thinks it is same-origin with the attacker's page;
 * - every method that is not GET/HEAD, DELETE included (Ray gated only POST/PUT), needs an Origin equal to
 *   ours and a Sec-Fetch-Site of same-origin (or none, for clients that do not send it);
 * - reads of the API refuse cross-site fetch metadata too, in case a cookie ever rides along;
 * - what a role may do is decided here, not in the page.
 */
import type { DashboardRole } from './source.ts'

export type Refusal = { status: 400 | 401 | 403 | 405 | 421, reason: string }

/** The Host values this server answers to: loopback names with its own port, nothing else. */
export function allowedHosts (port: number): ReadonlySet<string> {
  return new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`])
}

export function checkHost (host: string | undefined, allowed: ReadonlySet<string>): Refusal | null {
  if (host == null || host === '') return { status: 400, reason: 'no Host header' }
  if (!allowed.has(host.toLowerCase())) return { status: 421, reason: 'this server does not answer to that Host' }
  return null
}

const SAFE_METHODS = new Set(['GET', 'HEAD'])
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'DELETE'])

export interface RequestFacts {
  method: string
  path: string
  host: string
  origin: string | undefined
  secFetchSite: string | undefined
}

/**
 * Refuses what no route should see: unknown methods, state changes from another origin, API reads from
 * another site. `host` has already passed `checkHost`.
 */
export function checkRequest (r: RequestFacts): Refusal | null {
  if (!KNOWN_METHODS.has(r.method)) return { status: 405, reason: `method ${r.method} is not allowed` }
  // HEAD would open an event stream nobody reads (holding one of the few stream places); the API has no use for it.
  if (r.method === 'HEAD' && r.path.startsWith('/api/')) return { status: 405, reason: 'HEAD is not allowed on the API' }
  const site = r.secFetchSite?.toLowerCase()
  if (!SAFE_METHODS.has(r.method)) {
    if (r.origin == null) return { status: 403, reason: 'a request that changes something needs an Origin header' }
    if (r.origin !== `http://${r.host.toLowerCase()}`) return { status: 403, reason: 'cross-origin request refused' }
    if (site != null && site !== 'same-origin') return { status: 403, reason: `Sec-Fetch-Site ${site} refused` }
    return null
  }
  // Reads: pages may be opened from anywhere (a typed address is `none`), the API only from our own page.
  if (r.path.startsWith('/api/') && site != null && site !== 'same-origin' && site !== 'none') {
    return { status: 403, reason: `Sec-Fetch-Site ${site} refused` }
  }
  return null
}

export type Action = { kind: 'cancel', owner: string }

/** Whether `who` may take `action`: readers read, submitters cancel their own jobs, admins any job. */
export function mayDo (who: { peerId: string, role: DashboardRole }, action: Action): Refusal | null {
  if (who.role === 'admin') return null
  if (who.role === 'submitter') {
    return action.owner === who.peerId ? null : { status: 403, reason: 'a submitter may cancel only their own jobs' }
  }
  return { status: 403, reason: 'readers cannot cancel jobs' }
}

/** A job id from a URL: a positive safe integer written plainly, or null. */
export function parseJobId (s: string | undefined): number | null {
  if (s == null || !/^[1-9][0-9]{0,14}$/.test(s)) return null
  const n = Number(s)
  return Number.isSafeInteger(n) ? n : null
}

/** The Last-Event-ID an EventSource sends back on reconnect: a non-negative integer, else null. */
export function parseLastEventId (s: string | undefined): number | null {
  if (s == null || !/^(0|[1-9][0-9]{0,15})$/.test(s.trim())) return null
  const n = Number(s.trim())
  return Number.isSafeInteger(n) ? n : null
}
