/**
 * Parsers for what Slurm 22.05 prints, pure and tested on captured output (test/unit/fixtures/slurm/): the
 * bridge's fixed `squeue -o` format, `scontrol show job -o`, `scontrol show config`, `scontrol show partition -o`
 * and the bridge's `sinfo -N -o` format. A line that cannot be read throws `what: why` with the line quoted.
 */
import type { JobDetails, PartitionInfo, PartitionNode, QueueEntry, SlurmConfig } from './batch-system.ts'
import { parseSlurmDuration } from './hostlist.ts'

/** Unit separator: never in a job name, comment or reason Slurm prints, so free text needs no quoting. */
export const SEP = '\x1f'
/**
 * id, %A, state, reason, nodes, then the free-text name and comment last. %A is read but not trusted: for an array
 * element that has started, 22.05 prints the element's own job id there, not the array's (see the fixture).
 */
export const QUEUE_FORMAT = ['%i', '%A', '%T', '%r', '%N', '%j', '%k'].join(SEP)
/** Arguments for the one squeue call per poll: this user's jobs, array elements one per line, finished ones too. */
export const QUEUE_ARGS = ['--me', '-h', '-r', '-t', 'all', '-o', QUEUE_FORMAT]

const quote = (line: string): string => JSON.stringify(line.length > 200 ? line.slice(0, 200) + '...' : line)

/** `123_4` -> { array: '123', index: 4 }; `123` -> { array: '123', index: null }. */
export function splitJobId (id: string): { arrayJobId: string, arrayIndex: number | null } {
  const m = /^(\d+)(?:_(\d+))?$/.exec(id)
  if (m == null) throw new Error(`job id: not a Slurm job id: ${JSON.stringify(id)}`)
  return { arrayJobId: m[1], arrayIndex: m[2] != null ? Number(m[2]) : null }
}

export function parseQueue (text: string): Map<string, QueueEntry> {
  const out = new Map<string, QueueEntry>()
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const f = line.split(SEP)
    if (f.length < 7) throw new Error(`squeue: expected 7 fields, got ${f.length}: ${quote(line)}`)
    const [jobId, , state, reason, nodes, name] = f
    // A pending array not yet split prints as 123_[4-9%2] even with -r on some versions: one entry per index.
    const pending = /^(\d+)_\[([^\]]+)\]$/.exec(jobId)
    const comment = f.slice(6).join(SEP)
    if (pending != null) {
      for (const index of expandArrayRange(pending[2])) {
        const id = `${pending[1]}_${index}`
        out.set(id, { jobId: id, arrayJobId: pending[1], arrayIndex: index, state, reason, nodes, name, comment })
      }
      continue
    }
    // %A is not the array's id for an element that has started (it prints the element's own job id): use %i.
    const { arrayJobId, arrayIndex } = splitJobId(jobId.trim())
    if (!/^[A-Z_]+$/.test(state)) throw new Error(`squeue: bad state ${JSON.stringify(state)}: ${quote(line)}`)
    out.set(jobId, { jobId, arrayJobId, arrayIndex, state, reason, nodes: nodes === '(null)' ? '' : nodes, name, comment })
  }
  return out
}

/** `0-9%2` or `1,3,5-7` -> the indexes (the `%N` throttle dropped). */
export function expandArrayRange (text: string): number[] {
  const out: number[] = []
  for (const item of text.replace(/%\d+$/, '').split(',')) {
    const m = /^(\d+)(?:-(\d+))?(?::(\d+))?$/.exec(item)
    if (m == null) throw new Error(`array range: bad item ${JSON.stringify(item)} in ${JSON.stringify(text)}`)
    const lo = Number(m[1]); const hi = m[2] != null ? Number(m[2]) : lo; const step = m[3] != null ? Number(m[3]) : 1
    if (hi < lo || step < 1 || hi - lo > 10_000_000) throw new Error(`array range: bad item ${JSON.stringify(item)} in ${JSON.stringify(text)}`)
    for (let i = lo; i <= hi; i += step) out.push(i)
  }
  return out
}

/**
 * Keys whose values are free text and may hold spaces and even ` Word=` (a comment, a command line, a path).
 * After one of these, a ` Word=` starts a new field only when Word is a key scontrol prints (KNOWN_KEYS) and the
 * record has not had yet.
 */
