/** `meshfarm report`'s one piece of I/O: the summary plus the timeline written as SVG and PNG. */
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { TaskRecord } from '../protocol/messages.ts'
import { summarizeJob, type JobReport, type SummarizeOptions } from './summary.ts'
import { barsFromRecords, renderTimelineSvg } from './timeline-svg.ts'
import { svgToPng } from './png.ts'

export interface WriteReportOptions extends SummarizeOptions {
  /** Folder the pictures go to (created when missing). */
  outDir: string
  /** File name without extension (default `job-<id>-timeline`). */
  baseName?: string
  /** Where bars of still-running tasks end. */
  now: number
  /** Skip the PNG (the SVG is always written). */
  png?: boolean
}

export interface WrittenReport {
  report: JobReport
  files: { svg: string, png: string | null }
}

async function writeAtomic (path: string, data: string | Buffer): Promise<void> {
  await writeFile(`${path}.part`, data)
  await rename(`${path}.part`, path)
}

export async function writeReport (records: readonly TaskRecord[], opts: WriteReportOptions): Promise<WrittenReport> {
  const report = summarizeJob(records, opts)
  const title = `job ${report.jobId ?? '?'}${report.name != null ? ` ${report.name}` : ''}`
  const svg = renderTimelineSvg([...barsFromRecords(records), ...(opts.earlier ?? [])], { now: opts.now, title })
  await mkdir(opts.outDir, { recursive: true })
  const base = join(opts.outDir, opts.baseName ?? `job-${report.jobId ?? 'unknown'}-timeline`)
  await writeAtomic(`${base}.svg`, svg)
  let png: string | null = null
  if (opts.png !== false) {
    png = `${base}.png`
    await writeAtomic(png, svgToPng(svg))
  }
  return { report, files: { svg: `${base}.svg`, png } }
}
