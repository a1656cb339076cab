/**
 * The bulk listener (it runs in the bulk worker, worker.ts): a TCP port beside the libp2p one that accepts nothing
 * but tickets. A connection must present the preface and a valid token within seconds, from the address the
 * ticket was issued to; anything else is closed at once, before a byte is sent back. A redeemed ticket runs its
 * work (send a file range, receive an upload) on the connection.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { MeshfarmError, errorMessage } from '../../util/errors.ts'
import { PREFACE, TOKEN_BYTES } from './records.ts'
import { TicketBook, type TicketSpec } from './tickets.ts'

const PREFACE_TIMEOUT_MS = 3000
/** Connections still to present their token: a flood of idle connections is cut off here. */
const MAX_UNREDEEMED = 256

export interface TicketWork {
  run: (socket: Socket) => Promise<void>
  /** The outcome: null when the work succeeded; an error, or TIMEOUT when nobody came for the ticket. */
  settle: (err: unknown) => void
}

export class BulkListener {
  readonly port: number
  private readonly servers: Server[]
  private readonly book = new TicketBook<TicketWork>()
  private readonly log: (line: string) => void
  private readonly refusals = new Map<string, number>()
  private readonly sweeper: NodeJS.Timeout
  private unredeemed = 0
  private readonly open = new Set<Socket>()
  /** Connections running a ticket's work, by the peer the ticket was issued to. */
  private readonly active = new Map<Socket, string>()

  private constructor (servers: Server[], port: number, log: (line: string) => void) {
    this.servers = servers
    this.port = port
    this.log = log
    for (const s of servers) s.on('connection', socket => { this.accept(socket) })
    // Expired tickets release whoever waits on them (an upload's stream handler).
    this.sweeper = setInterval(() => {
      for (const t of this.book.expire(Date.now())) t.work.settle(new MeshfarmError('TIMEOUT', 'the bulk connection never came'))
    }, 1000)
    this.sweeper.unref()
  }

  /** Listens on each host (one port for all); port 0 picks a free one. */
  static async start (hosts: string[], port: number, log: (line: string) => void): Promise<BulkListener> {
    const unique = [...new Set(hosts)]
    const all = unique.includes('0.0.0.0') ? ['0.0.0.0'] : unique.includes('::') ? ['::'] : unique
    const servers: Server[] = []
    let chosen = port
    try {
      for (const host of all) {
        const server = createServer({ noDelay: true })
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          server.listen(chosen, host, () => { server.off('error', reject); resolve() })
        })
        chosen = (server.address() as { port: number }).port
        servers.push(server)
      }
    } catch (err) {
      for (const s of servers) s.close()
      throw new MeshfarmError('BAD_ARGUMENT', `bulk listener: cannot listen on ${all.join(', ')} port ${chosen}: ${errorMessage(err)}`)
    }
    if (servers.length === 0) throw new MeshfarmError('BAD_ARGUMENT', 'bulk listener: no address to listen on')
    return new BulkListener(servers, chosen, log)
  }

  /** Records a ticket; false when too many are outstanding (the caller then uses the stream). */
  offer (spec: TicketSpec<TicketWork>, token: string): boolean {
    return this.book.issue(spec, token, Date.now()) != null
  }

  /** Peers with tickets or transfers under way. */
  peers (): string[] {
    return [...new Set([...this.book.peers(), ...this.active.values()])]
  }

  /** Peers that lost their place (the access list, an agent's members): their tickets and transfers end now. */
  drop (peers: string[]): void {
    const gone = new Set(peers)
    for (const p of gone) this.book.revoke(p)
    for (const [socket, peer] of this.active) if (gone.has(peer)) socket.destroy()
  }

  async close (): Promise<void> {
    clearInterval(this.sweeper)
    for (const s of this.open) s.destroy()
    for (const t of this.book.expire(Number.MAX_SAFE_INTEGER)) t.work.settle(new MeshfarmError('NO_COORDINATOR', 'the bulk listener is closing'))
    await Promise.all(this.servers.map(async s => { await new Promise<void>(resolve => { s.close(() => { resolve() }) }) }))
  }

  private accept (socket: Socket): void {
    const ip = socket.remoteAddress ?? '?'
    if (this.unredeemed >= MAX_UNREDEEMED) {
      socket.destroy()
      return
    }
    this.unredeemed++
    this.open.add(socket)
    socket.once('close', () => { this.open.delete(socket) })
    socket.on('error', () => {})
    let head = Buffer.alloc(0)
    let settled = false
    const finishPreface = (): void => {
      settled = true
      this.unredeemed--
      clearTimeout(timer)
      socket.off('data', onData)
    }
    const refuse = (why: string): void => {
      if (settled) return
      finishPreface()
      this.audit(ip, `bulk: refused a connection from ${ip}: ${why}`)
      socket.destroy()
    }
    const timer = setTimeout(() => { refuse(`no token within ${PREFACE_TIMEOUT_MS} ms`) }, PREFACE_TIMEOUT_MS)
    const onData = (data: Buffer): void => {
      head = Buffer.concat([head, data])
      const have = Math.min(head.length, PREFACE.length)
      if (!head.subarray(0, have).equals(PREFACE.subarray(0, have))) return refuse('not a bulk connection')
      if (head.length < PREFACE.length + TOKEN_BYTES) return
      finishPreface()
      socket.pause()
      const token = head.subarray(PREFACE.length, PREFACE.length + TOKEN_BYTES).toString('hex')
      const rest = head.subarray(PREFACE.length + TOKEN_BYTES)
      const r = this.book.redeem(token, ip, Date.now())
      if (!r.ok) {
        this.audit(ip, `bulk: refused a connection from ${ip}: ${r.why}`)
        socket.destroy()
        return
      }
      const { ticket } = r
      if (rest.length > 0) socket.unshift(rest)
      this.active.set(socket, ticket.peer)
      socket.once('close', () => { this.active.delete(socket) })
      ticket.work.run(socket).then(() => {
        ticket.work.settle(null)
        socket.end()
      }, err => {
        ticket.work.settle(err)
        socket.destroy()
      })
    }
    socket.on('data', onData)
  }

  /** One line per address a minute: an audit trail that a flood cannot turn into a log flood. */
  private audit (ip: string, line: string): void {
    const now = Date.now()
    if ((this.refusals.get(ip) ?? 0) > now - 60_000) return
    if (this.refusals.size > 10_000) this.refusals.clear()
    this.refusals.set(ip, now)
    this.log(line)
  }
}
