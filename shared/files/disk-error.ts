import { hostname } from 'node:os'
import { MeshfarmError } from '../util/errors.ts'

/** ENOSPC and EDQUOT as one clear line that says where: on a mesh, "disk full" alone does not say whose disk. */
export function translateDiskError (err: unknown, dir: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code
  if (code === 'ENOSPC' || code === 'EDQUOT') return new MeshfarmError('DISK', `disk full on ${hostname()} (${dir}): ${code === 'EDQUOT' ? 'quota exceeded' : 'no space left'}; nothing was stored`)
  return err
}
