/**
 * Post phase: a finished task's outputs (names or globs) found in its folder and hashed, and its captured
 * stdout and stderr. A task controls its folder, so every file is opened without following a symlink and kept
 * only if it is a regular file whose real path lies inside the folder; its name must be one the coordinator
 * accepts (the same checker), or the task fails with kind 'output'.
 */
import { glob, open } from 'node:fs/promises'
import { join } from 'node:path'
import type { AttemptResult, FileRef } from '../shared/protocol/messages.ts'
import { checkRelativeName } from '../shared/files/safe-path.ts'
import { errorMessage } from '../shared/util/errors.ts'
import { EMPTY_HASH, type Fingerprint } from './results.ts'
import { hashHandle } from './file-hash.ts'
import { openInside, realDir } from './safe-fs.ts'

/** More output files than this fail the task: a result must fit in a message. */
export const MAX_OUTPUTS = 10_000


export interface Collected {
  outputs: FileRef[]
  missing: string[]
  fingerprints: Record<string, Fingerprint>
  /** Why the task fails for its outputs, or null. */
  problem: string | null
}

const GLOB_CHARS = /[*?[\]{}]/

/**
 * Collects outputs. `ownerUid`: when tasks run as a slot user, a file with several links that the task does not
 * own is refused (a hard link to something the slot user could not read itself).
 */
export async function collectOutputs (taskDir: string, patterns: readonly string[], ownerUid: number | null): Promise<Collected> {
  const out: Collected = { outputs: [], missing: [], fingerprints: {}, problem: null }
  if (patterns.length === 0) return out
  const realRoot = await realDir(taskDir)
  const seen = new Set<string>()
  for (const pattern of patterns) {
    let matched = false
    for await (const rel of glob(pattern, { cwd: taskDir })) {
      const raw = String(rel)
      let name: string
      try {
        name = checkRelativeName(raw, 'output')
      } catch (err) {
        out.problem ??= `output name not allowed: ${errorMessage(err)}`
        continue
      }
      // Where stdout and stderr go in the results folder: no output may take their names.
      if (name === '.meshfarm' || name.startsWith('.meshfarm/')) continue
      if (seen.has(name)) { matched = true; continue }
      const f = await openInside(realRoot, join(taskDir, name))
      if (f == null) continue
      try {
        if (ownerUid != null && f.nlink > 1 && f.uid !== ownerUid) continue
        if (out.outputs.length >= MAX_OUTPUTS) {
          out.problem ??= `more than ${MAX_OUTPUTS} output files`
          break
        }
        const { hash, size } = await hashHandle(f.fh)
        seen.add(name)
        matched = true
        out.outputs.push({ name, hash, size })
        out.fingerprints[name] = { size: f.size, mtimeMs: f.mtimeMs, ino: f.ino }
      } finally {
        await f.fh.close()
      }
    }
    if (!matched && !GLOB_CHARS.test(pattern)) out.missing.push(pattern)
  }
  return out
}

/** stdout or stderr from its capture file (in the state folder; the launcher says when it is empty). */
export async function captureRef (path: string, name: string, bytes: number | null): Promise<FileRef> {
  if (bytes === 0) return { name, hash: EMPTY_HASH, size: 0 }
  const fh = await open(path, 'r').catch(() => null)
  if (fh == null) return { name, hash: EMPTY_HASH, size: 0 }
  try {
    const { hash, size } = await hashHandle(fh)
    return { name, hash, size }
  } finally {
    await fh.close()
  }
}

/** Fills a result skeleton with its files; a problem with the outputs turns it into an 'output' failure. */
export function withFiles (r: AttemptResult, stdout: FileRef, stderr: FileRef, c: Collected | null): AttemptResult {
  const out: AttemptResult = { ...r, stdout, stderr, outputs: c?.outputs ?? [] }
  if (c != null && c.missing.length > 0) out.missingOutputs = c.missing
  if (c?.problem != null && r.state === 'done') {
    out.state = 'failed'
    out.failure = { kind: 'output', message: c.problem, retryable: false }
  }
  return out
}
