/**
 * Who may connect to an agent: the coordinator (pinned in mesh.json, or the one found) and the mesh's members
 * as the coordinator last listed them (coord.members). The list is kept in the agent's state folder, so a
 * restarted agent gates its connections before it reaches the coordinator again. Everyone else is refused at
 * the encrypted-connection gate, before any protocol.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs'

export class MemberGate {
  private readonly file: string
  private coordinator: string | null
  private members = new Set<string>()

  constructor (file: string, pinnedCoordinator: string | undefined) {
    this.file = file
    this.coordinator = pinnedCoordinator ?? null
    try {
      const raw = JSON.parse(readFileSync(file, 'utf8')) as { peerIds?: unknown }
      if (Array.isArray(raw.peerIds)) this.members = new Set(raw.peerIds.filter((p): p is string => typeof p === 'string'))
    } catch { /* none kept yet: only the coordinator */ }
  }

  /** Without a pinned coordinator, the one discovery confirmed. */
  setCoordinator (peerId: string): void {
    this.coordinator ??= peerId
  }

  /** The coordinator's list; kept on disk (0600) for the next start. */
  setMembers (peerIds: string[]): void {
    const valid = peerIds.filter(p => typeof p === 'string' && p.length > 0 && p.length < 200).slice(0, 100_000)
    this.members = new Set(valid)
    const tmp = `${this.file}.tmp`
    writeFileSync(tmp, JSON.stringify({ peerIds: valid }) + '\n', { mode: 0o600 })
    renameSync(tmp, this.file)
  }

  allows (peerId: string): boolean {
    return peerId === this.coordinator || this.members.has(peerId)
  }

  get size (): number {
    return this.members.size
  }
}
