/**
 * Several task launchers behind the interface of one. The Node launcher's spawn blocks its event loop until the
 * child has exec'd, so one tops out near 600 spawns a second however many cores there are; an agent with many
 * slots spreads its tasks over a few launchers, each task to the least busy one. (The native launcher spawns
 * several times faster; the pool costs it nothing.)
 */
import { Launcher, NODE_LAUNCHER, type LauncherFeature, type SpawnRequest, type SpawnResult } from './client.ts'

export class LauncherPool {
  private readonly launchers: Launcher[]
  /** Our task id -> the launcher running it and its id there. */
  private readonly owners = new Map<number, { launcher: Launcher, id: number }>()
  private nextId = 1
  readonly command: readonly string[]

  constructor (size: number, command: readonly string[] = NODE_LAUNCHER) {
    this.command = command
    this.launchers = Array.from({ length: Math.max(1, size) }, () => Launcher.start(command))
  }

  /** Launchers an agent with `slots` slots on `cores` cores uses: one per two slots, at most one per core, at most 4. */
  static sizeFor (slots: number, cores: number): number {
    return Math.max(1, Math.min(4, Math.ceil(slots / 2), cores))
  }

  /** What every launcher of the pool can do (they are all the same program). */
  async features (): Promise<ReadonlySet<LauncherFeature>> {
    return await this.launchers[0].features
  }

  spawn (req: SpawnRequest, onStart?: (pid: number) => void): { id: number, done: Promise<SpawnResult> } {
    const launcher = this.launchers.reduce((best, l) => l.running < best.running ? l : best)
    const inner = launcher.spawn(req, onStart)
    const id = this.nextId++
    this.owners.set(id, { launcher, id: inner.id })
    return { id, done: inner.done.finally(() => this.owners.delete(id)) }
  }

  signal (id: number, signal: NodeJS.Signals = 'SIGTERM'): void {
    const owner = this.owners.get(id)
    owner?.launcher.signal(owner.id, signal)
  }

  async close (): Promise<void> {
    await Promise.all(this.launchers.map(async l => { await l.close() }))
  }
}
