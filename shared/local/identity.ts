/** A persistent Ed25519 identity per state folder: the peer id is who this machine is on the mesh. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { join } from 'node:path'
import { assertPrivateFile, ensurePrivateDir, homePaths } from './home.ts'
import { MeshfarmError } from '../util/errors.ts'

export async function loadOrCreateIdentity (home: string, file?: string): Promise<PrivateKey> {
  const path = file != null ? join(home, file) : homePaths(home).identity
  ensurePrivateDir(home)
  if (existsSync(path)) {
    assertPrivateFile(path)
    try {
      return privateKeyFromProtobuf(readFileSync(path))
    } catch (err) {
      throw new MeshfarmError('INSECURE_FILE', `${path} is not a valid identity key: ${(err as Error).message}`)
    }
  }
  const key = await generateKeyPair('Ed25519')
  writeFileSync(path, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  return key
}

/** Writes a new identity key (refuses to overwrite one). */
export function writeIdentity (home: string, protobuf: Uint8Array): void {
  ensurePrivateDir(home)
  writeFileSync(homePaths(home).identity, protobuf, { mode: 0o600, flag: 'wx' })
}

/**
 * On the coordinator's own machine, its state folder serves the CLI and an agent too; they cannot use the
 * coordinator's identity (a peer cannot dial itself), so each role has its own key in the same private folder,
 * and the coordinator puts them on its access list when it starts.
 */
export const LOCAL_ROLE_KEYS = { operator: 'operator.key', agent: 'agent.key' } as const

/** The identity a client or an agent uses in `home`: its own, or its role's key if `home` is the coordinator's. */
export async function identityFor (home: string, coordinator: string | undefined, role: keyof typeof LOCAL_ROLE_KEYS): Promise<PrivateKey> {
  const own = await loadOrCreateIdentity(home)
  if (coordinator == null || peerIdFromPrivateKey(own).toString() !== coordinator) return own
  return await loadOrCreateIdentity(home, LOCAL_ROLE_KEYS[role])
}