const FREE_TEXT = new Set(['JobName', 'Comment', 'Reason', 'Command', 'WorkDir', 'StdErr', 'StdIn', 'StdOut', 'AdminComment', 'SystemComment', 'Features', 'Dependency', 'OS', 'Power'])
const KNOWN_KEYS = new Set(('JobId ArrayJobId ArrayTaskId ArrayTaskThrottle JobName UserId GroupId MCS_label Priority Nice Account QOS ' +
  'JobState Reason Dependency Requeue Restarts BatchFlag Reboot ExitCode DerivedExitCode RunTime TimeLimit TimeMin SubmitTime ' +
  'EligibleTime AccrueTime StartTime EndTime Deadline SuspendTime SecsPreSuspend LastSchedEval Scheduler Partition ' +
  'AllocNode:Sid ReqNodeList ExcNodeList NodeList BatchHost NumNodes NumCPUs NumTasks CPUs/Task ReqB:S:C:T TRES Socks/Node ' +
  'NtasksPerN:B:S:C CoreSpec MinCPUsNode MinMemoryCPU MinMemoryNode MinTmpDiskNode Features DelayBoot OverSubscribe Contiguous ' +
  'Licenses Network Command WorkDir StdErr StdIn StdOut Power Comment AdminComment SystemComment TresPerNode TresPerTask ' +
  'CpusPerTres MemPerTres TresPerJob TresPerSocket MailUser MailType PreemptEligibleTime PreemptTime ResizeTime ' +
  'CPU_IDs Mem GRES Nodes Reservation ReqFeatures ClusterFeatures LicensesAlloc NtasksPerTRES KillOInInvalidDependent ' +
  'BurstBuffer BurstBufferState CpuFreqMin CpuFreqMax CpuFreqGov Container ContainerID Partitions SelinuxContext ' +
  'HetJobId HetJobOffset HetJobIdSet JobAccountingInfo').split(' '))

/** One `Key=value Key=value ...` line of `scontrol show ... -o` into fields, values with spaces kept whole. */
export function parseKeyValueLine (line: string): Record<string, string> {
  const fields: Record<string, string> = {}
  const re = /(?:^|\s)([A-Za-z][A-Za-z0-9_/:*]*)=/g
  const starts: Array<{ key: string, keyAt: number, valueAt: number }> = []
  for (let m = re.exec(line); m != null; m = re.exec(line)) {
    const keyAt = m.index + m[0].length - m[1].length - 1
    const prev = starts[starts.length - 1]
    // Keys are unique in a record: after free text, only a known key not seen yet starts a field.
    if (prev != null && FREE_TEXT.has(prev.key) && (!KNOWN_KEYS.has(m[1]) || starts.some(x => x.key === m![1]))) continue
    starts.push({ key: m[1], keyAt, valueAt: m.index + m[0].length })
  }
  if (starts.length === 0) throw new Error(`scontrol: no Key=value fields in ${quote(line)}`)
  for (let i = 0; i < starts.length; i++) {
    const end = i + 1 < starts.length ? starts[i + 1].keyAt : line.length
    fields[starts[i].key] = line.slice(starts[i].valueAt, end).trim()
  }
  return fields
}

/** scontrol's local time `2026-11-23T07:03:35` -> epoch ms; Unknown/None/N/A -> null. */
export function parseSlurmTime (text: string | undefined): number | null {
  if (text == null || text === '' || /^(Unknown|None|N\/A|\(null\))$/.test(text)) return null
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/.test(text)) throw new Error(`scontrol: bad time ${JSON.stringify(text)}`)
  return new Date(text).getTime() // no offset: JavaScript reads it as local time, as Slurm printed it
}

const nullIfNull = (v: string | undefined): string => v == null || v === '(null)' ? '' : v

