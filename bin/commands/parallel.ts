/**
 * `meshfarm parallel [options] COMMAND ::: args ...`: a GNU parallel command line run on the mesh. The words after
 * `parallel` reach parallel-args.ts untouched (passThroughOptions: `-j 4`, the user's own command's flags, even a
 * `--help` inside it); the job is built by parallel.ts, submitted, and followed: each task's stdout and stderr
 * printed as it ends (-k: in order), its files put beside the originals, its line appended to the joblog, the
 * --halt rule counted (parallel-halt.ts), and the exit status parallel's. Ctrl-C cancels the job.
 */
import { appendFileSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import type { FileRef, TaskRecord } from '../../shared/protocol/messages.ts'
import type { MeshClient } from '../../shared/client/client.ts'
import { parseParallelArgv, type ParallelOptions } from '../../shared/client/parallel-args.ts'
import { buildParallelJob, placeParallelRecord, type ParallelPlan } from '../../shared/client/parallel.ts'
import { formatJoblogLine, joblogEntry, joblogStart, resumeSkips } from '../../shared/client/joblog.ts'
import { countJob, exitStatus, newTally } from '../../shared/client/parallel-halt.ts'
import { Progress } from '../output.ts'
import type { CliContext } from '../cli-context.ts'
import { submitInterruptibly } from '../interruptible-submit.ts'

const HELP = `
GNU parallel's command line (20221122), run on the mesh:
  meshfarm parallel 'xz -k {}' ::: *.dat               files named by arguments are staged; new files come back beside them
  meshfarm parallel -j 2 --joblog jobs.log sim {1} {2} ::: 1 2 3 ::: a b
  meshfarm parallel --resume-failed --joblog jobs.log sim {1} {2} ::: 1 2 3 ::: a b
  ls *.txt | meshfarm parallel gzip                    arguments from standard input
Options: -j N (tasks at once per agent) or N% (cores per task), --joblog FILE, --resume, --resume-failed, --bar,
--return/--trc PATTERN, --halt SPEC, --dry-run, -k, -a FILE, --timeout SECONDS, --retries N, --transfer and --cleanup
(always so here); meshfarm's own --cores N, --gpus N, --memory SIZE, --name NAME. Sources: ::: args, :::: files,
:::+ and ::::+ linked. Replacement strings: {} {.} {/} {//} {/.} {#} {1} {2.} {-1} ...
Exit status: parallel's (the number of failed tasks, 101 for more than 100; --halt as parallel), or meshfarm's own
codes (2 bad input, 3 no coordinator, ...) when the job could not run at all.`

export function parallelCommand (ctx: CliContext): void {
  ctx.program.command('parallel')
    .description("run a command over arguments as GNU parallel does, on the mesh: meshfarm parallel 'xz -k {}' ::: *.dat")
    .argument('[words...]', "parallel's options, the command, and its ::: / :::: sources")
    // commander would answer a --help anywhere, even inside the user's command: only a leading one is ours.
    .helpOption(false)
    .allowUnknownOption()
    .passThroughOptions()
    .addHelpText('after', HELP)
    .action(async (words: string[], _o: unknown, cmd: Command) => {
      if (words[0] === '--help' || words[0] === '-h') return cmd.help()
      process.exitCode = await runParallel(ctx, words, process.cwd())
    })
}

/** Standard input, all of it (parallel reads its arguments from there when no source is given). */
function readStdinSync (): string {
  if (process.stdin.isTTY === true) process.stderr.write('meshfarm parallel: reading arguments from the terminal, one per line; Ctrl-D ends them\n')
  return readFileSync(0, 'utf8')
}

export async function runParallel (ctx: CliContext, words: string[], cwd: string): Promise<number> {
  const argv = parseParallelArgv(words, { readArgFile: p => readFileSync(resolve(cwd, p), 'utf8'), readStdin: readStdinSync })
  const o = argv.options
  const joblog = o.joblog != null ? resolve(cwd, o.joblog) : null
  const existing = joblog != null && existsSync(joblog) ? readFileSync(joblog, 'utf8') : null
  const resuming = o.resume || o.resumeFailed
  const skip = resuming && existing != null ? resumeSkips(existing, o.joblog ?? '', o.resume ? 'resume' : 'resume-failed') : new Set<number>()
  const plan = buildParallelJob(argv, { cwd, isFile: p => statSync(p, { throwIfNoEntry: false })?.isFile() === true }, skip)
  if (o.dryRun) {
    for (const t of plan.job.tasks) process.stdout.write(`${t.commands[0]}\n`)
    return 0
  }
  if (plan.job.tasks.length === 0) return 0 // the joblog has them all
  return await ctx.withClient(async client => await followOnMesh(client, plan, o, cwd, joblog, existing, resuming))
}

/** Prints each task's stdout and stderr as a whole once it has ended; with -k in task order, as parallel -k. */
class Printer {
  private readonly waiting = new Map<number, { out: Buffer, err: Buffer }>()
  private next = 0
  private readonly inOrder: boolean
  constructor (inOrder: boolean) { this.inOrder = inOrder }

  add (index: number, out: Buffer, err: Buffer): void {
    if (!this.inOrder) return this.write(out, err)
    this.waiting.set(index, { out, err })
    for (let w = this.waiting.get(this.next); w != null; w = this.waiting.get(this.next)) {
      this.waiting.delete(this.next++)
      this.write(w.out, w.err)
    }
  }

  /** What is still held back (tasks that never ran leave gaps): in order. */
  flush (): void {
    for (const i of [...this.waiting.keys()].sort((a, b) => a - b)) this.write(this.waiting.get(i)!.out, this.waiting.get(i)!.err)
    this.waiting.clear()
  }

  private write (out: Buffer, err: Buffer): void {
    if (err.length > 0) process.stderr.write(err)
    if (out.length > 0) process.stdout.write(out)
  }
}

/** A file here with exactly a returned file's contents (an input sent back unchanged): not downloaded again. */
function sameFile (path: string, ref: FileRef): boolean {
  const st = statSync(path, { throwIfNoEntry: false })
  if (st == null || !st.isFile() || st.size !== ref.size) return false
  const h = createHash('sha256')
  const fd = openSync(path, 'r')
  try {
    const buf = Buffer.alloc(1 << 20)
    for (let n = readSync(fd, buf); n > 0; n = readSync(fd, buf)) h.update(buf.subarray(0, n))
  } finally {
    closeSync(fd)
  }
  return h.digest('hex') === ref.hash
}

function readOrEmpty (path: string): Buffer {
  return existsSync(path) ? readFileSync(path) : Buffer.alloc(0)
}

async function followOnMesh (client: MeshClient, plan: ParallelPlan, o: ParallelOptions, cwd: string, joblog: string | null, existing: string | null, resuming: boolean): Promise<number> {
  const { jobId } = await submitInterruptibly(client, plan.job)
  if (joblog != null) {
    const start = joblogStart(existing, resuming)
    if (start.append) appendFileSync(joblog, start.text)
    else writeFileSync(joblog, start.text)
  }
  const sent = plan.job.tasks.map(t => t.inputs.reduce((n, i) => n + statSync(i.src).size, 0))
  const meta = mkdtempSync(join(tmpdir(), 'meshfarm-parallel-'))
  const printer = new Printer(o.keepOrder)
  const bar = o.bar ? new Progress('parallel') : null
  let tally = newTally(plan.job.tasks.length)
  let stopping: 'halt' | 'interrupt' | null = null
  const stop = (why: 'halt' | 'interrupt'): void => {
    if (stopping != null) return
    stopping = why
    void client.cancel(jobId).catch(err => { process.stderr.write(`meshfarm parallel: could not cancel job ${jobId}: ${String(err)}\n`) })
  }
  const onInterrupt = (): void => {
    process.stderr.write(`meshfarm parallel: cancelling job ${jobId} (Ctrl-C again to stop waiting for it)\n`)
    stop('interrupt')
  }
  process.once('SIGINT', onInterrupt)
  const onTask = (r: TaskRecord): void => {
    const task = plan.job.tasks[r.index]
    // A task the halt (or Ctrl-C) stopped did not run to its end: not logged, so --resume runs it again.
    const entry = r.state === 'cancelled' && stopping != null ? null : joblogEntry(r, plan.seqOf[r.index], task.commands[0], sent[r.index])
    printer.add(r.index, readOrEmpty(join(meta, `${r.name}.stdout`)), readOrEmpty(join(meta, `${r.name}.stderr`)))
    if (entry == null) return
    if (joblog != null) appendFileSync(joblog, formatJoblogLine(entry))
    if (r.failure != null && r.failure.kind !== 'exit') process.stderr.write(`meshfarm parallel: ${task.commands[0]}: ${r.failure.message}\n`)
    tally = countJob(o.halt, tally, entry)
    bar?.update(tally.finished, tally.total, `${tally.failed} failed`)
    if (tally.haltedWith != null && stopping == null) {
      process.stderr.write(`meshfarm parallel: --halt: ${tally.failed} failed of ${tally.finished} ended: cancelling the job\n`)
      stop('halt')
    }
  }
  try {
    await client.fetch(jobId, meta, { follow: true, place: r => placeParallelRecord(cwd, meta, r, sameFile), onTask })
  } finally {
    process.off('SIGINT', onInterrupt)
    bar?.stop()
    printer.flush()
    rmSync(meta, { recursive: true, force: true })
  }
  return stopping === 'interrupt' ? 130 : exitStatus(o.halt, tally)
}
