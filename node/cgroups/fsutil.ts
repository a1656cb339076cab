/** Small cgroupfs helpers: one-line errors naming the file, polling for a state the kernel reaches soon. */
import { readFile, writeFile, access, rmdir, mkdir, chmod } from 'node:fs/promises'
import { dirname } from 'node:path'

export async function put (file: string, value: string): Promise<void> {
  try {
    await writeFile(file, value)
  } catch (err) {
    throw new Error(`${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

export async function get (file: string): Promise<string | null> {
  try { return await readFile(file, 'utf8') } catch { return null }
}

export async function exists (file: string): Promise<boolean> {
  try { await access(file); return true } catch { return false }
}

/** "key value" lines (cgroup.events, memory.events, cpu.stat, memory.oom_control) -> map. Pure. */
export function parseKeyed (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/)
    if (k != null && v != null && /^\d+$/.test(v)) out.set(k, Number(v))
  }
  return out
}

/** cgroup.procs -> pids. Pure. */
export function parsePids (text: string | null): number[] {
  return (text ?? '').split('\n').filter(l => /^\d+$/.test(l.trim())).map(Number)
}

/** A limit file: "max" (v2) or a huge number (v1 "unlimited") -> null. Pure. */
export function parseLimit (text: string | null): number | null {
  const t = (text ?? '').trim()
  if (!/^\d+$/.test(t)) return null
  const n = Number(t)
  return n >= 2 ** 62 ? null : n
}

export const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Polls until `check` holds; throws `what` after timeoutMs. Starts at 1 ms: the kernel usually answers at once. */
export async function waitFor (check: () => Promise<boolean>, timeoutMs: number, what: () => string | Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (let delay = 1; ; delay = Math.min(delay * 2, 25)) {
    if (await check()) return
    if (Date.now() >= deadline) throw new Error(await what())
    await sleep(delay)
  }
}

/** rmdir, retried while the kernel still counts exiting processes (EBUSY); an absent folder is fine. */
export async function removeDir (dir: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try { await rmdir(dir); return } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return
      if (code !== 'EBUSY' || Date.now() >= deadline) throw new Error(`${dir}: ${code}`)
      await sleep(20)
    }
  }
}

/**
 * mkdir (with `parents` levels of parents, recursively), then 0755 whatever the agent's umask (077): a task may
 * read its own limits (the JVM and Go size their heaps from them), as anyone may elsewhere in /sys/fs/cgroup.
 */
export async function makeGroupDir (dir: string, parents = 0): Promise<void> {
  await mkdir(dir, { recursive: parents > 0 })
  await chmod(dir, 0o755)
  for (let d = dirname(dir), i = 0; i < parents; d = dirname(d), i++) await chmod(d, 0o755).catch(() => {})
}
