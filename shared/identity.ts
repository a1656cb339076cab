/** A persistent Ed25519 identity per state folder: the peer id is who this machine is on the mesh. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { assertPrivateFile, ensurePrivateDir, homePaths } from './home.ts'
import { MeshfarmError } from './errors.ts'

export async function loadOrCreateIdentity (home: string): Promise<PrivateKey> {
  const paths = homePaths(home)
  ensurePrivateDir(home)
  if (existsSync(paths.identity)) {
    assertPrivateFile(paths.identity)
    try {
      return privateKeyFromProtobuf(readFileSync(paths.identity))
    } catch (err) {
      throw new MeshfarmError('INSECURE_FILE', `${paths.identity} is not a valid identity key: ${(err as Error).message}`)
    }
  }
  const key = await generateKeyPair('Ed25519')
  writeFileSync(paths.identity, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  return key
}
