/**
 * A job's tasks in blocks: what the tasks of a run of consecutive indexes share is said once (`base`), what
 * differs is a column (`cols`, one value per task). A sweep of a million tasks that differ only in their names
 * is then a hundred small blocks on the wire and in the coordinator's database, instead of a million objects
 * and a million rows. Pure: compaction (`toBlock`), expansion (`specAt`), and the shapes the scheduler needs.
 */
import type { TaskSpec } from './data.ts'

/** The fields of a task besides its index, each said once for the block or once per task. */
export const BLOCK_FIELDS = [
  'name', 'commands', 'env', 'inputs', 'outputs', 'timeoutMs', 'constraints', 'cores', 'gpus', 'memoryMb', 'affinity', 'params'
] as const
export type BlockField = typeof BLOCK_FIELDS[number]
/** Fields every task has; affinity and params may be absent (null in a column). */
export const REQUIRED_FIELDS: readonly BlockField[] = ['name', 'commands', 'env', 'inputs', 'outputs', 'timeoutMs', 'constraints', 'cores', 'gpus', 'memoryMb']

export type BlockBase = Partial<Omit<TaskSpec, 'index'>>
export type BlockCols = { [K in BlockField]?: Array<TaskSpec[K] | null> }

export interface TaskBlock {
  /** Index of the block's first task in the job. */
  first: number
  count: number
  base: BlockBase
  cols: BlockCols
}

/** Tasks per block on the wire and in the database. */
export const BLOCK_TASKS = 10_000

/** Same value, for what tasks carry (strings, numbers, arrays, plain objects, inline bytes). */
export function same (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (a == null || b == null || typeof a !== 'object' || typeof b !== 'object') return false
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && a.byteLength === b.byteLength && Buffer.compare(a, b) === 0
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (!same(a[i], b[i])) return false
    return true
  }
  const ka = Object.keys(a)
  if (ka.length !== Object.keys(b).length) return false
  for (const k of ka) if (!Object.hasOwn(b, k) || !same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false
  return true
}

/** Consecutive tasks (specs[k].index === first + k) as one block: a field equal in all of them goes in `base`. */
export function toBlock (specs: readonly TaskSpec[], first = specs[0]?.index ?? 0): TaskBlock {
  const base: Record<string, unknown> = {}
  const cols: Record<string, unknown[]> = {}
  for (const f of BLOCK_FIELDS) {
    const v0 = specs[0]?.[f]
    let constant = true
    for (let k = 1; k < specs.length && constant; k++) constant = same(specs[k][f], v0)
    if (constant) {
      if (v0 !== undefined) base[f] = v0
    } else {
      cols[f] = specs.map(s => s[f] ?? null)
    }
  }
  return { first, count: specs.length, base: base as BlockBase, cols: cols as BlockCols }
}

/** A job's tasks as blocks of at most `size`. */
export function toBlocks (specs: readonly TaskSpec[], size = BLOCK_TASKS): TaskBlock[] {
  const out: TaskBlock[] = []
  for (let i = 0; i < specs.length; i += size) out.push(toBlock(specs.slice(i, i + size), i))
  return out
}

/** The value of one field for the task at `index` (which lies in the block). */
export function fieldAt<K extends BlockField> (b: TaskBlock, f: K, index: number): TaskSpec[K] | undefined {
  const col = b.cols[f]
  const v = col != null ? col[index - b.first] : b.base[f]
  return (v ?? undefined) as TaskSpec[K] | undefined
}

/** The whole task at `index` (a task without a name is called task-<index>, as it was submitted). */
export function specAt (b: TaskBlock, index: number): TaskSpec {
  const spec: Record<string, unknown> = { index }
  for (const f of BLOCK_FIELDS) {
    const v = fieldAt(b, f, index)
    if (v !== undefined) spec[f] = v
  }
  if (spec.name === '') spec.name = `task-${index}`
  return spec as TaskSpec
}

/** Every task of the block (tests, and a block small enough to expand). */
export function specsOf (b: TaskBlock): TaskSpec[] {
  const out: TaskSpec[] = []
  for (let k = 0; k < b.count; k++) out.push(specAt(b, b.first + k))
  return out
}

/** Whether the block's demand (what the scheduler looks at) is the same for all its tasks. */
export function uniformShape (b: TaskBlock): boolean {
  return b.cols.cores == null && b.cols.gpus == null && b.cols.memoryMb == null && b.cols.timeoutMs == null && b.cols.constraints == null
}

/**
 * A job's tasks as client.submit.block frames (encoded by `encode`), each under `maxBytes`: blocks of up to
 * BLOCK_TASKS tasks, halved while one would not fit. `done`: tasks sent once that frame is.
 */
export function * blockFrames (specs: readonly TaskSpec[], maxBytes: number, encode: (msg: object) => Uint8Array): Generator<{ frame: Uint8Array, done: number }> {
  let i = 0
  let size = BLOCK_TASKS
  while (i < specs.length) {
    const n = Math.min(size, specs.length - i)
    const b = toBlock(specs.slice(i, i + n), i)
    const frame = encode({ t: 'client.submit.block', ...b })
    if (frame.byteLength > maxBytes && n > 1) {
      size = Math.max(1, n >> 1)
      continue
    }
    i += n
    yield { frame, done: i }
  }
}
