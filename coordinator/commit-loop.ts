/**
 * The commit loop: every change to the coordinator's state runs here, as a synchronous handler inside one
 * database transaction per batch (group commit: one fsync for everything that arrived in one turn of the event
 * loop, at most one commit every few milliseconds under load). What a handler sends to agents and the events it
 * emits are held until the batch commits; a handler's own result reaches its caller only then, so an ack, an
 * assignment or a "submitted" reply always describes something already on disk.
 *
 * A handler that throws is undone: its savepoint rolls back, its messages and events are dropped, and if it was
 * not a plain refusal (a MeshfarmError thrown before it changed anything) the core's memory is rebuilt from the
 * store. A failed COMMIT means the disk or the database failed: the loop stops for good and reports it.
 */
import type { CoordMessage } from '../shared/protocol/messages.ts'
import type { MeshEvent } from '../shared/protocol/events.ts'
import { MeshfarmError, errorMessage, isMeshfarmError } from '../shared/util/errors.ts'
import type { Store } from './store.ts'
import type { CoordinatorComm } from './core.ts'

/** The shortest time between two commits; under load, messages gather into larger batches meanwhile. */
const COMMIT_INTERVAL_MS = 4

interface Effects {
  sends: Array<[agentId: string, msg: CoordMessage]>
  events: MeshEvent[]
}

interface Work {
  handler: () => unknown
  resolve: (v: unknown) => void
  reject: (err: unknown) => void
}

export interface CommitLoopDeps {
  store: Store
  /** Delivers messages to agents (after commit). */
  deliver: (agentId: string, msg: CoordMessage) => void
  /** Publishes committed events to watchers. */
  publish: (events: MeshEvent[]) => void
  /** Runs once per batch, after the handlers, inside the same transaction (the scheduling pass). */
  afterHandlers: (now: number) => void
  /** Rebuilds memory from the store after a handler failed half-way. */
  resync: (now: number) => void
  /** The database could not commit: nothing more can be accepted. */
  onFatal: (err: MeshfarmError) => void
  log: (line: string) => void
  now?: () => number
}

export class CommitLoop {
  private readonly deps: CommitLoopDeps
  private queue: Work[] = []
  private scheduled = false
  private lastCommit = 0
  private current: Effects | null = null
  private failed: MeshfarmError | null = null
  private timer: NodeJS.Timeout | null = null

  /** The comm the core talks through: effects are buffered per handler until the batch commits. */
  readonly comm: CoordinatorComm = {
    send: (agentId, msg) => { this.effects().sends.push([agentId, msg]) },
    event: (e) => { this.effects().events.push(e) }
  }

  constructor (deps: CommitLoopDeps) {
    this.deps = deps
  }

  private effects (): Effects {
    if (this.current == null) throw new MeshfarmError('INTERNAL', 'the coordinator core was called outside the commit loop')
    return this.current
  }

  /** Runs `handler` in the next batch; resolves with its result once the batch has committed. */
  async run<T> (handler: () => T): Promise<T> {
    if (this.failed != null) throw this.failed
    return await new Promise<T>((resolve, reject) => {
      this.queue.push({ handler, resolve: resolve as (v: unknown) => void, reject })
      this.schedule()
    })
  }

  /** Runs `handler` now, in a transaction of its own (start-up, before anything else runs). */
  runNow<T> (handler: () => T): T {
    const fx: Effects = { sends: [], events: [] }
    this.current = fx
    try {
      const value = this.deps.store.transaction(() => {
        const v = handler()
        this.deps.store.writeEvents(fx.events)
        return v
      })
      for (const [agentId, msg] of fx.sends) this.deps.deliver(agentId, msg)
      if (fx.events.length > 0) this.deps.publish(fx.events)
      return value
    } finally {
      this.current = null
    }
  }

  /** Asks for a batch even with nothing queued (a scheduling pass: new capacity, a timer). */
  kick (): void {
    if (this.failed == null) this.schedule()
  }

  private schedule (): void {
    if (this.scheduled) return
    this.scheduled = true
    const wait = this.lastCommit + COMMIT_INTERVAL_MS - performance.now()
    if (wait > 0) this.timer = setTimeout(() => { this.runBatch() }, wait)
    else setImmediate(() => { this.runBatch() })
  }

  /** Stops taking work; queued work is refused. */
  close (why: MeshfarmError): void {
    this.failed ??= why
    if (this.timer != null) clearTimeout(this.timer)
    for (const w of this.queue.splice(0)) w.reject(this.failed)
  }

  private runBatch (): void {
    this.scheduled = false
    this.timer = null
    if (this.failed != null) return
    this.lastCommit = performance.now()
    const now = this.deps.now?.() ?? Date.now()
    const work = this.queue.splice(0)
    const batch: Effects = { sends: [], events: [] }
    const outcomes: Array<{ ok: boolean, value: unknown }> = []
    const { store } = this.deps
    try {
      store.transaction(() => {
        let resync = false
        for (const w of work) {
          const fx: Effects = { sends: [], events: [] }
          this.current = fx
          try {
            outcomes.push({ ok: true, value: store.transaction(w.handler) })
            batch.sends.push(...fx.sends)
            batch.events.push(...fx.events)
          } catch (err) {
            outcomes.push({ ok: false, value: err })
            // A refusal is thrown before anything changed; anything else may have left memory half-changed.
            if (!isMeshfarmError(err) || err.code === 'INTERNAL') {
              this.deps.log(`coordinator: a handler failed and was undone: ${errorMessage(err)}`)
              resync = true
            }
          }
        }
        const fx: Effects = { sends: [], events: [] }
        this.current = fx
        try {
          store.transaction(() => {
            if (resync) this.deps.resync(now)
            this.deps.afterHandlers(now)
          })
          batch.sends.push(...fx.sends)
          batch.events.push(...fx.events)
        } catch (err) {
          this.deps.log(`coordinator: the scheduling pass failed and was undone: ${errorMessage(err)}`)
          this.deps.resync(now)
        }
        // The batch's events, several rows per statement, in the same transaction.
        store.writeEvents(batch.events)
      })
    } catch (err) {
      this.current = null
      // Memory now holds changes the database does not: carrying on would let the two drift apart. Stop; agents
      // keep their unconfirmed results, and a restart reconciles from disk.
      const fatal = new MeshfarmError('DISK', `the coordinator database could not commit (${errorMessage(err)}); stopping so that nothing is lost: free disk space and start it again`)
      this.close(fatal)
      for (const w of work) w.reject(fatal)
      this.deps.onFatal(fatal)
      return
    }
    this.current = null
    for (const [agentId, msg] of batch.sends) this.deps.deliver(agentId, msg)
    if (batch.events.length > 0) this.deps.publish(batch.events)
    work.forEach((w, i) => { if (outcomes[i].ok) w.resolve(outcomes[i].value); else w.reject(outcomes[i].value) })
    if (this.queue.length > 0) this.schedule()
  }
}
