/** Waiting on real processes and files in tests, without racing a timer. */
import { readFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'

/** Alive means signalable and not a zombie (a container's pid 1 may never reap). */
export function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return true // no /proc (macOS): kill(0) is all we have
  }
}

/** Polls a condition until it holds (or fails after `ms`): for events only the file system or /proc tells. */
export async function waitFor (cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting')
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

export async function readPid (file: string): Promise<number> {
  let text = ''
  await waitFor(async () => {
    text = await readFile(file, 'utf8').catch(() => '')
    return text.trim() !== ''
  })
  return Number(text.trim())
}
