/**
 * Input devices (/dev/input/event*), opt-in and only for an agent running as root: any event means someone is
 * at the machine now. They see every local keyboard and mouse, whatever the desktop, but not remote sessions.
 * The devices are opened non-blocking and drained once a second, so no reader thread ever waits on one and
 * nothing is grabbed: the desktop still gets every event.
 */
import { open, readdir, type FileHandle } from 'node:fs/promises'
import { constants } from 'node:fs'
import { join } from 'node:path'
import type { PresenceSource, Probe, ReadContext, Reading } from '../types.ts'
import { formatDuration } from '../format.ts'

const DRAIN_BYTES = 64 * 1024

export interface InputSourceOptions {
  /** default /dev/input; a test may point this at a folder of FIFOs. */
  dir?: string
  pollMs?: number
  /** Injected for tests; default: whether this process runs as root. */
  isRoot?: boolean
  now?: () => number
}

export class InputSource implements PresenceSource {
  readonly name = 'input'
  private readonly dir: string
  private readonly pollMs: number
  private readonly isRoot: boolean
  private readonly clock: () => number
  private readonly handles = new Map<string, FileHandle>()
  private readonly buf = Buffer.alloc(DRAIN_BYTES)
  private timer: NodeJS.Timeout | null = null
  private startedAt = 0
  private lastEventAt: number | null = null
  private draining = false

  constructor (opts: InputSourceOptions = {}) {
    this.dir = opts.dir ?? '/dev/input'
    this.pollMs = opts.pollMs ?? 1000
    this.isRoot = opts.isRoot ?? process.getuid?.() === 0
    this.clock = opts.now ?? Date.now
  }

  private async devices (): Promise<string[]> {
    return (await readdir(this.dir)).filter(n => /^event\d+$/.test(n)).sort()
  }

  async probe (): Promise<Probe> {
    if (!this.isRoot) return { available: false, why: 'not root' }
    let names: string[]
    try { names = await this.devices() } catch { return { available: false, why: `no ${this.dir}` } }
    if (names.length === 0) return { available: false, why: `no event devices in ${this.dir}` }
    return { available: true, why: `${names.length} device${names.length === 1 ? '' : 's'}` }
  }

  /** Opens the devices and starts draining them. */
  async start (): Promise<void> {
    if (!this.isRoot || this.timer != null) return
    this.startedAt = this.clock()
    await this.reopen()
    this.timer = setInterval(() => { void this.drain() }, this.pollMs)
    this.timer.unref()
  }

  /** Devices come and go (a USB keyboard plugged in): opened on each pass that finds a new one. */
  private async reopen (): Promise<void> {
    for (const n of await this.devices().catch(() => [] as string[])) {
      if (this.handles.has(n)) continue
      try { this.handles.set(n, await open(join(this.dir, n), constants.O_RDONLY | constants.O_NONBLOCK)) } catch {}
    }
  }

  /** Reads whatever is pending from each device; any bytes are input. Exported for tests: one drain, awaited. */
  async drain (): Promise<void> {
    if (this.draining) return
    this.draining = true
    try {
      await this.reopen()
      for (const [n, fh] of this.handles) {
        try {
          const { bytesRead } = await fh.read(this.buf, 0, DRAIN_BYTES, null)
          if (bytesRead > 0) this.lastEventAt = this.clock()
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue
          this.handles.delete(n) // unplugged (ENODEV): closed, reopened if it comes back
          await fh.close().catch(() => {})
        }
      }
    } finally {
      this.draining = false
    }
  }

  async read (ctx: ReadContext): Promise<Reading> {
    if (this.timer == null) return { source: this.name, detail: 'input devices: off' }
    // Never a seen event: idle at least since we started watching (a lower bound, which is all the policy needs).
    const since = this.lastEventAt ?? this.startedAt
    const idleMs = Math.max(0, ctx.now - since)
    const how = this.lastEventAt == null ? 'input devices, nothing since start' : 'input devices'
    return {
      source: this.name,
      signals: [{ key: 'input', label: 'keyboard and mouse', idleMs, how, coversLocal: true, kind: 'graphical' }],
      detail: `input devices: ${this.handles.size} open, last event ${this.lastEventAt == null ? 'none yet' : `${formatDuration(idleMs)} ago`}`
    }
  }

  async close (): Promise<void> {
    if (this.timer != null) clearInterval(this.timer)
    this.timer = null
    for (const fh of this.handles.values()) await fh.close().catch(() => {})
    this.handles.clear()
  }
}
