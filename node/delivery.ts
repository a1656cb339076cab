/**
 * Delivering results: small files ride inline (up to a budget per message), larger ones are uploaded as blobs
 * first, and no message leaves bigger than the coordinator's frame limit. A result whose files were lost or
 * changed since the task ended becomes a failed result saying so, instead of one that can never be delivered.
 */
import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import type { AgentMessage, AttemptResult, FileRef } from '../shared/protocol/messages.ts'
import { errorMessage, isMeshfarmError } from '../shared/util/errors.ts'
import { emptyRef, STDERR_NAME, STDOUT_NAME, type ResultEntry } from './results.ts'
import { readVerified } from './file-hash.ts'
import { fdPath, openInside, realDir } from './safe-fs.ts'
import { captureFiles, taskDir, type AgentPaths } from './work-dir.ts'

export interface DeliveryContext {
  paths: AgentPaths
  /** Uploads a file as a blob to the coordinator. */
  upload: (ref: FileRef, path: string) => Promise<void>
  /** Sends unless the frame would exceed the coordinator's limit (false: nothing was sent). */
  send: (msg: AgentMessage) => boolean
  inlineMaxBytes: number
  inlineBudgetBytes: number
}

class FilesChanged extends Error {}

/** Sends these results; resolves with those replaced by a failure. Rejects when an upload fails (retry later). */
export async function deliverResults (entries: ResultEntry[], ctx: DeliveryContext): Promise<AttemptResult[]> {
  const replaced: AttemptResult[] = []
  const ready: AttemptResult[] = []
  let budget = ctx.inlineBudgetBytes
  for (const e of entries) {
    try {
      const { result, inlined } = await withData(e, ctx, budget)
      budget -= inlined
      ready.push(result)
    } catch (err) {
      if (!(err instanceof FilesChanged)) throw err
      const r = lostFiles(e.result, err.message)
      replaced.push(r)
      ready.push(r)
    }
  }
  sendSized(ready, ctx, replaced)
  return replaced
}

/** One message if it fits the frame limit, else halves; a single result too large becomes a failure. */
function sendSized (results: AttemptResult[], ctx: DeliveryContext, replaced: AttemptResult[]): void {
  if (results.length === 0) return
  if (ctx.send({ t: 'agent.results', results })) return
  if (results.length === 1) {
    const r = results[0]
    const failed: AttemptResult = {
      ...r, state: 'failed', outputs: [], stdout: emptyRef(STDOUT_NAME), stderr: emptyRef(STDERR_NAME),
      failure: { kind: 'output', message: `result too large to report (${r.outputs.length} outputs)`, retryable: false }
    }
    replaced.push(failed)
    ctx.send({ t: 'agent.results', results: [failed] })
    return
  }
  const half = Math.ceil(results.length / 2)
  sendSized(results.slice(0, half), ctx, replaced)
  sendSized(results.slice(half), ctx, replaced)
}

function lostFiles (r: AttemptResult, why: string): AttemptResult {
  return {
    ...r, state: 'failed', outputs: [], stdout: emptyRef(STDOUT_NAME), stderr: emptyRef(STDERR_NAME),
    failure: { kind: 'internal', message: `the task's files were lost or changed before delivery (${why})`, retryable: true }
  }
}

async function withData (e: ResultEntry, ctx: DeliveryContext, budget: number): Promise<{ result: AttemptResult, inlined: number }> {
  const r = e.result
  const cap = captureFiles(ctx.paths, r.attemptId)
  const dir = taskDir(ctx.paths, r.attemptId)
  let inlined = 0
  let realRoot: string | null = null
  const one = async (ref: FileRef, path: string, output: boolean): Promise<FileRef> => {
    if (ref.size === 0) return { ...ref, data: new Uint8Array(0) }
    let fh: FileHandle
    if (output) {
      realRoot ??= await realDir(dir).catch(() => { throw new FilesChanged('task folder gone') })
      const f = await openInside(realRoot, path)
      const fp = e.fingerprints?.[ref.name]
      if (f == null) throw new FilesChanged(ref.name)
      if (fp != null && (f.size !== fp.size || f.ino !== fp.ino || f.mtimeMs !== fp.mtimeMs)) {
        await f.fh.close()
        throw new FilesChanged(ref.name)
      }
      fh = f.fh
    } else {
      fh = await open(path, 'r').catch(() => { throw new FilesChanged(ref.name) })
    }
    try {
      if (ref.size <= ctx.inlineMaxBytes && inlined + ref.size <= budget) {
        const data = await readVerified(fh, ref.hash, ref.size)
        if (data == null) throw new FilesChanged(ref.name)
        inlined += ref.size
        return { ...ref, data }
      }
      try {
        await ctx.upload(ref, fdPath(fh))
      } catch (err) {
        if (isMeshfarmError(err) && err.code === 'HASH_MISMATCH') throw new FilesChanged(`${ref.name}: ${errorMessage(err)}`)
        throw err
      }
      return ref
    } finally {
      await fh.close()
    }
  }
  const stdout = await one(r.stdout, cap.stdout, false)
  const stderr = await one(r.stderr, cap.stderr, false)
  const outputs: FileRef[] = []
  for (const o of r.outputs) outputs.push(await one(o, `${dir}/${o.name}`, true))
  return { result: { ...r, stdout, stderr, outputs }, inlined }
}
