/**
 * The agent's slots, cores and memory in use: whether an assignment fits now, and which slot number it takes
 * (the lowest free one, so slot users and per-slot folders are reused). Pure bookkeeping for the reactor.
 */
import type { AgentResources, Assignment } from '../shared/protocol/messages.ts'

export class SlotBook {
  private readonly taken = new Set<number>()
  private usedCores = 0
  private usedMemoryMb = 0

  get busy (): number { return this.taken.size }

  /** One task always fits an idle agent (a task asking more than the machine has still runs, alone). */
  fits (a: Assignment, offer: AgentResources): boolean {
    const busy = this.taken.size
    if (busy >= offer.slots) return false
    if (busy > 0 && this.usedCores + a.cores > offer.cores) return false
    if (busy > 0 && offer.memoryMb > 0 && this.usedMemoryMb + a.task.memoryMb > offer.memoryMb) return false
    return true
  }

  take (a: Assignment): number {
    let slot = 0
    while (this.taken.has(slot)) slot++
    this.taken.add(slot)
    this.usedCores += a.cores
    this.usedMemoryMb += a.task.memoryMb
    return slot
  }

  give (slot: number, a: Assignment): void {
    if (!this.taken.delete(slot)) return
    this.usedCores -= a.cores
    this.usedMemoryMb -= a.task.memoryMb
  }
}
