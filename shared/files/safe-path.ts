/**
 * Path checks for file names that arrive from the network (task inputs, outputs, shared files).
 * Every name is hostile until checkRelativeName says otherwise, and nothing under a staging root
 * is trusted to be a real folder: a task may have planted a symlink there on an earlier run.
 */
import { randomBytes, createHash } from 'node:crypto'
import { constants as fsc, type Stats } from 'node:fs'
import { lstat, mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises'
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

/** lstat that answers null for a missing path. */
async function lstatOrNull (p: string): Promise<Stats | null> {
  try {
    return await lstat(p)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

/** Absolute root and checked segments for a name. */
function split (root: string, name: string, what: string): { base: string, segments: string[] } {
  return { base: path.resolve(root), segments: checkRelativeName(name, what).split('/') }
}

/**
 * Checks the name, then refuses if any existing component under root is a symlink (root itself is trusted).
 * Returns the absolute path inside root. Components that do not exist yet are fine.
 */
export async function resolveInside (root: string, name: string): Promise<string> {
  const { base, segments } = split(root, name, 'file name')
  let cur = base
  for (const seg of segments) {
    cur = path.join(cur, seg)
    const st = await lstatOrNull(cur)
    if (st == null) break // nothing below a missing component can exist
    if (st.isSymbolicLink()) throw unsafe('file name', 'symlink in path', name)
  }
  if (!isInside(base, cur)) throw unsafe('file name', 'escapes the root', name)
  return path.join(base, ...segments)
}

/** mkdir -p of the parent components of a name, refusing any symlink on the way. Returns the parent folder. */
async function ensureParents (base: string, segments: string[], name: string): Promise<string> {
  let cur = base
  for (const seg of segments.slice(0, -1)) {
    cur = path.join(cur, seg)
    let st = await lstatOrNull(cur)
    if (st == null) {
      try {
        await mkdir(cur)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      // Look again: a concurrent writer (or a hostile task) may have created it first.
      st = await lstat(cur)
    }
    if (st.isSymbolicLink()) throw unsafe('file name', 'symlink in path', name)
    if (!st.isDirectory()) throw unsafe('file name', 'parent is not a folder', name)
  }
  return cur
}

/** Temp name in the target's folder; long bases are shortened so the temp name stays under NAME_MAX. */
function tempName (base: string): string {
  const shown = Buffer.byteLength(base) > 200 ? createHash('sha256').update(base).digest('hex').slice(0, 16) : base
  return `.${shown}.${randomBytes(6).toString('hex')}.part`
}

function chunksOf (data: Uint8Array | AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  if (data instanceof Uint8Array) return (async function * () { yield data })()
  return data
}

/**
 * Writes a file under root atomically: temp file in the same folder (O_EXCL|O_NOFOLLOW), fsync,
 * optional sha256 check, then rename over the target. Readers never see a half-written file and
 * a planted symlink is never followed. On any failure the temp file is removed.
 */
export async function writeFileAtomic (
  root: string,
  name: string,
  data: Uint8Array | AsyncIterable<Uint8Array>,
  expectedHash?: string
): Promise<{ hash: string, size: number }> {
  const { base, segments } = split(root, name, 'file name')
  const dir = await ensureParents(base, segments, name)
  const target = path.join(dir, segments[segments.length - 1])
  const existing = await lstatOrNull(target)
  if (existing?.isSymbolicLink() === true) throw unsafe('file name', 'symlink in path', name)
  if (!isInside(base, target)) throw unsafe('file name', 'escapes the root', name)

  const tmp = path.join(dir, tempName(segments[segments.length - 1]))
  const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW
  const fh = await open(tmp, flags, 0o644)
  const h = createHash('sha256')
  let size = 0
  let renamed = false
  try {
    for await (const chunk of chunksOf(data)) {
      await writeAll(fh, chunk)
      h.update(chunk)
      size += chunk.length
    }
    await fh.sync()
    await fh.close()
    const hash = h.digest('hex')
    if (expectedHash != null && hash !== expectedHash.toLowerCase()) {
      throw new MeshfarmError('HASH_MISMATCH', `${segments.join('/')}: expected sha256 ${expectedHash}, got ${hash}`)
    }
    await rename(tmp, target)
    renamed = true
    return { hash, size }
  } finally {
    if (!renamed) {
      await fh.close().catch(() => {})
      await unlink(tmp).catch(() => {})
    }
  }
}

/** fs writes may be short; loop until the whole chunk is down. */
async function writeAll (fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let off = 0
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off)
    off += bytesWritten
  }
}
