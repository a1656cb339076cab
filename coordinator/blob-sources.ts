/**
 * Which agents hold or are fetching which blobs, as the coordinator last heard (a pure registry of (state, now)):
 * an agent that asks for a blob's sources is recorded as one, so the next asker fetches chunks from it. Entries
 * age out; a peer that went away costs its askers one failed try, never a wrong byte (every chunk is checked).
 */

/** An asker stays a source this long after it last asked (the cache keeps what it fetched). */
export const SOURCE_TTL_MS = 60 * 60_000
/** Sources named in one answer at most. */
export const MAX_SOURCES = 16
const MAX_BLOBS = 10_000

interface Entry {
  index: number
  seen: number
}

export class BlobSources {
  private readonly blobs = new Map<string, { next: number, peers: Map<string, Entry> }>()

  /**
   * `peer` asks for `hash` at `now`: the other peers recorded for it (most recently seen first) and the asker's
   * place among everyone who ever asked for it (0 for the first), from which its starting chunk is spread.
   */
  ask (hash: string, peer: string, now: number): { others: string[], index: number } {
    let blob = this.blobs.get(hash)
    if (blob == null) {
      if (this.blobs.size >= MAX_BLOBS) this.blobs.delete(this.blobs.keys().next().value!)
      blob = { next: 0, peers: new Map() }
      this.blobs.set(hash, blob)
    }
    for (const [p, e] of blob.peers) if (e.seen + SOURCE_TTL_MS <= now) blob.peers.delete(p)
    const others = [...blob.peers.entries()].filter(([p]) => p !== peer).sort((a, b) => b[1].seen - a[1].seen).map(([p]) => p)
    const mine = blob.peers.get(peer) ?? { index: blob.next++, seen: now }
    mine.seen = now
    blob.peers.set(peer, mine)
    return { others: others.slice(0, MAX_SOURCES), index: mine.index }
  }

  /** A peer that left the mesh. */
  forget (peer: string): void {
    for (const blob of this.blobs.values()) blob.peers.delete(peer)
  }
}

/**
 * Where the asker with this index starts taking chunks from the coordinator: spread by the golden ratio, so that
 * however many ask, each takes a different part first and the coordinator sends each part about once.
 */
export function spreadStart (index: number, chunks: number): number {
  if (chunks <= 0) return 0
  const golden = 0.6180339887498949
  return Math.floor(((index * golden) % 1) * chunks) % chunks
}
