/**
 * Delivering results from real files: inline up to a budget per message, the rest as blobs, no message over the
 * frame limit, and a result whose files changed since the task ended becomes a failure instead of a wedge.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { deliverResults } from '../../node/delivery.ts'
import { encodeMessage } from '../../shared/protocol/codec.ts'
import { hashBytes } from '../../shared/files/hash.ts'
import { agentPaths, captureFiles, taskDir } from '../../node/work-dir.ts'
import { emptyRef, type ResultEntry } from '../../node/results.ts'
import type { AgentMessage, FileRef } from '../../shared/protocol/messages.ts'

function setup (): { paths: ReturnType<typeof agentPaths>, done: () => void } {
  const root = mkdtempSync(join(tmpdir(), 'meshfarm-delivery-'))
  const paths = agentPaths(join(root, 'home'), { uid: 0, workDir: join(root, 'work') })
  for (const d of [paths.capture, paths.tasks]) mkdirSync(d, { recursive: true })
  return { paths, done: () => { rmSync(root, { recursive: true, force: true }) } }
}

/** A finished attempt with `files` outputs of `size` bytes each, as collect would leave it. */
function attempt (paths: ReturnType<typeof agentPaths>, id: number, files: number, size: number): ResultEntry {
  const dir = taskDir(paths, id)
  mkdirSync(dir, { recursive: true })
  const cap = captureFiles(paths, id)
  writeFileSync(cap.stdout, 'hello\n')
  writeFileSync(cap.stderr, '')
  const outputs: FileRef[] = []
  const fingerprints: Record<string, { size: number, mtimeMs: number, ino: number }> = {}
  for (let i = 0; i < files; i++) {
    const data = Buffer.alloc(size, i % 251)
    const name = `out_${i}.bin`
    writeFileSync(join(dir, name), data)
    const st = statSync(join(dir, name))
    outputs.push({ name, hash: hashBytes(data), size })
    fingerprints[name] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino }
  }
  return {
    kind: 'result',
    fingerprints,
    result: { attemptId: id, jobId: 1, index: id, state: 'done', exitCode: 0, signal: null, startedAt: 1, endedAt: 2, stdout: { name: '.meshfarm/stdout', hash: hashBytes(Buffer.from('hello\n')), size: 6 }, stderr: emptyRef('.meshfarm/stderr'), outputs }
  }
}

function recorder (maxFrame: number): { sent: AgentMessage[], uploads: string[], send: (m: AgentMessage) => boolean, upload: (ref: FileRef) => Promise<void> } {
  const r = {
    sent: [] as AgentMessage[],
    uploads: [] as string[],
    send: (m: AgentMessage): boolean => {
      if (encodeMessage(m).byteLength - 4 > maxFrame) return false
      r.sent.push(m)
      return true
    },
    upload: async (ref: FileRef): Promise<void> => { r.uploads.push(ref.name) }
  }
  return r
}

test('200 outputs of 50 KB: inline up to the budget, the rest uploaded, every message under the limit', async () => {
  const { paths, done } = setup()
  try {
    const rec = recorder(8 << 20)
    const replaced = await deliverResults([attempt(paths, 1, 200, 50_000)], { paths, upload: rec.upload, send: rec.send, inlineMaxBytes: 64 << 10, inlineBudgetBytes: 4 << 20 })
    assert.deepEqual(replaced, [])
    assert.equal(rec.sent.length, 1)
    const msg = rec.sent[0]
    assert.equal(msg.t, 'agent.results')
    if (msg.t !== 'agent.results') return
    const inline = msg.results[0].outputs.filter(o => o.data != null)
    assert.equal(inline.length, Math.floor(((4 << 20) - 6) / 50_000), 'inline until the budget is spent')
    assert.equal(rec.uploads.length, 200 - inline.length)
    assert.ok(encodeMessage(msg).byteLength < 5 << 20)
    for (const o of inline) assert.equal(hashBytes(o.data!), o.hash)
  } finally { done() }
})

test('a batch too large for one frame is split; a single result too large fails with kind output', async () => {
  const { paths, done } = setup()
  try {
    const rec = recorder(150_000)
    const entries = [attempt(paths, 1, 2, 40_000), attempt(paths, 2, 2, 40_000)]
    await deliverResults(entries, { paths, upload: rec.upload, send: rec.send, inlineMaxBytes: 64 << 10, inlineBudgetBytes: 1 << 20 })
    assert.deepEqual(rec.sent.map(m => m.t === 'agent.results' ? m.results.map(r => r.attemptId) : []), [[1], [2]])
    const tiny = recorder(300)
    const replaced = await deliverResults([attempt(paths, 3, 20, 10)], { paths, upload: tiny.upload, send: tiny.send, inlineMaxBytes: 0, inlineBudgetBytes: 0 })
    assert.equal(replaced[0].failure?.kind, 'output')
    assert.match(replaced[0].failure?.message ?? '', /too large to report \(20 outputs\)/)
  } finally { done() }
})

test('an output changed or removed after the task ended turns the result into a failure saying so', async () => {
  const { paths, done } = setup()
  try {
    const rec = recorder(8 << 20)
    const changed = attempt(paths, 1, 2, 100)
    writeFileSync(join(taskDir(paths, 1), 'out_1.bin'), Buffer.alloc(100, 9)) // same size, new content and mtime
    const gone = attempt(paths, 2, 1, 100)
    rmSync(join(taskDir(paths, 2), 'out_0.bin'))
    const replaced = await deliverResults([changed, gone], { paths, upload: rec.upload, send: rec.send, inlineMaxBytes: 64 << 10, inlineBudgetBytes: 4 << 20 })
    assert.deepEqual(replaced.map(r => [r.attemptId, r.state, r.failure?.kind]), [[1, 'failed', 'internal'], [2, 'failed', 'internal']])
    assert.match(replaced[0].failure?.message ?? '', /lost or changed before delivery \(out_1\.bin\)/)
    assert.equal(rec.sent.length, 1, 'both still delivered, as failures')
  } finally { done() }
})
