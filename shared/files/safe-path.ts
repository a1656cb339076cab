/**
 * Checks for file names that arrive from the network (task inputs, outputs, shared files): every name is hostile
 * until checkRelativeName says otherwise. Opening such names without following a link a task planted is
 * node/safe-fs.ts's job.
 */
import path from 'node:path'
import { MeshfarmError } from '../util/errors.ts'

const MAX_SEGMENT_BYTES = 255
const MAX_TOTAL_BYTES = 4096
const MAX_SEGMENTS = 32

/** Quote a name for an error message; long names are cut so the message stays readable. */
function quote (name: string): string {
  return JSON.stringify(name.length > 120 ? name.slice(0, 120) + '...' : name)
}

function unsafe (what: string, why: string, name: string): MeshfarmError {
  return new MeshfarmError('UNSAFE_PATH', `${what}: ${why} (${quote(name)})`)
}

/** Returns the reason a raw name is refused before splitting it, or null. */
function rawProblem (name: string): string | null {
  if (name === '') return 'empty name'
  if (name.startsWith('/') || name.startsWith('\\') || /^[A-Za-z]:/.test(name)) return 'absolute path'
  if (name.includes('\\')) return 'backslash in name'
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return 'control character in name'
  // Lone surrogates would be written as U+FFFD, so two different names could land on one file.
  if (!name.isWellFormed()) return 'malformed unicode'
  if (Buffer.byteLength(name) > MAX_TOTAL_BYTES) return `name longer than ${MAX_TOTAL_BYTES} bytes`
  return null
}

/**
 * Checks a relative name from the network and returns it normalized (POSIX, no '.' or empty segments).
 * Throws MeshfarmError UNSAFE_PATH with `${what}: <why> (<name>)` when refused.
 */
export function checkRelativeName (name: string, what: string): string {
  if (typeof name !== 'string') throw unsafe(what, 'not a string', String(name))
  const problem = rawProblem(name)
  if (problem != null) throw unsafe(what, problem, name)
  const segments: string[] = []
  for (const seg of name.split('/')) {
    if (seg === '' || seg === '.') continue
    if (seg === '..') throw unsafe(what, "'..' segment", name)
    if (Buffer.byteLength(seg) > MAX_SEGMENT_BYTES) throw unsafe(what, `segment longer than ${MAX_SEGMENT_BYTES} bytes`, name)
    segments.push(seg)
  }
  if (segments.length === 0) throw unsafe(what, 'empty name', name)
  if (segments.length > MAX_SEGMENTS) throw unsafe(what, `more than ${MAX_SEGMENTS} path segments`, name)
  return segments.join('/')
}

/** True when p is strictly inside root (root itself is not "inside"). Purely lexical. */
export function isInside (root: string, p: string): boolean {
  const rel = path.relative(path.resolve(root), path.resolve(p))
  if (rel === '' || path.isAbsolute(rel)) return false
  return rel !== '..' && !rel.startsWith('..' + path.sep)
}
