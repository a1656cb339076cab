/**
 * Which cgroup hierarchies this machine has and where this process sits in them, from /proc/self/mountinfo and
 * /proc/self/cgroup. Pure parsers; `readLayout` is the only reader.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface CgroupMount {
  mountPoint: string
  /** The subtree this mount shows (not "/" inside some containers). */
  root: string
  version: 1 | 2
  /** v1: the controllers bound to this hierarchy ("cpu", "cpuacct"); empty for v2 and name=systemd. */
  controllers: string[]
}

const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))

/** /proc/self/mountinfo -> cgroup mounts. Pure. */
export function parseMountinfo (text: string): CgroupMount[] {
  const out: CgroupMount[] = []
  for (const line of text.split('\n')) {
    const dash = line.indexOf(' - ')
    if (dash < 0) continue
    const left = line.slice(0, dash).split(' ')
    const [fstype, , superOpts = ''] = line.slice(dash + 3).split(' ')
    if (left.length < 5 || (fstype !== 'cgroup' && fstype !== 'cgroup2')) continue
    const controllers = fstype === 'cgroup' ? superOpts.split(',').filter(o => /^[a-z_]+$/.test(o) && !['rw', 'ro', 'noprefix', 'clone_children', 'xattr', 'cpuset_v2_mode', 'nsdelegate', 'memory_recursiveprot', 'favordynmods'].includes(o)) : []
    out.push({ mountPoint: unescape(left[4]), root: unescape(left[3]), version: fstype === 'cgroup2' ? 2 : 1, controllers })
  }
  return out
}

/** /proc/self/cgroup -> v1 controller (or "name=x") -> path, and the v2 path under "". Pure. */
export function parseProcCgroup (text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line.trim())
    if (m == null) continue
    if (m[1] === '') out.set('', m[2])
    else for (const c of m[1].split(',')) out.set(c, m[2])
  }
  return out
}

/** The folder of a cgroup path on a mount, allowing for mounts that show only a subtree. Pure. */
export function cgroupDir (mount: CgroupMount, path: string): string {
  const rel = mount.root !== '/' && (path === mount.root || path.startsWith(mount.root + '/')) ? path.slice(mount.root.length) : path
  return join(mount.mountPoint, rel).replace(/(.)\/+$/, '$1')
}

export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'freezer', 'pids'] as const

export interface CgroupLayout {
  /** The unified hierarchy and this process's folder in it; null when not mounted. */
  v2: { mount: CgroupMount, ownDir: string, ownPath: string } | null
  /** Per v1 controller: its hierarchy and this process's folder there. */
  v1: Map<string, { mount: CgroupMount, ownDir: string }>
  /** v2 is the only hierarchy with controllers (today's desktops); false on v1 and hybrid machines. */
  pureV2: boolean
}

/** Mounts + own paths -> layout. When a controller is mounted twice, the first mount wins. Pure. */
export function buildLayout (mounts: CgroupMount[], own: Map<string, string>): CgroupLayout {
  const v1 = new Map<string, { mount: CgroupMount, ownDir: string }>()
  let v2: CgroupLayout['v2'] = null
  for (const m of mounts) {
    if (m.version === 2 && v2 == null) {
      const p = own.get('') ?? '/'
      v2 = { mount: m, ownDir: cgroupDir(m, p), ownPath: p }
    }
    if (m.version === 1) {
      for (const c of m.controllers) {
        if (!v1.has(c) && own.has(c)) v1.set(c, { mount: m, ownDir: cgroupDir(m, own.get(c)!) })
      }
    }
  }
  const pureV2 = v2 != null && !V1_CONTROLLERS.some(c => v1.has(c))
  return { v2, v1, pureV2 }
}

export async function readLayout (procSelf = '/proc/self'): Promise<CgroupLayout> {
  const [mountinfo, cgroup] = await Promise.all([
    readFile(`${procSelf}/mountinfo`, 'utf8').catch(() => ''),
    readFile(`${procSelf}/cgroup`, 'utf8').catch(() => '')
  ])
  return buildLayout(parseMountinfo(mountinfo), parseProcCgroup(cgroup))
}
