/**
 * A job whose input files are still on their way: the submitter stores the job first and uploads after
 * (`inputsToFollow`), so its first tasks start as soon as their own files have arrived, not after the last
 * one. This is the book of which tasks still wait and for which file: a task waits while any of its inputs, or
 * any of the job's shared files, is not yet in the coordinator's store. Pure: the core asks it and tells it
 * when a file arrives.
 */
import type { FileRef, JobHeader } from '../shared/protocol/messages.ts'
import { fieldAt, type TaskBlock } from '../shared/protocol/task-blocks.ts'

export class InputWait {
  /** Files not yet here -> the tasks waiting for them (a shared file holds every task: no list). */
  private readonly byHash = new Map<string, { name: string, tasks: number[] | 'all' }>()
  /** How many of each task's files are not yet here (absent: none). */
  private readonly missing = new Map<number, number>()
  private sharedMissing = 0

  /** The job's wait, or null when every file is already here. */
  static of (header: JobHeader, blocks: Iterable<TaskBlock>, hasBlob: (hash: string) => boolean): InputWait | null {
    const w = new InputWait()
    // Many tasks name the same file: the store is asked once per file.
    const known = new Map<string, boolean>()
    const has = (hash: string): boolean => {
      let v = known.get(hash)
      if (v == null) known.set(hash, v = hasBlob(hash))
      return v
    }
    for (const f of header.shared) {
      if (has(f.hash) || w.byHash.has(f.hash)) continue
      w.byHash.set(f.hash, { name: f.name, tasks: 'all' })
      w.sharedMissing++
    }
    for (const b of blocks) {
      for (let i = b.first; i < b.first + b.count; i++) {
        for (const f of fieldAt(b, 'inputs', i) ?? []) if (!has(f.hash)) w.add(i, f)
      }
    }
    return w.byHash.size > 0 ? w : null
  }

  private add (index: number, f: FileRef): void {
    const entry = this.byHash.get(f.hash)
    if (entry?.tasks === 'all') return
    if (entry == null) this.byHash.set(f.hash, { name: f.name, tasks: [index] })
    else if (entry.tasks.at(-1) !== index) entry.tasks.push(index)
    else return
    this.missing.set(index, (this.missing.get(index) ?? 0) + 1)
  }

  /** Whether the task must wait for a file. */
  waits (index: number): boolean {
    return this.sharedMissing > 0 || this.missing.has(index)
  }

  /** The name of a file the task waits for (for `why`), or null. */
  waitingFor (index: number): string | null {
    for (const [, e] of this.byHash) if (e.tasks === 'all' || e.tasks.includes(index)) return e.name
    return null
  }

  /** A file arrived; returns how many tasks stopped waiting because of it. */
  arrived (hash: string): number {
    const entry = this.byHash.get(hash)
    if (entry == null) return 0
    this.byHash.delete(hash)
    if (entry.tasks === 'all') {
      this.sharedMissing--
      return this.sharedMissing === 0 ? 1 : 0
    }
    let freed = 0
    for (const i of entry.tasks) {
      const left = (this.missing.get(i) ?? 1) - 1
      if (left > 0) this.missing.set(i, left)
      else { this.missing.delete(i); freed++ }
    }
    return freed
  }

  /** Every file is here. */
  get done (): boolean { return this.byHash.size === 0 }

  /** Files still awaited (for a summary). */
  get filesAwaited (): number { return this.byHash.size }
}
