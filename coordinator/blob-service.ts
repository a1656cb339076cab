/**
 * The coordinator's blob store served to the mesh (PROTOCOL_BLOB): any member may read (agents fetch inputs,
 * clients fetch results); agents and submitters may write (outputs, inputs). Everything is hash-checked on
 * arrival (blob-store.ts). Large transfers go over the bulk listener (shared/net/bulk/), with tickets handed out
 * only inside this access-checked stream. Agents asking for a large blob learn which other agents hold or are
 * fetching it (blob-sources.ts) and get its chunk manifest, so a shared input spreads peer to peer.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { bulkHosts, serveBlobStream } from '../shared/net/blob-serve.ts'
import { bulkEngine } from '../shared/net/bulk/engine.ts'
import { ipOf } from '../shared/net/addresses.ts'
import type { MeshNode } from '../shared/net/mesh.ts'
import type { BlobStore } from '../shared/files/blob-store.ts'
import { chunkCount, encodeManifest, loadOrMakeManifest, SPREAD_MIN_BYTES, type Manifest } from '../shared/files/manifest.ts'
import type { BlobReply } from '../shared/protocol/messages.ts'
import { MeshfarmError, errorMessage } from '../shared/util/errors.ts'
import type { AccessList } from './access.ts'
import { BlobSources, spreadStart } from './blob-sources.ts'

export interface BlobServiceOptions {
  node: MeshNode
  blobs: BlobStore
  acl: AccessList
  log: (line: string) => void
  debug: boolean
  /** The addresses the node listens on (`/ip4/0.0.0.0/...`): the bulk listener takes the same hosts. */
  listen: readonly string[]
  /** Hand out peer sources for large blobs (false: every agent fetches from the coordinator alone). */
  spread: boolean
  /** An uploaded file is stored durably (tasks waiting for it may start). */
  onStored?: (hash: string) => void
}

export interface BlobService {
  handler: (stream: Stream, connection: Connection) => void
  /** Peers no longer on the access list lose their bulk tickets and transfers (called on every tick). */
  membersChanged: () => Promise<void>
  close: () => Promise<void>
}

export async function startBlobService (opts: BlobServiceOptions): Promise<BlobService> {
  const { node, blobs, acl, log } = opts
  const hosts = bulkHosts(opts.listen, node)
  const engine = bulkEngine()
  engine.setLog(log)
  const bulk = await engine.listen(hosts).then(port => {
    log(`coordinator: bulk transfers on port ${port}`)
    return engine
  }, err => {
    log(`coordinator: no bulk listener (${errorMessage(err)}); large files go over libp2p streams`)
    return null
  })
  const sources = new BlobSources()
  const manifests = new Map<string, Promise<Manifest>>()
  const manifestFor = async (hash: string, size: number): Promise<Manifest> => {
    let m = manifests.get(hash)
    if (m == null) {
      m = loadOrMakeManifest(blobs.path(hash), size)
      manifests.set(hash, m)
      m.catch(() => manifests.delete(hash))
      if (manifests.size > 1000) manifests.delete(manifests.keys().next().value!)
    }
    return await m
  }

  const answerSources = async (peer: string, hash: string): Promise<BlobReply> => {
    const found = blobs.locate(hash)
    if (found == null) throw new MeshfarmError('NOT_FOUND', `no blob ${hash.slice(0, 12)}`)
    // Only agents hold and serve blobs; a client fetching results is never asked by others.
    if (!opts.spread || found.size < SPREAD_MIN_BYTES || !acl.has(peer, 'agent')) return { t: 'blob.sources.reply', size: found.size, start: 0, peers: [] }
    const { others, index } = sources.ask(hash, peer, Date.now())
    const peers: Array<{ peerId: string, addrs: string[] }> = []
    for (const p of others) {
      if (!acl.has(p, 'agent')) continue
      const addrs = await node.peerStore.get(peerIdFromString(p)).then(r => r.addresses.map(a => a.multiaddr.toString()), () => [] as string[])
      if (addrs.length > 0) peers.push({ peerId: p, addrs: addrs.slice(0, 16) })
    }
    // The manifest even with no peers yet: the asker fetches in chunks and takes up peers as they come.
    const start = spreadStart(index, chunkCount(found.size))
    return { t: 'blob.sources.reply', size: found.size, start, peers, manifest: encodeManifest(await manifestFor(hash, found.size)) }
  }

  // Whoever leaves the access list loses its tickets and its bulk transfers under way.
  const membersChanged = async (): Promise<void> => {
    if (bulk == null) return
    const gone = (await bulk.peers()).filter(p => acl.roles(p).length === 0)
    if (gone.length === 0) return
    await bulk.drop(gone)
    for (const p of gone) log(`coordinator: bulk: ended the tickets and transfers of ${p.slice(-8)}, no longer on the access list`)
  }

  const handler = (stream: Stream, connection: Connection): void => {
    const peer = connection.remotePeer.toString()
    void serveBlobStream(stream, { id: peer, ip: ipOf(connection.remoteAddr) }, {
      locate: hash => blobs.locate(hash),
      store: blobs,
      bulk,
      sources: answerSources,
      have: hash => {
        const found = blobs.locate(hash)
        if (found == null) throw new MeshfarmError('NOT_FOUND', `no blob ${hash.slice(0, 12)}`)
        return { t: 'blob.have.reply', size: found.size, complete: true, chunks: new Uint8Array(0) }
      },
      authorize: (p, op) => {
        try {
          if (acl.roles(p).length === 0) throw new MeshfarmError('FORBIDDEN', `peer ${p.slice(-8)} is not on this mesh's access list`)
          if (op === 'put' && !acl.has(p, 'agent')) acl.require(p, 'submitter', 'uploading files')
        } catch (err) {
          log(`coordinator: refused a blob ${op} from ${p.slice(-8)}: ${(err as Error).message}`)
          throw err
        }
      },
      onServed: (p, hash, bytes) => { if (opts.debug) log(`blob-sent ${hash} ${p} ${bytes}`) },
      // The manifest is read from the stored blob now, off the path of the first agent that asks for it.
      onStored: (hash, size) => {
        opts.onStored?.(hash)
        if (opts.spread && size >= SPREAD_MIN_BYTES) manifestFor(hash, size).catch(() => {})
      }
    })
  }
  return {
    handler,
    membersChanged,
    close: async () => {
      await bulk?.close()
    }
  }
}
