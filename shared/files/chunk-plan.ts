/**
 * Which chunk of a spread blob to fetch from which source next: a pure function of (plan, sources, now). Peers
 * that hold a missing chunk are asked first; the coordinator sends only chunks no usable peer holds, starting
 * where the coordinator told this asker to start (so that askers take different parts from it first and its
 * upload stays about one copy). A source that fails rests a while; one that sent a chunk that did not match the
 * manifest is never asked again.
 */

/** The coordinator's id among the sources. */
export const COORDINATOR = 'coordinator'

export interface ChunkSource {
  id: string
  /** Chunks it can serve now: one bit per chunk (bit i of byte i >> 3), or all of them. */
  have: Uint8Array | 'all'
  /** Chunks it is fetching from the coordinator now (soon to be had: nobody else need take them from there). */
  coming?: Uint8Array
  /** Fetches from it in flight. */
  busy: number
  /** Failures in a row. */
  failures: number
  /** Not asked before this time (Infinity: never again). */
  restUntil: number
}

export interface ChunkPlan {
  count: number
  /** 1 for each chunk written and verified. */
  done: Uint8Array
  /** Chunks being fetched, and from whom. */
  inflight: Map<number, string>
  /** Where this asker starts taking chunks from the coordinator. */
  start: number
}

export interface PlanLimits {
  /** Fetches in flight from one peer, and from the coordinator. */
  perPeer: number
  perCoordinator: number
  /** Fetches in flight at most, all sources together. */
  total: number
  /**
   * With no peers to take chunks from: consecutive chunks in one fetch from the coordinator (one request, in
   * order, one fetch at a time). With peers, single chunks, so that chunks marked as coming are few and soon had.
   */
  coordinatorRun: number
}

export const DEFAULT_LIMITS: PlanLimits = { perPeer: 2, perCoordinator: 2, total: 6, coordinatorRun: 8 }
/** How long a failed source rests, per failure in a row (at most 8 of them). */
export const REST_MS = 500

export function hasChunk (have: Uint8Array | 'all', i: number): boolean {
  return have === 'all' || ((have[i >> 3] ?? 0) & (1 << (i & 7))) !== 0
}

/** The bitmap of chunks done, as blob.have.reply carries it. */
export function doneBitmap (plan: ChunkPlan): Uint8Array {
  const bits = new Uint8Array(Math.ceil(plan.count / 8))
  for (let i = 0; i < plan.count; i++) if (plan.done[i] === 1) bits[i >> 3] |= 1 << (i & 7)
  return bits
}

/** The bitmap of chunks on their way from the coordinator. */
export function comingBitmap (plan: ChunkPlan): Uint8Array {
  const bits = new Uint8Array(Math.ceil(plan.count / 8))
  for (const [i, from] of plan.inflight) if (from === COORDINATOR) bits[i >> 3] |= 1 << (i & 7)
  return bits
}

export function newPlan (count: number, start: number): ChunkPlan {
  return { count, done: new Uint8Array(count), inflight: new Map(), start: count > 0 ? ((start % count) + count) % count : 0 }
}

export function isComplete (plan: ChunkPlan): boolean {
  for (let i = 0; i < plan.count; i++) if (plan.done[i] !== 1) return false
  return true
}

/** The next fetches to start: each a chunk neither done nor in flight, from a source with room that holds it. */
/** A fetch to start: `count` consecutive chunks from `chunk` on (more than one from the coordinator only). */
export interface Pick {
  chunk: number
  count: number
  source: string
}

export function nextFetches (plan: ChunkPlan, sources: readonly ChunkSource[], now: number, limits: PlanLimits = DEFAULT_LIMITS): Pick[] {
  const picks: Pick[] = []
  const taken = new Set<number>()
  // Fetches in flight (a run from the coordinator is one fetch of several chunks).
  let inflight = sources.reduce((n, s) => n + s.busy, 0)
  const free = (i: number): boolean => plan.done[i] !== 1 && !plan.inflight.has(i) && !taken.has(i)
  const ready = sources.filter(s => s.restUntil <= now)
  const peers = ready.filter(s => s.id !== COORDINATOR)
  const coordinator = ready.find(s => s.id === COORDINATOR)
  // Peers first, each from its own place in the blob so that two peers are not asked for the same chunks.
  for (let round = 0; round < limits.perPeer; round++) {
    for (const [n, p] of peers.entries()) {
      if (inflight >= limits.total) return picks
      if (p.busy + picks.filter(x => x.source === p.id).length >= limits.perPeer) continue
      const from = (plan.start + Math.floor((n + 1) * plan.count / (peers.length + 1))) % Math.max(1, plan.count)
      const chunk = firstFrom(plan.count, from, i => free(i) && hasChunk(p.have, i))
      if (chunk == null) continue
      picks.push({ chunk, count: 1, source: p.id })
      taken.add(chunk)
      inflight++
    }
  }
  if (coordinator == null) return picks
  // The coordinator: chunks no usable peer holds or is fetching from it, from this asker's start. When every
  // missing chunk is on its way to some peer, this asker waits for them rather than take a second copy.
  const onPeer = (i: number): boolean => peers.some(p => hasChunk(p.have, i) || (p.coming != null && hasChunk(p.coming, i)))
  const alone = peers.length === 0
  const concurrency = alone ? 1 : limits.perCoordinator
  const run = alone ? limits.coordinatorRun : 1
  while (inflight < limits.total && coordinator.busy + picks.filter(x => x.source === COORDINATOR).length < concurrency) {
    const ok = (i: number): boolean => free(i) && !onPeer(i)
    const chunk = firstFrom(plan.count, plan.start, ok)
    if (chunk == null) break
    let count = 1
    while (count < run && chunk + count < plan.count && ok(chunk + count)) count++
    picks.push({ chunk, count, source: COORDINATOR })
    for (let k = 0; k < count; k++) taken.add(chunk + k)
    inflight++
  }
  return picks
}

function firstFrom (count: number, from: number, ok: (i: number) => boolean): number | null {
  for (let k = 0; k < count; k++) {
    const i = (from + k) % count
    if (ok(i)) return i
  }
  return null
}

/** A chunk arrived, was verified and written: it is served to others from now on. */
export function chunkDone (plan: ChunkPlan, source: ChunkSource, chunk: number): void {
  plan.done[chunk] = 1
  if (plan.inflight.get(chunk) === source.id) plan.inflight.delete(chunk)
  source.failures = 0
}

/** A fetch ended (done or not): the chunks it did not deliver go back to the plan. */
export function fetchEnded (plan: ChunkPlan, source: ChunkSource, chunk: number, count = 1): void {
  for (let k = 0; k < count; k++) if (plan.inflight.get(chunk + k) === source.id) plan.inflight.delete(chunk + k)
  source.busy = Math.max(0, source.busy - 1)
}

/** A fetch failed: the source rests; a chunk that did not match the manifest bans the source for good. */
export function sourceFailed (source: ChunkSource, now: number, tampered: boolean): void {
  source.failures++
  source.restUntil = tampered ? Infinity : now + REST_MS * Math.min(8, source.failures)
}

/** A fetch of `count` chunks from `chunk` on starts. */
export function fetchStarted (plan: ChunkPlan, source: ChunkSource, chunk: number, count = 1): void {
  for (let k = 0; k < count; k++) plan.inflight.set(chunk + k, source.id)
  source.busy++
}
