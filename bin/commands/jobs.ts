/** Commands about jobs and the mesh's state: submit, status, peers, cancel, fetch, watch, logs, why, hold. */
import { Option } from 'commander'
import { resolve, join, basename } from 'node:path'
import type { MeshClient } from '../../shared/client/client.ts'
import type { JobSummary } from '../../shared/protocol/data.ts'
import type { ParsedJob } from '../../shared/client/spec.ts'
import { eventLine, jobsTable, peersTable, printJson, Progress, summaryLine, tasksTable, whyTable } from '../output.ts'
import { compileFetch, compileSubmitOverrides, jobIdArg, taskArg, type SubmitFlags } from '../config.ts'
import { collect, readStdin, type CliContext } from '../cli-context.ts'
import { parseWholeNumber } from '../../shared/util/units.ts'
import { MeshfarmError } from '../../shared/util/errors.ts'
import { submitInterruptibly } from '../interruptible-submit.ts'

/** Follows a job with a progress bar and fetches its results as they arrive. */
async function waitAndFetch (client: MeshClient, jobId: number, dest: string, json: boolean): Promise<JobSummary> {
  const bar = json ? null : new Progress(`job ${jobId}`)
  const watching = client.watch(jobId, s => {
    bar?.update(s.counts.done + s.counts.failed + s.counts.cancelled, s.total, `${s.counts.running + s.counts.staging} running, ${s.counts.failed} failed`)
  })
  const fetching = client.fetch(jobId, dest, { follow: true })
  const [summary] = await Promise.all([watching, fetching])
  bar?.stop()
  return summary
}

/** The end of a failed task's stderr, for the summary of a failed job. */
async function stderrTail (client: MeshClient, jobId: number, index: number): Promise<string> {
  const chunks: Uint8Array[] = []
  await client.logs(jobId, index, { stream: 'stderr' }, d => { chunks.push(d) })
  const text = Buffer.concat(chunks).toString('utf8').trimEnd()
  return text.split('\n').slice(-3).join(' | ').slice(-300)
}

async function printFailures (client: MeshClient, s: JobSummary): Promise<void> {
  for (const f of s.failures ?? []) {
    const tail = await stderrTail(client, s.jobId, f.index).catch(() => '')
    console.log(`  task ${s.jobId}.${f.index} ${f.name}: ${f.message}${tail !== '' ? `; stderr: ${tail}` : ''}`)
  }
  for (const m of s.missingOutputs ?? []) console.log(`  task ${s.jobId}.${m.index} ${m.name}: declared outputs never written: ${m.missing.join(', ')}`)
}

/** The job `submit` was given: a file, or standard input for `-` (paths in it relative to this folder). */
async function readJob (file: string, overrides: ReturnType<typeof compileSubmitOverrides>): Promise<ParsedJob> {
  const { parseJobFile, parseJobText } = await import('../../shared/client/spec.ts')
  if (file !== '-') return parseJobFile(file, overrides.spec, overrides.format)
  const text = await readStdin('type the tasklist (one command per line) or the YAML job, then press Ctrl-D:')
  return parseJobText(text, 'stdin', process.cwd(), overrides.spec, overrides.format)
}

