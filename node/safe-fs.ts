/**
 * File operations in folders a task may have written to, without following links it planted there. Node has
 * no openat(): a folder opened with O_NOFOLLOW is reached again through /proc/self/fd/N, so the path is never
 * resolved a second time (check-then-use). Linux only, like the agent's sandbox.
 */
import { constants as fsc } from 'node:fs'
import { copyFile, link, mkdir, open, readlink, realpath, symlink, type FileHandle } from 'node:fs/promises'
import { MeshfarmError } from '../shared/util/errors.ts'
import { checkRelativeName, isInside } from '../shared/files/safe-path.ts'

const DIR_FLAGS = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW

/** The path that reaches an open file or folder itself, whatever happens to its name meanwhile. */
export function fdPath (fh: FileHandle): string {
  return `/proc/self/fd/${fh.fd}`
}

function unsafe (name: string, why: string): MeshfarmError {
  return new MeshfarmError('UNSAFE_PATH', `${name}: ${why}`)
}

/** Opens a folder that must not be a symlink. */
export async function openDir (path: string): Promise<FileHandle> {
  try {
    return await open(path, DIR_FLAGS)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') throw unsafe(path, 'not a folder (a symlink?)')
    throw err
  }
}

/**
 * Opens (creating as needed, with `mode`) the folder holding `name` under `root`, one component at a time,
 * refusing any symlink on the way. Returns the folder and the file's own name in it.
 */
export async function openParent (root: FileHandle, name: string, mode: number): Promise<{ dir: FileHandle, base: string, created: string[] }> {
  const segments = checkRelativeName(name, 'file name').split('/')
  const base = segments.pop()!
  let dir = root
  const created: string[] = []
  const opened: FileHandle[] = []
  try {
    for (const seg of segments) {
      const path = `${fdPath(dir)}/${seg}`
      try {
        await mkdir(path, { mode })
        created.push(seg)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      try {
        dir = await open(path, DIR_FLAGS)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ELOOP' || code === 'ENOTDIR') throw unsafe(name, 'symlink or file in its path')
        throw err
      }
      opened.push(dir)
      // mkdir's mode passes through the umask (077 in the agent); the folder gets the mode asked for.
      if (created.at(-1) === seg) await dir.chmod(mode)
    }
  } catch (err) {
    await Promise.all(opened.map(async fh => { await fh.close() }))
    throw err
  }
  // The folders opened on the way are closed; the last one is the caller's.
  await Promise.all(opened.slice(0, -1).map(async fh => { await fh.close() }))
  return { dir, base, created }
}

export type Placement = 'link' | 'copy' | 'symlink'

/**
 * Places `source` (a trusted path: the cache, the job folder) at `name` under `root` as a hard link, a copy or
 * a symlink. An existing file of that name is left as it is (a shared file and an input may share a name).
 */
export async function placeAt (root: FileHandle, name: string, source: string, how: Placement, dirMode: number): Promise<void> {
  const { dir, base } = await openParent(root, name, dirMode)
  const dest = `${fdPath(dir)}/${base}`
  try {
    // None of these follows a symlink at the destination: link and symlink create a new name or fail, and a copy
    // is made with O_EXCL.
    if (how === 'link') await link(source, dest)
    else if (how === 'symlink') await symlink(source, dest)
    else await copyFile(source, dest, fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return
    if (code === 'EXDEV' && how === 'link') await copyFile(source, dest, fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE)
    else throw err
  } finally {
    if (dir !== root) await dir.close()
  }
}

/**
 * Opens a file a task wrote for reading, without following a symlink at its name, and only if it is a regular
 * file whose real path lies inside `realRoot` (a symlinked folder on the way would lead elsewhere). Null if not.
 */
export async function openInside (realRoot: string, path: string): Promise<{ fh: FileHandle, size: number, mtimeMs: number, ino: number, nlink: number, uid: number } | null> {
  let fh: FileHandle
  try {
    fh = await open(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK)
  } catch {
    return null
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new Error('not a regular file')
    const real = await readlink(fdPath(fh))
    if (!isInside(realRoot, real)) throw new Error('outside the folder')
    return { fh, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, nlink: st.nlink, uid: st.uid }
  } catch {
    await fh.close()
    return null
  }
}

export async function realDir (path: string): Promise<string> {
  return await realpath(path)
}
