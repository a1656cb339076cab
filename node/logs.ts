/** Pieces of an attempt's captured stdout or stderr, for `meshfarm logs` (coord.logs -> agent.logs). */
import { open } from 'node:fs/promises'
import type { AgentMessage } from '../shared/protocol/messages.ts'
import type { LogRequest } from './agent-comm.ts'

export async function readLogPiece (path: string, req: LogRequest): Promise<AgentMessage> {
  const base = { t: 'agent.logs' as const, requestId: req.requestId, offset: req.offset }
  const fh = await open(path, 'r').catch(() => null)
  if (fh == null) return { ...base, data: new Uint8Array(0), eof: req.final, ...(req.final ? { error: 'no log kept for this attempt' } : {}) }
  try {
    const size = (await fh.stat()).size
    const want = Math.max(0, Math.min(req.maxBytes, size - req.offset))
    const data = Buffer.alloc(want)
    let got = 0
    while (got < want) {
      const { bytesRead } = await fh.read(data, got, want - got, req.offset + got)
      if (bytesRead === 0) break
      got += bytesRead
    }
    return { ...base, data: data.subarray(0, got), eof: req.final && req.offset + got >= size }
  } finally {
    await fh.close()
  }
}
