/**
 * Message framing over libp2p 3 streams: a 4-byte big-endian length, then a msgpack body whose `t` field names
 * the message. The size limit is checked from the header before the body is buffered, so a hostile peer cannot
 * make us hold more than one frame. Raw byte sections (blob bodies) can follow a frame on the same stream.
 */
import { Packr } from 'msgpackr'
import { Uint8ArrayList } from 'uint8arraylist'
import type { Stream } from '@libp2p/interface'
import { MAX_FRAME_BYTES } from './constants.ts'
import { MeshfarmError } from '../util/errors.ts'
import { validateMessage, type MessageSet } from './schema.ts'

/**
 * Records: objects of one shape (a thousand assignments, a batch of results) carry their keys once per frame, not
 * once per object; a quarter of the bytes, and several times faster to decode. Each frame defines its own
 * records, so any msgpack reader (an older peer's too) reads it, and a frame without them still reads here.
 */
const packr = new Packr({ useRecords: true, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' })

export function encodeMessage (msg: object): Uint8Array {
  const body = packr.pack(msg)
  const frame = new Uint8Array(4 + body.byteLength)
  new DataView(frame.buffer).setUint32(0, body.byteLength)
  frame.set(body, 4)
  return frame
}

/** Decodes one frame body; throws PROTOCOL for anything that is not a known, well-formed message. */
export function decodeMessage<T extends { t: string }> (body: Uint8Array, allowed: MessageSet): T {
  let msg: unknown
  try {
    msg = packr.unpack(body)
  } catch (err) {
    throw new MeshfarmError('PROTOCOL', `malformed frame: ${(err as Error).message.split('\n')[0]}`)
  }
  return validateMessage<T>(msg, allowed)
}

export interface ChannelOptions {
  maxFrameBytes?: number
  /** Message types this end accepts, with their schemas. */
  accept: MessageSet
}

export class Channel<In extends { t: string }, Out extends object> {
  readonly stream: Stream
  private readonly chunks: AsyncIterator<Uint8Array | Uint8ArrayList>
  private readonly buffer = new Uint8ArrayList()
  private readonly maxFrame: number
  private readonly accept: MessageSet
  private ended = false

  constructor (stream: Stream, opts: ChannelOptions) {
    this.stream = stream
    this.chunks = stream[Symbol.asyncIterator]()
    this.maxFrame = opts.maxFrameBytes ?? MAX_FRAME_BYTES
    this.accept = opts.accept
  }

  /** Reads the next message; null when the peer closed cleanly between frames. */
  async read (): Promise<In | null> {
    if (!(await this.fill(4))) {
      if (this.buffer.byteLength === 0) return null
      throw new MeshfarmError('PROTOCOL', 'truncated frame header')
    }
    const length = this.buffer.getUint32(0)
    if (length > this.maxFrame) {
      const err = new MeshfarmError('PROTOCOL', `frame of ${length} bytes exceeds the limit of ${this.maxFrame}`)
      this.stream.abort(err)
      throw err
    }
    if (!(await this.fill(4 + length))) throw new MeshfarmError('PROTOCOL', `truncated frame: expected ${length} bytes`)
    const body = this.buffer.subarray(4, 4 + length)
    this.buffer.consume(4 + length)
    return decodeMessage<In>(body, this.accept)
  }

  /** Reads a message and fails if the stream ended instead. */
  async expect (): Promise<In> {
    const msg = await this.read()
    if (msg == null) throw new MeshfarmError('PROTOCOL', 'the peer closed the stream before answering')
    return msg
  }

  /** Raw bytes after a frame: whatever is buffered, else the next chunk; null at end of stream. */
  async readRaw (): Promise<Uint8Array | null> {
    if (this.buffer.byteLength > 0) {
      const out = this.buffer.subarray()
      this.buffer.consume(out.byteLength)
      return out
    }
    if (this.ended) return null
    const next = await this.chunks.next()
    if (next.done === true) {
      this.ended = true
      return null
    }
    return next.value instanceof Uint8Array ? next.value : next.value.subarray()
  }

  async write (msg: Out): Promise<void> {
    await this.writeRaw(encodeMessage(msg))
  }

  /** Writes bytes, waiting for the stream to drain when its buffer is full (backpressure). */
  async writeRaw (data: Uint8Array): Promise<void> {
    if (!this.stream.send(data)) await this.stream.onDrain()
  }

  async close (): Promise<void> {
    try {
      await this.stream.close()
    } catch {
      this.stream.abort(new Error('close failed'))
    }
  }

  abort (err: Error): void {
    this.stream.abort(err)
  }

  private async fill (bytes: number): Promise<boolean> {
    while (this.buffer.byteLength < bytes) {
      if (this.ended) return false
      const next = await this.chunks.next()
      if (next.done === true) {
        this.ended = true
        return false
      }
      this.buffer.append(next.value)
      // A single chunk can never be larger than the muxer's frame, so the buffer stays bounded by maxFrame + chunk.
    }
    return true
  }
}
