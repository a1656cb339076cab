/**
 * ictasks reads task.json into a pydantic model (ictasks.task.read); where Python and pydantic are here, the same
 * field types read ours back. Skipped without them. (A process: so an integration test.)
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { placeRecord } from '../../shared/client/fetch.ts'
import type { TaskRecord } from '../../shared/protocol/messages.ts'

function record (over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    jobId: 7, index: 3, id: '7.3', name: 'task-3', commands: ['./sim 3'], state: 'done', host: 'ws-12', peerId: 'peer',
    resources: { cores: 2, gpus: [], memoryMb: 0 }, start: '2026-01-02T03:04:05.250Z', end: '2026-01-02T03:04:07.750Z',
    durationMs: 2500, exitCode: 0, signal: null, attempts: 1, outputs: [{ name: 'out.txt', hash: 'h1', size: 3 }],
    stdout: { name: '.meshfarm/stdout', hash: 'h2', size: 5 }, stderr: { name: '.meshfarm/stderr', hash: 'h3', size: 0 }, ...over
  }
}

const pydantic = spawnSync('python3', ['-c', 'import pydantic'], { stdio: 'ignore' }).status === 0
test('task.json reads back into a pydantic model with ictasks Task field types', { skip: !pydantic && 'python3 with pydantic not installed' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-ictasks-'))
  try {
    const p = placeRecord(dir, 'ictasks', record({ state: 'failed', exitCode: null, signal: 'SIGTERM' }), { hostId: 2 })
    mkdirSync(p.folder)
    writeFileSync(p.jsonPath, p.json)
    const script = `
import json, sys
from pydantic import BaseModel, Field
class Task(BaseModel):
    id: str
    launch_cmd: str = ""
    state: str = "created"
    return_code: int = 0
    launch_time: float = Field(default=0.0, ge=0.0)
    finish_time: float = Field(default=0.0, ge=0.0)
    worker_id: int = -1
    host_id: int = -1
    pid: int = Field(default=0, ge=0)
t = Task(**json.load(open(sys.argv[1])))
print(t.id, t.state, t.return_code, t.host_id, t.finish_time - t.launch_time)
`
    assert.equal(execFileSync('python3', ['-c', script, p.jsonPath], { encoding: 'utf8' }).trim(), '3 finished -15 2 2.5')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
