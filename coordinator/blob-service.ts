/**
 * The coordinator's blob store served to the mesh (PROTOCOL_BLOB): any member may read (agents fetch inputs,
 * clients fetch results); agents and submitters may write (outputs, inputs). Everything is hash-checked on
 * arrival (blob-store.ts).
 */
import type { Connection, Stream } from '@libp2p/interface'
import { serveBlobStream } from '../shared/net/blob-protocol.ts'
import type { BlobStore } from '../shared/files/blob-store.ts'
import { MeshfarmError } from '../shared/util/errors.ts'
import type { AccessList } from './access.ts'

export function serveBlobs (blobs: BlobStore, acl: AccessList, log: (line: string) => void, debug: boolean) {
  return (stream: Stream, connection: Connection): void => {
    void serveBlobStream(stream, connection.remotePeer.toString(), blobs, {
      authorize: (peer, op) => {
        try {
          if (acl.roles(peer).length === 0) throw new MeshfarmError('FORBIDDEN', `peer ${peer.slice(-8)} is not on this mesh's access list`)
          if (op === 'put' && !acl.has(peer, 'agent')) acl.require(peer, 'submitter', 'uploading files')
        } catch (err) {
          log(`coordinator: refused a blob ${op} from ${peer.slice(-8)}: ${(err as Error).message}`)
          throw err
        }
      },
      onServed: (peer, hash, bytes) => { if (debug) log(`blob-sent ${hash} ${peer} ${bytes}`) }
    })
  }
}
