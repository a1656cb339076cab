/**
 * The private-network layer: every byte of a connection, the Noise handshake included, is encrypted with a
 * stream cipher keyed by the mesh's swarm key, so a peer without the key cannot even begin a handshake.
 *
 * This is libp2p's pre-shared-key protector (@libp2p/pnet: a 24-byte random nonce from each side, then each
 * direction encrypted under the PSK) with one change: the cipher is ChaCha20 from node:crypto (OpenSSL)
 * instead of XSalsa20 compiled to WebAssembly, which took about half of a peer's CPU on large transfers. Each
 * direction gets its own key, HKDF-SHA256(swarm key, the sender's nonce and side), so no two streams share a
 * keystream.
 * Like pnet, this layer only keeps strangers out: confidentiality and integrity between members come from
 * Noise underneath. The swarm.key file keeps libp2p's format (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex).
 */
import { createCipheriv, hkdfSync, randomBytes, type Cipheriv } from 'node:crypto'
import { AbstractMultiaddrConnection, byteStream } from '@libp2p/utils'
import type { AbortOptions, ConnectionProtector, MultiaddrConnection } from '@libp2p/interface'
import type { SendResult } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'
import { MeshfarmError } from '../util/errors.ts'

const NONCE_BYTES = 24
const KEY_BYTES = 32
const HANDSHAKE_TIMEOUT_MS = 5000

/** The 32-byte key inside a libp2p swarm.key file. */
export function decodeSwarmKey (file: Uint8Array): Uint8Array {
  const lines = Buffer.from(file).toString('utf8').split(/\r?\n/)
  const hex = (lines[2] ?? '').trim()
  if (lines[0]?.trim() !== '/key/swarm/psk/1.0.0/' || lines[1]?.trim() !== '/base16/' || !/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new MeshfarmError('BAD_ARGUMENT', 'swarm.key is not a libp2p pre-shared key (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits)')
  }
  return Buffer.from(hex, 'hex')
}

/**
 * One direction's cipher: its own key from the swarm key, the sender's nonce and the sender's side (dialer or
 * listener, so that a peer echoing our nonce back still cannot make both directions share a keystream); the
 * counter starts from zero.
 */
export function directionKey (psk: Uint8Array, nonce: Uint8Array, sender: 'dialer' | 'listener'): Buffer {
  return Buffer.from(hkdfSync('sha256', psk, nonce, `meshfarm private network v1 ${sender}`, KEY_BYTES))
}

function directionCipher (psk: Uint8Array, nonce: Uint8Array, sender: 'dialer' | 'listener'): Cipheriv {
  return createCipheriv('chacha20', directionKey(psk, nonce, sender), Buffer.alloc(16))
}

class EncryptedConnection extends AbstractMultiaddrConnection {
  private readonly inner: MultiaddrConnection
  private readonly outbound: Cipheriv
  private readonly inbound: Cipheriv

  constructor (inner: MultiaddrConnection, outbound: Cipheriv, inbound: Cipheriv) {
    super({ remoteAddr: inner.remoteAddr, direction: inner.direction, log: inner.log.newScope('private-network') })
    this.inner = inner
    this.outbound = outbound
    this.inbound = inbound
    inner.addEventListener('message', (evt) => {
      const data = evt.data
      if (data instanceof Uint8Array) this.onData(this.inbound.update(data))
      else for (const buf of data) this.onData(this.inbound.update(buf))
    })
    inner.addEventListener('drain', () => { this.onMuxerDrain() })
    inner.addEventListener('close', (evt) => {
      if (evt.error == null) this.onTransportClosed()
      else if (evt.local) this.abort(evt.error)
      else this.onRemoteReset()
    })
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    await this.inner.close(options)
  }

  sendData (data: Uint8ArrayList): SendResult {
    return { sentBytes: data.byteLength, canSendMore: this.inner.send(this.outbound.update(data.subarray())) }
  }

  sendReset (err: Error): void {
    this.inner.abort(err)
  }

  sendPause (): void {
    this.inner.pause()
  }

  sendResume (): void {
    this.inner.resume()
  }
}

class PrivateNetworkProtector implements ConnectionProtector {
  readonly [Symbol.toStringTag] = 'meshfarm/private-network'
  private readonly psk: Uint8Array

  constructor (swarmKeyFile: Uint8Array) {
    this.psk = decodeSwarmKey(swarmKeyFile)
  }

  async protect (connection: MultiaddrConnection, options?: AbortOptions): Promise<MultiaddrConnection> {
    const localNonce = randomBytes(NONCE_BYTES)
    const opts = options ?? { signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS) }
    const bytes = byteStream(connection)
    const [remote] = await Promise.all([bytes.read({ bytes: NONCE_BYTES, ...opts }), bytes.write(localNonce, opts)])
    const remoteNonce = remote.subarray()
    const local = connection.direction === 'outbound' ? 'dialer' : 'listener'
    const remoteSide = local === 'dialer' ? 'listener' : 'dialer'
    return new EncryptedConnection(bytes.unwrap(), directionCipher(this.psk, localNonce, local), directionCipher(this.psk, remoteNonce, remoteSide))
  }
}

/** The connection protector for libp2p's `connectionProtector` option, from the bytes of a swarm.key file. */
export function privateNetwork (swarmKeyFile: Uint8Array): () => ConnectionProtector {
  const protector = new PrivateNetworkProtector(swarmKeyFile)
  return () => protector
}
