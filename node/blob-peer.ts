/**
 * An agent as a peer for shared inputs: it serves the blobs in its cache, and the chunks of downloads in progress,
 * to the mesh's members (PROTOCOL_BLOB: get of a range, have), large ranges over its own bulk listener; and it
 * fetches a large blob in chunks from whichever peers hold it when the coordinator hands out a manifest
 * (shared/net/spread-fetch.ts), or whole from the coordinator otherwise.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { stat } from 'node:fs/promises'
import type { BlobStore } from '../shared/files/blob-store.ts'
import { comingBitmap, doneBitmap } from '../shared/files/chunk-plan.ts'
import { askBlob, downloadBlob } from '../shared/net/blob-protocol.ts'
import { bulkHosts, serveBlobStream, type Located } from '../shared/net/blob-serve.ts'
import { bulkEngine, type BulkEngine } from '../shared/net/bulk/engine.ts'
import { ipOf } from '../shared/net/addresses.ts'
import type { MeshNode } from '../shared/net/mesh.ts'
import { fetchSpread, type Download } from '../shared/net/spread-fetch.ts'
import { MeshfarmError, errorMessage } from '../shared/util/errors.ts'

export interface BlobPeerOptions {
  node: MeshNode
  cache: BlobStore
  /** Is this peer a member of the mesh now (the agent's gate)? */
  admits: (peer: string) => boolean
  listen: readonly string[]
  log: (line: string) => void
}

export class BlobPeer {
  private readonly opts: BlobPeerOptions
  private readonly downloads = new Map<string, Download>()
  private bulk: BulkEngine | null = null

  constructor (opts: BlobPeerOptions) {
    this.opts = opts
  }

  /** Starts the bulk listener (without one, peers get chunks over libp2p streams). */
  async start (): Promise<void> {
    const engine = bulkEngine()
    engine.setLog(this.opts.log)
    try {
      const port = await engine.listen(bulkHosts(this.opts.listen, this.opts.node))
      this.opts.log(`agent: bulk transfers on port ${port}`)
      this.bulk = engine
    } catch (err) {
      this.opts.log(`agent: no bulk listener (${errorMessage(err)}); peers fetch chunks over libp2p streams`)
    }
  }

  async close (): Promise<void> {
    await this.bulk?.close().catch(() => {})
  }

  private locate (hash: string): Located | null {
    const cached = this.opts.cache.locate(hash)
    if (cached != null) return cached
    const d = this.downloads.get(hash)
    if (d == null) return null
    // Only whole chunks that were verified and written may be served.
    return {
      path: d.path,
      size: d.size,
      holds: (offset, length) => {
        const first = Math.floor(offset / d.manifest.chunkBytes)
        const last = Math.floor((offset + Math.max(1, length) - 1) / d.manifest.chunkBytes)
        for (let i = first; i <= last; i++) if (d.plan.done[i] !== 1) return false
        return true
      }
    }
  }

  readonly handler = (stream: Stream, connection: Connection): void => {
    void serveBlobStream(stream, { id: connection.remotePeer.toString(), ip: ipOf(connection.remoteAddr) }, {
      locate: hash => this.locate(hash),
      bulk: this.bulk,
      authorize: (peer, op) => {
        if (!this.opts.admits(peer)) throw new MeshfarmError('FORBIDDEN', `peer ${peer.slice(-8)} is not a member of this mesh`)
        if (op !== 'get' && op !== 'have') throw new MeshfarmError('FORBIDDEN', `an agent serves chunks to peers; blob.${op} goes to the coordinator`)
      },
      have: hash => {
        const cached = this.opts.cache.locate(hash)
        if (cached != null) return { t: 'blob.have.reply', size: cached.size, complete: true, chunks: new Uint8Array(0) }
        const d = this.downloads.get(hash)
        if (d == null) throw new MeshfarmError('NOT_FOUND', `no blob ${hash.slice(0, 12)} here`)
        return { t: 'blob.have.reply', size: d.size, complete: false, chunks: doneBitmap(d.plan), coming: comingBitmap(d.plan) }
      }
    })
  }

  /**
   * Brings a blob from the mesh into `tmp`: in chunks from peers when the coordinator spreads it, else whole from
   * the coordinator (resuming what `tmp` already holds). The caller adopts `tmp` into the cache.
   */
  async fetch (coordinator: PeerId, hash: string, tmp: string, signal?: AbortSignal): Promise<void> {
    const { node, log } = this.opts
    const sources = await askBlob(node, coordinator, { t: 'blob.sources', hash }, 'blob.sources.reply', signal).catch(err => {
      // A coordinator that keeps no sources (or a refusal of this one request): the whole blob from it.
      log(`agent: no sources for ${hash.slice(0, 12)} (${errorMessage(err)}); fetching it from the coordinator`)
      return null
    })
    if (sources?.manifest != null) {
      const r = await fetchSpread({ node, coordinator, log, downloads: this.downloads }, hash, sources, tmp, signal)
      log(`agent: blob ${hash.slice(0, 12)}: ${r.fromPeers} bytes from peers, ${r.fromCoordinator} from the coordinator`)
      return
    }
    await downloadBlob(node, coordinator, hash, tmp, (await stat(tmp).catch(() => null))?.size ?? 0, undefined, { log, signal })
  }
}
