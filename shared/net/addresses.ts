/** Which addresses of a peer are worth handing to other machines. */
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'

/** The IP of a multiaddr (`/ip4/10.0.0.2/tcp/7341` -> `10.0.0.2`), or null for one without (a DNS name, say). */
export function ipOf (addr: string | Multiaddr): string | null {
  try {
    const ma = typeof addr === 'string' ? multiaddr(addr) : addr
    return ma.getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value ?? null
  } catch {
    return null
  }
}

/** True for 127.0.0.0/8 and ::1: an address that only ever reaches this same machine. */
export function isLoopback (addr: string): boolean {
  const ip = ipOf(addr) ?? ''
  return ip.startsWith('127.') || ip === '::1'
}