export function jobCommands (ctx: CliContext): void {
  const { program, paint } = ctx
  program.command('submit')
    .description('submit a job: a YAML job file, an ictasks config, or a tasklist (one command per line)')
    .argument('<file>', 'job file (.yaml/.yml), tasklist, or - to read the job from standard input')
    .option('--wait', 'follow the job with a progress bar and fetch its results')
    .option('--results <dir>', 'where --wait puts the results (default: ./meshfarm-results/<name>-<job>)')
    .option('--cores <n>', 'cores per task (overrides the file)')
    .option('--gpus <n>', 'GPUs per task')
    .option('--memory <size>', 'memory per task, e.g. 2G')
    .option('--timeout <duration>', 'time limit per task, e.g. 10m')
    .option('--retries <n>', 'retries for tasks that exit non-zero')
    .option('--name <name>', 'job name')
    .option('--priority <n>', 'order among your own jobs, -1000..1000 (higher first; fair share decides between people)')
    .option('--allow-unplaceable', 'keep tasks no agent of the mesh can run today, for agents yet to come')
    .addOption(new Option('--layout <layout>', 'results layout').choices(['per-task', 'flat', 'ictasks']))
    .addOption(new Option('--format <format>', 'read the job as yaml or tasklist (default: by the file\'s extension; from stdin: by its first line)').choices(['yaml', 'tasklist']))
    .option('--input <file>', 'a file staged into every task\'s folder at the same relative path (repeatable)', collect, [])
    .option('--output <glob>', 'a name or glob brought back from every task (repeatable)', collect, [])
    .option('--shared <file>', 'a file staged once per machine into the job folder (repeatable)', collect, [])
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: SubmitFlags & { wait?: boolean, results?: string, json?: boolean }) => {
      const overrides = compileSubmitOverrides(o, process.cwd())
      const job = await readJob(file, overrides)
      await ctx.withClient(async client => {
        const { jobId, total } = await submitInterruptibly(client, job, overrides.job)
        if (o.wait !== true) {
          if (o.json === true) printJson({ jobId, total })
          else console.log(`submitted job ${jobId} (${job.name}) with ${total} tasks`)
          return
        }
        const dest = resolve(o.results ?? join('meshfarm-results', `${job.name}-${jobId}`))
        if (o.json !== true) console.log(`submitted job ${jobId} (${job.name}) with ${total} tasks; results go to ${dest}`)
        const summary = await waitAndFetch(client, jobId, dest, o.json === true)
        if (o.json === true) printJson({ jobId, results: dest, summary })
        else {
          console.log(summaryLine(summary, paint))
          await printFailures(client, summary)
          console.log(`results: ${dest}`)
        }
        if (summary.state !== 'done') process.exitCode = 1
      })
    })

  program.command('status')
    .description('jobs on the mesh, or one job\'s tasks')
    .argument('[job]', 'a job id')
    .option('--tasks', 'list the job\'s tasks')
    .option('--here', 'this workstation instead: what runs here, for whom, and why it is lent or not')
    .option('--socket <path>', 'with --here: the local agent\'s owner socket')
    .option('--json', 'machine-readable output')
    .action(async (job: string | undefined, o: { tasks?: boolean, here?: boolean, socket?: string, json?: boolean }) => {
      if (o.here === true || o.socket != null) {
        if (o.here !== true) throw new MeshfarmError('BAD_ARGUMENT', '--socket: only with --here')
        if (job != null || o.tasks === true) throw new MeshfarmError('BAD_ARGUMENT', '--here: shows this workstation, not a job: give no JOB or --tasks')
        const { statusHere } = await import('./harvest.ts')
        return await statusHere(ctx, o)
      }
      const jobId = job != null ? jobIdArg(job) : undefined
      await ctx.withClient(async client => {
        const jobs = await client.status(jobId)
        if (jobId != null && o.tasks === true) {
          const tasks = []
          let after: number | null = 0
          while (after != null) {
            const page = await client.tasks(jobId, { after })
            tasks.push(...page.tasks)
            after = page.next
          }
          if (o.json === true) return printJson({ job: jobs[0], tasks })
          return console.log(`${summaryLine(jobs[0], paint)}\n${tasksTable(tasks, paint)}`)
        }
        if (o.json === true) return printJson(jobs)
        console.log(jobs.length === 0 ? 'no jobs' : jobsTable(jobs, paint))
        if (jobId != null) {
          await printFailures(client, jobs[0])
          if (jobs[0].state === 'active') console.log(whyTable(await client.why(jobId), paint))
        }
      })
    })

  program.command('peers')
    .description('agents on the mesh with their resources, state, owner presence and backend')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const agents = await ctx.withClient(async client => await client.peers())
      if (o.json === true) return printJson(agents)
      console.log(agents.length === 0 ? 'no agents' : peersTable(agents, paint))
    })

  program.command('cancel')
    .description('cancel a job: queued tasks are dropped, running ones stopped')
    .argument('<job>', 'a job id')
    .option('--json', 'machine-readable output')
    .action(async (job: string, o: { json?: boolean }) => {
      const jobId = jobIdArg(job)
      const n = await ctx.withClient(async client => await client.cancel(jobId))
      if (o.json === true) return printJson({ jobId, cancelled: n })
      console.log(`job ${jobId}: ${n} task(s) cancelled`)
    })

  for (const release of [false, true]) {
    program.command(release ? 'release' : 'hold')
      .description(release ? 'let a held job or task run again' : 'keep a job (or one of its waiting tasks) from starting until released')
      .argument('<job>', 'a job id, or JOB.TASK')
      .argument('[task]', 'a task index')
      .option('--json', 'machine-readable output')
      .action(async (job: string, task: string | undefined, o: { json?: boolean }) => {
        const { jobId, index } = taskArg(job, task)
        const n = await ctx.withClient(async client => await client.hold(jobId, index, release))
        if (o.json === true) return printJson({ jobId, index, tasks: n })
        console.log(`${index != null ? `task ${jobId}.${index}` : `job ${jobId}`}: ${release ? 'released' : 'held'} (${n} task(s) waiting)`)
      })
  }

  program.command('fetch')
    .description('bring a job\'s results here; resumes a broken download')
    .argument('<job>', 'a job id')
    .option('--dest <dir>', 'results folder (default: ./meshfarm-results/<name>-<job>)')
    .addOption(new Option('--layout <layout>', 'lay the results out otherwise than the job says (ictasks: task_<id>/task.json)').choices(['per-task', 'flat', 'ictasks']))
    .option('--json', 'machine-readable output')
    .action(async (job: string, o: { dest?: string, layout?: string, json?: boolean }) => {
      const jobId = jobIdArg(job)
      const flags = compileFetch(o)
      await ctx.withClient(async client => {
        const { job: header } = await client.job(jobId)
        const dest = resolve(o.dest ?? join('meshfarm-results', `${basename(header.name)}-${jobId}`))
        const bar = o.json === true ? null : new Progress(`fetch ${jobId}`)
        const report = await client.fetch(jobId, dest, { ...flags, onProgress: p => bar?.update(p.tasks, p.total, `${(p.bytes / 1e6).toFixed(1)} MB`) })
        bar?.stop()
        if (o.json === true) return printJson(report)
        console.log(`fetched ${report.tasks} task(s) (${report.skipped} already here, ${report.files} files, ${(report.bytes / 1e6).toFixed(1)} MB) into ${dest}`)
      })
    })

  program.command('watch')
    .description('stream the mesh\'s events as they happen (one job\'s with JOB); resumes after a reconnect')
    .argument('[job]', 'a job id')
    .option('--since <seq>', 'start after this event number (default: only new events; 0: all kept)')
    .option('--json', 'one JSON object per line')
    .action(async (job: string | undefined, o: { since?: string, json?: boolean }) => {
      const jobId = job != null ? jobIdArg(job) : undefined
      const after = o.since != null ? parseWholeNumber(o.since, '--since', 0, Number.MAX_SAFE_INTEGER) : Number.MAX_SAFE_INTEGER
      const abort = new AbortController()
      process.once('SIGINT', () => { abort.abort() })
      await ctx.withClient(async client => {
        await client.events({ after, jobId, follow: true, signal: abort.signal }, events => {
          for (const e of events) {
            process.stdout.write(o.json === true ? JSON.stringify(e) + '\n' : eventLine(e) + '\n')
            if (jobId != null && e.type === 'job.done' && e.jobId === jobId) abort.abort()
          }
        })
      })
    })

  program.command('logs')
    .description('a task\'s output while it runs, from whichever agent runs it, and after it ends')
    .argument('<job>', 'a job id, or JOB.TASK')
    .argument('[task]', 'a task index')
    .option('-f, --follow', 'keep printing as the task writes, until it ends')
    .option('--stderr', 'the task\'s stderr instead of its stdout')
    .action(async (job: string, task: string | undefined, o: { follow?: boolean, stderr?: boolean }) => {
      const { jobId, index } = taskArg(job, task)
      await ctx.withClient(async client => {
        await client.logs(jobId, index ?? 0, { stream: o.stderr === true ? 'stderr' : 'stdout', follow: o.follow === true }, d => { process.stdout.write(d) })
      })
    })

  program.command('why')
    .description('why a job\'s tasks (or one task) are not running, in plain words')
    .argument('<job>', 'a job id, or JOB.TASK')
    .argument('[task]', 'a task index')
    .option('--json', 'machine-readable output')
    .action(async (job: string, task: string | undefined, o: { json?: boolean }) => {
      const { jobId, index } = taskArg(job, task)
      const reasons = await ctx.withClient(async client => await client.why(jobId, index))
      if (o.json === true) return printJson(reasons)
      if (reasons.length === 0) return console.log('nothing is waiting')
      // One reason for the whole job (it has ended): a sentence, not a table with an empty task column.
      if (reasons.length === 1 && reasons[0].index == null) return console.log(`job ${jobId}: ${reasons[0].reason}`)
      console.log(whyTable(reasons, paint))
    })
}
