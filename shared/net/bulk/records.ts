/**
 * The bulk channel's wire format: AES-256-GCM records of up to 1 MiB over a plain TCP connection.
 *
 *   connecting side:  PREFACE (8 bytes) + token (32 bytes)
 *   data, one way:    record* where record = header (8) | ciphertext (length) | tag (16)
 *   header:           u32 BE plaintext length | u8 flags (bit 0: last record) | 3 zero bytes; it is the record's AAD
 *   nonce:            4 zero bytes | u64 BE record counter (from 0; a key is used for one transfer only)
 *
 * The key is HKDF-SHA256 of a one-time key the serving side sent inside the Noise-encrypted, access-checked blob
 * stream, salted with the blob's hash and bound to the direction and byte range: a record cannot be replayed into
 * another transfer, reordered, dropped or cut off (the last record is flagged, the length is known) without the
 * tag check failing. Plaintext leaves the opener only after its record's tag has been verified.
 */
import { createCipheriv, createDecipheriv, hkdfSync, type DecipherGCM } from 'node:crypto'
import { MeshfarmError } from '../../util/errors.ts'

export const PREFACE = Buffer.from('MFBULK1\n', 'latin1')
export const TOKEN_BYTES = 32
export const KEY_BYTES = 32
export const HEADER_BYTES = 8
export const TAG_BYTES = 16
/** Plaintext per record: large enough that per-record costs (a cipher setup, a tag) vanish, small enough to buffer. */
export const RECORD_BYTES = 1 << 20
const LAST = 1

export type BulkDirection = 'get' | 'put'

/** The transfer's key: one-time key from the serving side, bound to the blob, the direction and the byte range. */
export function bulkKey (oneTimeKey: Uint8Array, hash: string, direction: BulkDirection, offset: number, length: number): Buffer {
  if (oneTimeKey.byteLength !== KEY_BYTES) throw new MeshfarmError('PROTOCOL', `bulk key: expected ${KEY_BYTES} bytes, got ${oneTimeKey.byteLength}`)
  return Buffer.from(hkdfSync('sha256', oneTimeKey, Buffer.from(hash, 'hex'), `meshfarm bulk v1 ${direction} ${offset} ${length}`, KEY_BYTES))
}

export function nonceFor (counter: number): Buffer {
  const nonce = Buffer.alloc(12)
  nonce.writeBigUInt64BE(BigInt(counter), 4)
  return nonce
}

function header (length: number, last: boolean): Buffer {
  const h = Buffer.alloc(HEADER_BYTES)
  h.writeUInt32BE(length, 0)
  h[4] = last ? LAST : 0
  return h
}

/** Seals records in order; each call is one record: [header, ciphertext, tag], ready for one corked write. */
export class RecordSealer {
  private readonly key: Buffer
  private counter = 0

  constructor (key: Buffer) {
    this.key = key
  }

  seal (plain: Uint8Array, last: boolean): Buffer[] {
    if (plain.byteLength > RECORD_BYTES) throw new MeshfarmError('INTERNAL', `bulk record of ${plain.byteLength} bytes exceeds ${RECORD_BYTES}`)
    if (plain.byteLength === 0 && !last) throw new MeshfarmError('INTERNAL', 'an empty bulk record must be the last')
    const h = header(plain.byteLength, last)
    const cipher = createCipheriv('aes-256-gcm', this.key, nonceFor(this.counter++))
    cipher.setAAD(h)
    const body = cipher.update(plain)
    cipher.final()
    return [h, body, cipher.getAuthTag()]
  }
}

/**
 * Opens records as bytes arrive in pieces of any size. push() returns the plaintext of every record completed and
 * verified by that piece, one buffer per record (nothing of a record whose tag has not been checked: one write and
 * one hash update per record downstream); it throws PROTOCOL on a record
 * that fails authentication, is too long, runs past the announced length, or follows the last one.
 */
