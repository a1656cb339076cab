/** Seeing the mesh beyond the terminal: `dashboard` (address and a one-time login code) and `report JOB`. */
import { resolve } from 'node:path'
import { jobIdArg } from '../config.ts'
import { printJson } from '../output.ts'
import type { CliContext } from '../cli-context.ts'

export function dashboardCommands (ctx: CliContext): void {
  const { program } = ctx
  program.command('dashboard')
    .description('the dashboard\'s address and a one-time login code for you (the coordinator runs with --dashboard)')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const d = await ctx.withClient(async client => await client.dashboard())
      if (o.json === true) return printJson(d)
      const port = new URL(d.url).port
      const until = new Date(d.expiresAt).toLocaleTimeString()
      console.log(`dashboard: ${d.url}`)
      console.log(`login code: ${d.code}   (works once, until ${until})`)
      console.log(`The address is on the coordinator's machine; from another one: ssh -L ${port}:127.0.0.1:${port} COORDINATOR-HOST, then open it here.`)
    })

  program.command('report')
    .description('summarise a job: durations, per-host throughput and utilisation, failures; writes its timeline as SVG and PNG')
    .argument('<job>', 'a job id')
    .option('--out <dir>', 'where the timeline pictures go (default: the current folder)')
    .option('--json', 'the summary as JSON, with the pictures\' paths')
    .action(async (job: string, o: { out?: string, json?: boolean }) => {
      const jobId = jobIdArg(job)
      const [{ reportCommand }, { reportInputFromMesh }] = await Promise.all([import('../report.ts'), import('../../shared/report/from-mesh.ts')])
      const input = await ctx.withClient(async client => await reportInputFromMesh(client, jobId))
      const text = await reportCommand(input.records, {
        outDir: resolve(o.out ?? '.'),
        json: o.json === true,
        jobId,
        name: input.name,
        slots: input.slots,
        earlier: input.earlier,
        stderrOf: r => input.stderr.get(r.index)
      })
      console.log(text)
      if (o.json !== true && input.state === 'active') {
        console.log(`note: job ${jobId} is still running: this covers the ${input.records.length} of ${input.total} tasks finished so far`)
      }
    })
}
