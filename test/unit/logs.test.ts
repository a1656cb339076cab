/** Pieces of a captured log for `meshfarm logs`: offsets, caps, the end of a finished attempt's file. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readLogPiece } from '../../node/logs.ts'
import { logRead } from '../../node/agent-comm.ts'

test('a piece from an offset, capped; eof only once a finished attempt\'s file is read to its end', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-logs-'))
  try {
    const path = join(dir, '1.out')
    writeFileSync(path, 'abcdefghij')
    const base = { requestId: 4, attemptId: 1, stream: 'stdout' as const }
    const mid = await readLogPiece(path, { ...base, offset: 2, maxBytes: 3, final: true })
    assert.deepEqual(mid.t === 'agent.logs' && [Buffer.from(mid.data).toString(), mid.offset, mid.eof], ['cde', 2, false])
    const end = await readLogPiece(path, { ...base, offset: 7, maxBytes: 100, final: true })
    assert.deepEqual(end.t === 'agent.logs' && [Buffer.from(end.data).toString(), end.eof], ['hij', true])
    const running = await readLogPiece(path, { ...base, offset: 7, maxBytes: 100, final: false })
    assert.equal(running.t === 'agent.logs' && running.eof, false, 'a running task may write more')
    const gone = await readLogPiece(join(dir, 'nope'), { ...base, offset: 0, maxBytes: 10, final: true })
    assert.match(gone.t === 'agent.logs' ? gone.error ?? '' : '', /no log kept/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('requests are checked: no piece for an attempt that never ran, offsets and sizes bounded', () => {
  const req = { t: 'coord.logs' as const, requestId: 1, attemptId: 2, stream: 'evil' as 'stdout', offset: -5, maxBytes: 1e12 }
  assert.equal(logRead(req, false, false, 1024), null)
  assert.deepEqual(logRead(req, true, true, 1024), { requestId: 1, attemptId: 2, stream: 'stdout', offset: 0, maxBytes: 1024, final: true })
})
