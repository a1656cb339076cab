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
import { ictasksRecord } from '../helpers/records.ts'

const record = ictasksRecord

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
