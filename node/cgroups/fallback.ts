/**
 * Task groups without cgroups: the process tree found by parent pid and by the launcher's environment marker
 * (double-forked children included). Suspend is SIGSTOP of every process, continue SIGCONT, kill SIGKILL after
 * a stop of the whole tree. Memory is capped by RLIMIT_DATA at launch and CPU by nice; nothing is counted.
 */
import type { TaskGroup, TaskGroups } from './types.ts'
import { continueTree, groupTasks, killTree, readStat, scanProcesses, stopTree } from './proctree.ts'
import { waitFor } from './fsutil.ts'

class TreeGroup implements TaskGroup {
  readonly kind = 'process-tree' as const
  readonly procFiles: string[] = []
  readonly id: string
  private readonly agentPid: number
  private readonly rootPid: number | undefined

  constructor (id: string, agentPid: number, rootPid: number | undefined) {
    this.id = id
    this.agentPid = agentPid
    this.rootPid = rootPid
  }

  async pids (): Promise<number[]> {
    const roots = new Map(this.rootPid != null ? [[this.id, this.rootPid]] : [])
    return groupTasks(await scanProcesses(), this.agentPid, roots).get(this.id) ?? []
  }

  async freeze (timeoutMs = 1000): Promise<void> { await stopTree(() => this.pids(), timeoutMs) }

  async thaw (timeoutMs = 1000): Promise<void> {
    const pids = await continueTree(() => this.pids())
    await waitFor(async () => (await Promise.all(pids.map(readStat))).every(s => s == null || s.state !== 'T'), timeoutMs, () => `continue: task ${this.id} still stopped after ${timeoutMs} ms`)
  }

  async memory (): Promise<{ oomKilled: boolean, oomKills: number, peakBytes: null, limitBytes: null }> {
    return { oomKilled: false, oomKills: 0, peakBytes: null, limitBytes: null }
  }

  async cpuSec (): Promise<null> { return null }
  async kill (timeoutMs = 5000): Promise<void> { await killTree(() => this.pids(), timeoutMs) }
  async remove (): Promise<void> {}
}

/** `why`: what kept cgroups out, for the start line. */
export function openProcessTree (why: string, agentPid = process.pid): TaskGroups {
  return {
    kind: 'process-tree',
    controllers: new Set(),
    describe: `cgroups: not usable (${why}): tasks are suspended by SIGSTOP of their process tree, memory capped by RLIMIT_DATA, CPU by nice`,
    create: async (id, _limits, rootPid) => new TreeGroup(id, agentPid, rootPid),
    tasksCpuSec: async () => null,
    leftovers: async () => [],
    reopen: id => new TreeGroup(id, agentPid, undefined),
    close: async () => {}
  }
}