export class RecordOpener {
  private readonly key: Buffer
  private readonly expected: number
  private counter = 0
  private received = 0
  private state: 'header' | 'body' | 'tag' | 'done' = 'header'
  private readonly head = Buffer.alloc(HEADER_BYTES)
  private headFill = 0
  private readonly tag = Buffer.alloc(TAG_BYTES)
  private tagFill = 0
  private bodyLeft = 0
  private length = 0
  private last = false
  private decipher: DecipherGCM | null = null
  private pieces: Buffer[] = []

  /** `expected`: the transfer's plaintext length, known from the ticket. */
  constructor (key: Buffer, expected: number) {
    this.key = key
    this.expected = expected
  }

  get done (): boolean {
    return this.state === 'done'
  }

  /** Verified plaintext bytes so far. */
  get bytes (): number {
    return this.received
  }

  push (chunk: Uint8Array): Buffer[] {
    const out: Buffer[] = []
    let off = 0
    while (off < chunk.byteLength) {
      if (this.state === 'done') throw new MeshfarmError('PROTOCOL', 'bulk transfer: bytes after the last record')
      if (this.state === 'header') {
        const take = Math.min(HEADER_BYTES - this.headFill, chunk.byteLength - off)
        this.head.set(chunk.subarray(off, off + take), this.headFill)
        this.headFill += take
        off += take
        if (this.headFill === HEADER_BYTES) this.startRecord()
      } else if (this.state === 'body') {
        const take = Math.min(this.bodyLeft, chunk.byteLength - off)
        this.pieces.push(this.decipher!.update(chunk.subarray(off, off + take)))
        this.bodyLeft -= take
        off += take
        if (this.bodyLeft === 0) this.state = 'tag'
      } else {
        const take = Math.min(TAG_BYTES - this.tagFill, chunk.byteLength - off)
        this.tag.set(chunk.subarray(off, off + take), this.tagFill)
        this.tagFill += take
        off += take
        if (this.tagFill === TAG_BYTES) {
          const plain = this.endRecord()
          if (plain.byteLength > 0) out.push(plain)
        }
      }
    }
    return out
  }

  /** At the end of the connection: anything short of the last record is a cut-off transfer. */
  end (): void {
    if (this.state !== 'done') throw new MeshfarmError('PROTOCOL', `bulk transfer cut off after ${this.received} of ${this.expected} bytes`)
  }

  private startRecord (): void {
    const length = this.head.readUInt32BE(0)
    const flags = this.head[4]
    if ((flags & ~LAST) !== 0 || this.head[5] !== 0 || this.head[6] !== 0 || this.head[7] !== 0) throw this.fail('a malformed header')
    if (length > RECORD_BYTES) throw this.fail(`a record of ${length} bytes (at most ${RECORD_BYTES})`)
    this.last = (flags & LAST) !== 0
    const left = this.expected - this.received
    if (length > left || (this.last && length !== left) || (!this.last && (length === 0 || length === left))) {
      throw this.fail(`a record of ${length} bytes with ${left} left${this.last ? ' marked last' : ''}`)
    }
    this.length = length
    this.decipher = createDecipheriv('aes-256-gcm', this.key, nonceFor(this.counter))
    this.decipher.setAAD(Buffer.from(this.head))
    this.bodyLeft = length
    this.pieces = []
    this.state = length === 0 ? 'tag' : 'body'
  }

  private endRecord (): Buffer {
    const decipher = this.decipher!
    decipher.setAuthTag(this.tag)
    try {
      decipher.final()
    } catch {
      throw this.fail('a record that failed authentication (altered in flight, or the wrong key)')
    }
    const pieces = this.pieces
    this.pieces = []
    const plain = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, this.length)
    this.decipher = null
    this.received += this.length
    this.counter++
    this.headFill = 0
    this.tagFill = 0
    this.state = this.last ? 'done' : 'header'
    return plain
  }

  private fail (what: string): MeshfarmError {
    this.state = 'done'
    return new MeshfarmError('PROTOCOL', `bulk transfer: record ${this.counter}: ${what}`)
  }
}
