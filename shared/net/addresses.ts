/** Which addresses of a peer are worth handing to other machines. */
import { multiaddr } from '@multiformats/multiaddr'

/** True for 127.0.0.0/8 and ::1: an address that only ever reaches this same machine. */
export function isLoopback (addr: string): boolean {
  try {
    const ip = multiaddr(addr).getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value ?? ''
    return ip.startsWith('127.') || ip === '::1'
  } catch {
    return false
  }
}
