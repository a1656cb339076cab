/**
 * Finding meshfarm peers on the LAN by mDNS, on EVERY network interface that has an address. libp2p's mDNS
 * sends through the default route only: on an isolated lab network without a gateway there is none, its sends
 * fail (ENETUNREACH) and nobody is found, silently. Here each IPv4 interface gets its own socket that joins the
 * mDNS group and sends through that interface; when no interface can carry mDNS, or a send fails, it says so
 * once. Answers carry the peer's addresses as TXT `dnsaddr=` records, as libp2p's mDNS does.
 */
import { networkInterfaces } from 'node:os'
import multicastDNS from 'multicast-dns'
import { peerDiscoverySymbol, serviceCapabilities, type PeerDiscovery, type PeerDiscoveryEvents, type PeerInfo, type PeerId } from '@libp2p/interface'
import { TypedEventEmitter } from 'main-event'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { isLoopback } from './addresses.ts'

const SERVICE = '_meshfarm._udp.local'
const GROUP = '224.0.0.251'
const PORT = 5353
/** Addresses per answer, and answers per response: a hostile responder cannot make us hold more. */
const MAX_ADDRS = 16

export interface LanDiscoveryInit {
  /** Seconds between queries. */
  intervalMs?: number
  log?: (line: string) => void
  /** The interfaces' addresses (tests give their own); default: every non-internal IPv4 address. */
  interfaces?: () => string[]
}

interface Components {
  peerId: PeerId
  addressManager: { getAddresses: () => Multiaddr[] }
}

type Mdns = ReturnType<typeof multicastDNS>

/** Non-internal IPv4 addresses, one per interface. */
export function lanInterfaces (): string[] {
  const out: string[] = []
  for (const addrs of Object.values(networkInterfaces())) {
    const v4 = (addrs ?? []).find(a => a.family === 'IPv4' && !a.internal)
    if (v4 != null) out.push(v4.address)
  }
  return out
}

/** The peer a response describes, from its dnsaddr TXT records; null when it holds none of ours. */
export function peerFromAnswers (answers: ReadonlyArray<{ type: string, name: string, data?: unknown }>, self: string): PeerInfo | null {
  const addrs: Multiaddr[] = []
  let id: string | null = null
  for (const a of answers) {
    if (a.type !== 'TXT' || !a.name.endsWith(SERVICE)) continue
    const records = Array.isArray(a.data) ? a.data : [a.data]
    for (const r of records) {
      const text = Buffer.isBuffer(r) ? r.toString() : String(r)
      if (!text.startsWith('dnsaddr=') || addrs.length >= MAX_ADDRS) continue
      try {
        const ma = multiaddr(text.slice('dnsaddr='.length))
        const p2p = ma.getComponents().find(c => c.name === 'p2p')?.value
        if (p2p == null || (id != null && p2p !== id)) continue
        id = p2p
        addrs.push(ma)
      } catch { /* not a multiaddr: ignore the record */ }
    }
  }
  if (id == null || id === self || addrs.length === 0) return null
  try {
    return { id: peerIdFromString(id), multiaddrs: addrs }
  } catch {
    return null
  }
}

export class LanDiscovery extends TypedEventEmitter<PeerDiscoveryEvents> implements PeerDiscovery {
  readonly [peerDiscoverySymbol] = this
  readonly [Symbol.toStringTag] = 'meshfarm/lan-discovery'
  readonly [serviceCapabilities] = ['@libp2p/peer-discovery']
  private readonly components: Components
  private readonly init: LanDiscoveryInit
  private sockets: Array<{ iface: string, mdns: Mdns }> = []
  private timer: NodeJS.Timeout | null = null
  private readonly complained = new Set<string>()

  constructor (components: Components, init: LanDiscoveryInit = {}) {
    super()
    this.components = components
    this.init = init
  }

  private say (key: string, line: string): void {
    if (this.complained.has(key)) return
    this.complained.add(key)
    this.init.log?.(line)
  }

  async start (): Promise<void> {
    const ifaces = (this.init.interfaces ?? lanInterfaces)()
    if (ifaces.length === 0) {
      this.say('none', 'mdns: LAN discovery cannot work here: no network interface has an IPv4 address (use a bootstrap list)')
      return
    }
    for (const iface of ifaces) {
      const mdns = multicastDNS({ interface: iface, bind: '0.0.0.0', port: PORT, ip: GROUP, reuseAddr: true, loopback: true })
      mdns.on('query', (q) => { this.onQuery(mdns, iface, q) })
      mdns.on('response', (r) => { this.onResponse(r) })
      mdns.on('warning', (err: Error) => { this.say(`warn ${iface}`, `mdns: on ${iface}: ${err.message}`) })
      mdns.on('error', (err: Error) => { this.say(`error ${iface}`, `mdns: cannot use ${iface}: ${err.message}`) })
      this.sockets.push({ iface, mdns })
    }
    this.query()
    this.timer = setInterval(() => { this.query() }, this.init.intervalMs ?? 10_000)
    this.timer.unref()
  }

  private query (): void {
    for (const { iface, mdns } of this.sockets) {
      mdns.query({ questions: [{ name: SERVICE, type: 'PTR' }] }, (err: Error | null) => {
        if (err != null) this.say(`send ${iface}`, `mdns: cannot send on ${iface} (${err.message}): peers there will not find this one by LAN discovery`)
      })
    }
  }

  private onQuery (mdns: Mdns, iface: string, q: { questions: Array<{ name: string, type: string }> }): void {
    if (!q.questions.some(x => x.name === SERVICE)) return
    const self = this.components.peerId.toString()
    const addrs = this.components.addressManager.getAddresses()
      .filter(a => !isLoopback(a.toString()))
      .slice(0, MAX_ADDRS)
      .map(a => a.toString().includes('/p2p/') ? a.toString() : `${a.toString()}/p2p/${self}`)
    if (addrs.length === 0) return
    const name = `${self.slice(-16)}.${SERVICE}`
    mdns.respond({
      answers: [
        { name: SERVICE, type: 'PTR', class: 'IN', ttl: 120, data: name },
        { name, type: 'TXT', class: 'IN', ttl: 120, data: addrs.map(a => `dnsaddr=${a}`) }
      ]
    }, (err: Error | null) => {
      if (err != null) this.say(`send ${iface}`, `mdns: cannot answer on ${iface} (${err.message})`)
    })
  }

  private onResponse (r: { answers?: ReadonlyArray<{ type: string, name: string, data?: unknown }> }): void {
    const peer = peerFromAnswers(r.answers ?? [], this.components.peerId.toString())
    if (peer != null) this.safeDispatchEvent('peer', { detail: peer })
  }

  async stop (): Promise<void> {
    if (this.timer != null) clearInterval(this.timer)
    this.timer = null
    await Promise.all(this.sockets.map(async ({ mdns }) => { await new Promise<void>(resolve => { mdns.destroy(() => { resolve() }) }) }))
    this.sockets = []
  }
}

export function lanDiscovery (init: LanDiscoveryInit = {}): (components: Components) => PeerDiscovery {
  return (components) => new LanDiscovery(components, init)
}
