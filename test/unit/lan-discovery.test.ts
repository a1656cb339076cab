/**
 * LAN discovery's pure parts: which peer an mDNS answer describes (hostile answers included), and the one line
 * it says when discovery cannot work on this machine.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { LanDiscovery, peerFromAnswers } from '../../shared/net/lan-discovery.ts'

const SERVICE = '_meshfarm._udp.local'

async function newPeerId (): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
}

test('an answer names one peer by its dnsaddr records; foreign, mixed and malformed records are ignored', async () => {
  const [a, b, self] = [await newPeerId(), await newPeerId(), await newPeerId()]
  const txt = (data: unknown, name = `x.${SERVICE}`): { type: string, name: string, data: unknown } => ({ type: 'TXT', name, data })
  const peer = peerFromAnswers([txt([`dnsaddr=/ip4/10.0.0.2/tcp/4001/p2p/${a}`, `dnsaddr=/ip4/10.0.0.3/tcp/4001/p2p/${b}`, 'dnsaddr=not a multiaddr', Buffer.from(`dnsaddr=/ip4/10.0.0.4/tcp/4001/p2p/${a}`)])], self)
  assert.equal(peer?.id.toString(), a)
  assert.deepEqual(peer?.multiaddrs.map(m => m.toString()), [`/ip4/10.0.0.2/tcp/4001/p2p/${a}`, `/ip4/10.0.0.4/tcp/4001/p2p/${a}`], 'only the first peer\'s addresses')
  assert.equal(peerFromAnswers([txt(`dnsaddr=/ip4/10.0.0.2/tcp/4001/p2p/${self}`)], self), null, 'ourselves')
  assert.equal(peerFromAnswers([txt(`dnsaddr=/ip4/10.0.0.2/tcp/4001/p2p/${a}`, 'x._other._udp.local')], self), null, 'another service')
  assert.equal(peerFromAnswers([txt('dnsaddr=/ip4/10.0.0.2/tcp/4001')], self), null, 'no peer id')
  const many = Array.from({ length: 100 }, (_, i) => `dnsaddr=/ip4/10.0.${i >> 8}.${i & 255}/tcp/1/p2p/${a}`)
  assert.equal(peerFromAnswers([txt(many)], self)?.multiaddrs.length, 16, 'at most 16 addresses from one answer')
})

test('a machine with no IPv4 interface says once that LAN discovery cannot work here', async () => {
  const lines: string[] = []
  const discovery = new LanDiscovery({} as ConstructorParameters<typeof LanDiscovery>[0], { interfaces: () => [], log: line => lines.push(line) })
  await discovery.start()
  await discovery.start()
  assert.deepEqual(lines, ['mdns: LAN discovery cannot work here: no network interface has an IPv4 address (use a bootstrap list)'])
  await discovery.stop()
})
