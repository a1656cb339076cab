import { fmt } from './stats.ts'

/** One line of the benchmark's table: a meshfarm number, what it is compared with, and the goal. */
export interface Row {
  measure: string
  unit: string
  /** The median of the runs. */
  meshfarm: number
  min?: number
  max?: number
  baselineName?: string
  baseline?: number
  /** meshfarm relative to the baseline, oriented so that more is better for meshfarm. */
  ratio?: number
  goal?: string
  met?: boolean
}

/** The table as Markdown, for the README's performance section. */
export function markdownTable (rows: Row[]): string {
  const lines = ['| measure | meshfarm (median, min-max) | compared with | ratio | goal | met |', '|---|---|---|---|---|---|']
  for (const r of rows) {
    const spread = r.min != null && r.max != null ? ` (${fmt(r.min)}-${fmt(r.max)})` : ''
    const cell = (text: string): string => text.replaceAll('|', '\\|')
    lines.push(`| ${cell(r.measure)} | ${fmt(r.meshfarm)} ${r.unit}${spread} | ${r.baseline != null ? cell(`${r.baselineName ?? ''}: ${fmt(r.baseline)} ${r.unit}`) : ''} | ${r.ratio != null ? `${fmt(r.ratio)}x` : ''} | ${r.goal ?? ''} | ${r.met == null ? '' : r.met ? 'yes' : '**no**'} |`)
  }
  return lines.join('\n') + '\n'
}
