/**
 * `npm run bench`: meshfarm side by side with the tools a lab would otherwise use, on this machine, in one run.
 * Prints a table of ratios (medians of alternating runs, with min and max) and writes the raw numbers to JSON.
 *
 *   npm run bench                     # the full suite, a few minutes on 2 cores
 *   npm run bench -- --quick          # a smoke test with small sizes (CI runs it)
 *   npm run bench -- --only farm,staging --out results.json
 *   npm run bench -- --quick --without parallel,sshd,xz   # as on a machine without those tools
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, hostname, release, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import Table from 'cli-table3'
import { fmt } from './stats.ts'
import { hideTools } from './baselines.ts'
import { markdownTable, type Row } from './report.ts'
import { farmSection, dispatchSection, shortTasksSection } from './farm.ts'
import { stagingSection } from './staging.ts'
import { spreadSection } from './spread.ts'
import { curveSection, scaleSection, recoverySection } from './scale.ts'
import { slurmSection } from './slurm.ts'
import { workloadSection } from './workload.ts'

export interface BenchContext {
  quick: boolean
  dir: string
  /** Adds a line to the result table. */
  row: (r: Row) => void
  /** Raw numbers for the JSON file, by section. */
  raw: Record<string, unknown>
  note: (line: string) => void
  /** Writes a picture beside the table (the JSON file's folder); returns its path. */
  picture: (name: string, svg: string) => string
}

const SECTIONS: Record<string, (ctx: BenchContext) => Promise<void>> = {
  farm: farmSection,
  dispatch: dispatchSection,
  short: shortTasksSection,
  staging: stagingSection,
  spread: spreadSection,
  workload: workloadSection,
  scale: scaleSection,
  recovery: recoverySection,
  curve: curveSection,
  slurm: slurmSection
}

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
    without: { type: 'string' }
  }
})
const quick = values.quick === true
// Measured as a machine without these tools would be (the smoke test checks a fresh machine's path this way).
if (values.without != null) hideTools(values.without.split(',').map(s => s.trim()).filter(s => s !== ''))
const only = values.only != null ? values.only.split(',').map(s => s.trim()) : Object.keys(SECTIONS)
for (const name of only) {
  if (SECTIONS[name] == null) {
    console.error(`meshfarm bench: unknown section '${name}' (known: ${Object.keys(SECTIONS).join(', ')})`)
    process.exit(2)
  }
}
const outFile = resolve(values.out ?? (quick ? join(tmpdir(), 'meshfarm-bench-quick.json') : 'bench/results/latest.json'))

const machine = {
  host: hostname(),
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  node: process.version,
  date: new Date().toISOString()
}
console.log(`meshfarm bench${quick ? ' --quick' : ''} on ${machine.host}: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}`)

const dir = mkdtempSync(join(tmpdir(), 'meshfarm-bench-'))
const rows: Row[] = []
const raw: Record<string, unknown> = {}
const notes: string[] = []
const ctx: BenchContext = {
  quick,
  dir,
  row: r => { rows.push(r); console.log(`  ${r.measure}: ${fmt(r.meshfarm)} ${r.unit}${r.baseline != null ? ` vs ${r.baselineName} ${fmt(r.baseline)}` : ''}`) },
  raw,
  note: line => { notes.push(line); console.log(`  note: ${line}`) },
  picture: (name, svg) => {
    const file = join(resolve(outFile, '..'), name)
    mkdirSync(resolve(outFile, '..'), { recursive: true })
    writeFileSync(file, svg)
    return file
  }
}

let failed = false
const started = performance.now()
for (const name of only) {
  console.log(`[${name}]`)
  const sectionDir = join(dir, name)
  mkdirSync(sectionDir, { recursive: true })
  try {
    await SECTIONS[name]({ ...ctx, dir: sectionDir })
  } catch (err) {
    failed = true
    console.error(`meshfarm bench: section ${name} failed: ${(err as Error).message}`)
  }
  if (values.keep !== true) rmSync(sectionDir, { recursive: true, force: true })
}
if (values.keep !== true) rmSync(dir, { recursive: true, force: true })

const table = new Table({ head: ['measure', 'meshfarm', 'compared with', 'ratio', 'goal', 'met'], style: { head: [], border: [] } })
for (const r of rows) {
  const spread = r.min != null && r.max != null ? ` (${fmt(r.min)}-${fmt(r.max)})` : ''
  table.push([
    r.measure,
    `${fmt(r.meshfarm)} ${r.unit}${spread}`,
    r.baseline != null ? `${r.baselineName}: ${fmt(r.baseline)} ${r.unit}` : '',
    r.ratio != null ? `${fmt(r.ratio)}x` : '',
    r.goal ?? '',
    r.met == null ? '' : r.met ? 'yes' : 'NO'
  ])
}
console.log(table.toString())
for (const n of notes) console.log(`note: ${n}`)
const elapsedS = (performance.now() - started) / 1000
console.log(`bench: ${rows.length} measures in ${fmt(elapsedS, 0)} s; raw numbers in ${outFile}`)
mkdirSync(resolve(outFile, '..'), { recursive: true })
writeFileSync(outFile, JSON.stringify({ machine, quick, elapsedS, rows, notes, raw }, null, 2) + '\n')
// The same table in Markdown beside it, as the README shows it.
writeFileSync(outFile.replace(/\.json$/, '') + '.md', `${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}, ${machine.date.slice(0, 10)}\n\n${markdownTable(rows)}`)
process.exit(failed ? 1 : 0)
