/**
 * One-time tickets for the bulk channel, decided as a pure function of (book, now): a ticket is issued inside an
 * authenticated, access-checked blob stream and names the peer it was issued to, the address that peer connected
 * from, the blob, the byte range and the direction. A connection to the bulk port redeems it once, within seconds,
 * from that address; anything else (unknown, used, expired, wrong address) is refused.
 */
import type { BulkDirection } from './records.ts'

/** How long a ticket waits for its connection: the other side connects at once, or falls back. */
export const TICKET_TTL_MS = 10_000
/** Outstanding tickets at most: a member asking for thousands without connecting cannot grow memory. */
export const MAX_TICKETS = 4096

export interface TicketSpec<T = unknown> {
  peer: string
  /** The remote address of the authenticated connection the ticket was asked on (IPv4 or IPv6 text). */
  ip: string
  hash: string
  direction: BulkDirection
  offset: number
  length: number
  /** What the listener does with the connection (the serving side's own data: a file to send, a sink). */
  work: T
}

export interface Ticket<T = unknown> extends TicketSpec<T> {
  token: string
  expiresAt: number
}

export type Redeemed<T> = { ok: true, ticket: Ticket<T> } | { ok: false, why: string }

/** `::ffff:10.0.0.1` and `10.0.0.1` are one address. */
export function normalizeIp (ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip
}

export class TicketBook<T = unknown> {
  private readonly tickets = new Map<string, Ticket<T>>()

  get size (): number {
    return this.tickets.size
  }

  /** Records a ticket under `token` (hex of random bytes the caller drew); false when the book is full. */
  issue (spec: TicketSpec<T>, token: string, now: number): Ticket<T> | null {
    this.expire(now)
    if (this.tickets.size >= MAX_TICKETS) return null
    const ticket = { ...spec, ip: normalizeIp(spec.ip), token, expiresAt: now + TICKET_TTL_MS }
    this.tickets.set(token, ticket)
    return ticket
  }

  /** Takes a ticket out of the book whatever the outcome: a token is good for one try. */
  redeem (token: string, fromIp: string, now: number): Redeemed<T> {
    const ticket = this.tickets.get(token)
    if (ticket == null) return { ok: false, why: 'unknown or used token' }
    this.tickets.delete(token)
    if (ticket.expiresAt <= now) return { ok: false, why: 'expired token' }
    if (normalizeIp(fromIp) !== ticket.ip) return { ok: false, why: `token of ${ticket.ip} presented from ${normalizeIp(fromIp)}` }
    return { ok: true, ticket }
  }

  /** Drops expired tickets; returns them (their owners may be waiting on them). */
  expire (now: number): Array<Ticket<T>> {
    const gone: Array<Ticket<T>> = []
    for (const [token, t] of this.tickets) {
      if (t.expiresAt <= now) {
        this.tickets.delete(token)
        gone.push(t)
      }
    }
    return gone
  }

  /** Peers holding tickets now. */
  peers (): Set<string> {
    return new Set([...this.tickets.values()].map(t => t.peer))
  }

  /** Tickets issued to a peer that lost its place on the list. */
  revoke (peer: string): void {
    for (const [token, t] of this.tickets) if (t.peer === peer) this.tickets.delete(token)
  }
}
