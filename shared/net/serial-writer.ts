/**
 * Sends messages on a channel one after another from synchronous code: handlers call send() and move on,
 * while the writer waits for the stream to drain between frames. Messages queued while the stream is busy are
 * batched into one write.
 */
import type { Channel } from '../protocol/codec.ts'
import { encodeMessage } from '../protocol/codec.ts'

export class SerialWriter<Out extends object> {
  private readonly ch: Channel<any, Out>
  private queue: Uint8Array[] = []
  private queuedBytes = 0
  private pumping = false
  private closed = false
  private readonly maxQueuedBytes: number

  /** A peer that does not read gets at most `maxQueuedBytes` queued for it; then its stream is closed. */
  constructor (ch: Channel<any, Out>, maxQueuedBytes = 64 * 1024 * 1024) {
    this.ch = ch
    this.maxQueuedBytes = maxQueuedBytes
  }

  send (msg: Out): void {
    this.sendFrame(encodeMessage(msg))
  }

  /** Sends a frame already encoded (by encodeMessage), e.g. one whose size the caller checked. */
  sendFrame (frame: Uint8Array): void {
    if (this.closed) return
    this.queuedBytes += frame.byteLength
    if (this.queuedBytes > this.maxQueuedBytes) {
      this.closed = true
      this.queue = []
      this.ch.abort(new Error(`the peer is not reading: more than ${this.maxQueuedBytes} bytes queued for it`))
      return
    }
    this.queue.push(frame)
    if (this.pumping) return
    this.pumping = true
    // Nothing leaves before the caller's synchronous work is over: the coordinator sends acks and assignments
    // from inside a database transaction, and they must not reach an agent before that transaction commits.
    queueMicrotask(() => { void this.pump() })
  }

  private async pump (): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.closed) {
        const frames = this.queue
        this.queue = []
        this.queuedBytes -= frames.reduce((n, f) => n + f.byteLength, 0)
        await this.ch.writeRaw(frames.length === 1 ? frames[0] : Buffer.concat(frames))
      }
    } catch (err) {
      this.closed = true
      this.ch.abort(err as Error)
    } finally {
      this.pumping = false
    }
  }

  close (): void {
    this.closed = true
    this.ch.abort(new Error('session replaced or closed'))
  }
}