/** `scontrol show job -o ID`: one record per line (an array id prints every element). */
export function parseJobDetails (text: string): JobDetails[] {
  const out: JobDetails[] = []
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const f = parseKeyValueLine(line)
    if (f.JobId == null || f.JobState == null) throw new Error(`scontrol show job: no JobId or JobState in ${quote(line)}`)
    const exit = /^(\d+):(\d+)$/.exec(f.ExitCode ?? '0:0')
    if (exit == null) throw new Error(`scontrol show job: bad ExitCode ${JSON.stringify(f.ExitCode)} in ${quote(line)}`)
    const arrayIndex = f.ArrayTaskId != null && /^\d+$/.test(f.ArrayTaskId) ? Number(f.ArrayTaskId) : null
    const arrayJobId = f.ArrayJobId ?? null
    out.push({
      jobId: arrayJobId != null && arrayIndex != null ? `${arrayJobId}_${arrayIndex}` : f.JobId,
      arrayJobId,
      arrayIndex,
      state: f.JobState.split(' ')[0],
      reason: f.Reason ?? 'None',
      exitCode: Number(exit[1]),
      exitSignal: Number(exit[2]),
      startAt: parseSlurmTime(f.StartTime),
      endAt: parseSlurmTime(f.EndTime),
      timeLimitMs: f.TimeLimit == null ? null : parseSlurmDuration(f.TimeLimit),
      nodes: nullIfNull(f.NodeList),
      name: f.JobName ?? '',
      comment: nullIfNull(f.Comment),
      fields: f
    })
  }
  return out
}

/** `scontrol show config`: `Key = value` lines. */
export function parseConfig (text: string): SlurmConfig {
  const fields: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+=\s?(.*)$/.exec(line)
    if (m != null) fields[m[1]] = m[2].trim()
  }
  const num = (key: string): number => {
    const m = /^(\d+)/.exec(fields[key] ?? '')
    if (m == null) throw new Error(`scontrol show config: ${key}: expected a number, got ${JSON.stringify(fields[key] ?? '(missing)')}`)
    return Number(m[1])
  }
  const sched = Object.fromEntries((fields.SchedulerParameters ?? '').split(',').filter(s => s !== '' && s !== '(null)').map(s => {
    const i = s.indexOf('=')
    return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)]
  }))
  const mat = sched.max_array_tasks
  if (mat != null && !/^\d+$/.test(mat)) throw new Error(`scontrol show config: SchedulerParameters: max_array_tasks: expected a number, got ${JSON.stringify(mat)}`)
  return {
    version: fields.SLURM_VERSION ?? '',
    clusterName: fields.ClusterName ?? '',
    maxArraySize: num('MaxArraySize'),
    maxArrayTasks: mat != null ? Number(mat) : null,
    minJobAgeMs: num('MinJobAge') * 1000,
    fields
  }
}

/** `Gres=gpu:4`, `gpu:a100:2(S:0-1),gpu:v100:1` -> number of GPUs. */
export function gpusInGres (gres: string): number {
  let n = 0
  for (const item of gres.split(/,(?![^(]*\))/)) {
    const m = /^gpu(?::[^:(]+)?:(\d+)/.exec(item.trim())
    if (m != null) n += Number(m[1])
  }
  return n
}

/** The bridge's per-node sinfo format for one partition. */
export const SINFO_NODE_ARGS = (partition: string): string[] => ['-h', '-N', '-p', partition, '-o', ['%N', '%c', '%m', '%G', '%T'].join(SEP)]

export function parseSinfoNodes (text: string): PartitionNode[] {
  const nodes: PartitionNode[] = []
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const [name, cpus, mem, gres, state] = line.split(SEP)
    if (state == null || !/^\d+$/.test(cpus) || !/^\d+\+?$/.test(mem)) throw new Error(`sinfo: bad node line ${quote(line)}`)
    nodes.push({ name, cpus: Number(cpus), memoryMb: parseInt(mem, 10), gpus: gpusInGres(gres), state })
  }
  return nodes
}

/** `scontrol show partition -o NAME` (first line) plus the node lines from sinfo. */
export function parsePartition (text: string, nodes: PartitionNode[]): PartitionInfo {
  const line = text.split('\n').find(l => l.trim() !== '')
  if (line == null) throw new Error('scontrol show partition: no output')
  const f = parseKeyValueLine(line)
  if (f.PartitionName == null) throw new Error(`scontrol show partition: no PartitionName in ${quote(line)}`)
  const dur = (v: string | undefined): number | null => v == null || v === 'NONE' ? null : parseSlurmDuration(v)
  return {
    name: f.PartitionName,
    state: f.State ?? 'UNKNOWN',
    maxTimeMs: dur(f.MaxTime),
    defaultTimeMs: dur(f.DefaultTime),
    totalCpus: Number(f.TotalCPUs ?? 0),
    nodes,
    allowAccounts: (f.AllowAccounts ?? 'ALL').split(','),
    isDefault: f.Default === 'YES'
  }
}
