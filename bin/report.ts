/**
 * `report`: a finished job's summary (durations, per-host throughput and utilisation, failures) and its
 * timeline as SVG and PNG, from a results folder. `meshfarm report JOB` (bin/commands/dashboard.ts) calls
 * `reportCommand` with records fetched from the coordinator instead.
 *   node bin/report.ts RESULTS_DIR [--out DIR] [--json]
 */
import { pathToFileURL } from 'node:url'
import { Command } from 'commander'
import type { TaskRecord } from '../shared/protocol/messages.ts'
import type { TimelineBar } from '../shared/report/timeline-svg.ts'
import { readResultsFolder } from '../shared/report/results-folder.ts'
import { formatReport } from '../shared/report/text.ts'
import { writeReport } from '../shared/report/write.ts'
import { errorMessage, isMeshfarmError } from '../shared/util/errors.ts'

export interface ReportCommandOptions {
  outDir: string
  json: boolean
  jobId?: number
  name?: string
  slots?: Record<string, number>
  stderrOf?: (r: TaskRecord) => Uint8Array | string | null | undefined
  /** Earlier attempts of the tasks (from the job's events). */
  earlier?: readonly TimelineBar[]
  now?: number
}

/** Writes the pictures and returns what to print: the human text, or the JSON with the files' paths. */
export async function reportCommand (records: readonly TaskRecord[], o: ReportCommandOptions): Promise<string> {
  const { report, files } = await writeReport(records, {
    outDir: o.outDir, now: o.now ?? Date.now(), jobId: o.jobId, name: o.name, slots: o.slots, stderrOf: o.stderrOf, earlier: o.earlier
  })
  if (o.json) return JSON.stringify({ ...report, files }, null, 2)
  return `${formatReport(report)}\ntimeline: ${files.svg}${files.png != null ? `, ${files.png}` : ''}`
}

async function main (argv: string[]): Promise<void> {
  const program = new Command('report')
    .description('summarise a finished job from its results folder; writes the timeline as SVG and PNG')
    .argument('<results>', 'a results folder (meshfarm fetch JOB)')
    .option('--out <dir>', 'where the timeline pictures go (default: the results folder)')
    .option('--json', 'the summary as JSON')
    .exitOverride()
    .configureOutput({ writeErr: s => process.stderr.write(s) })
  program.parse(argv)
  const dir = program.args[0]
  const o = program.opts<{ out?: string, json?: boolean }>()
  const folder = await readResultsFolder(dir)
  process.stdout.write(await reportCommand(folder.records, {
    outDir: o.out ?? dir,
    json: o.json === true,
    jobId: folder.job?.jobId,
    name: folder.job?.name,
    stderrOf: r => folder.stderr.get(r.index)
  }) + '\n')
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv).catch(err => {
    if ((err as { code?: string }).code?.startsWith('commander.') === true) process.exit((err as { exitCode: number }).exitCode === 0 ? 0 : 2)
    process.stderr.write(`error: ${errorMessage(err)}\n`)
    process.exit(isMeshfarmError(err) ? err.exitCode : 1)
  })
}
