/**
 * The private network's key schedule, pure: both ends derive the same key for each direction, the two directions
 * never share one (not even when a peer echoes our nonce back), and the swarm key file is checked.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { decodeSwarmKey, directionKey } from '../../shared/net/private-network.ts'

test('a swarm key file that is not a libp2p PSK is refused in one line', () => {
  assert.throws(() => decodeSwarmKey(Buffer.from('hello\n')), /swarm.key is not a libp2p pre-shared key/)
  assert.throws(() => decodeSwarmKey(Buffer.from('/key/swarm/psk/1.0.0/\n/base16/\nabc\n')), /64 hex digits/)
  assert.equal(decodeSwarmKey(Buffer.from(`/key/swarm/psk/1.0.0/\n/base16/\n${'ab'.repeat(32)}\n`)).length, 32)
})

test('each direction has its own key; an echoed nonce still gives two different keystreams', () => {
  const psk = randomBytes(32)
  const dialerNonce = randomBytes(24)
  const listenerNonce = randomBytes(24)
  // What the dialer encrypts with is what the listener decrypts with, and the other way round.
  assert.deepEqual(directionKey(psk, dialerNonce, 'dialer'), directionKey(psk, dialerNonce, 'dialer'))
  assert.notDeepEqual(directionKey(psk, dialerNonce, 'dialer'), directionKey(psk, listenerNonce, 'listener'))
  // A peer that sends our own nonce back: same nonce both ways, yet the sides keep the keys apart, so a reflected
  // stream does not decrypt to our own plaintext.
  assert.notDeepEqual(directionKey(psk, dialerNonce, 'dialer'), directionKey(psk, dialerNonce, 'listener'))
  // Another mesh's key gives other keys for the same nonce.
  assert.notDeepEqual(directionKey(psk, dialerNonce, 'dialer'), directionKey(randomBytes(32), dialerNonce, 'dialer'))
})
