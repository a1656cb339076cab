/**
 * A mesh for bridge tests: a real coordinator process (bin/local-mesh.ts) and real `meshfarm bridge slurm`
 * processes against the real Slurm. The bridge's PATH starts with counting shims: each logs its call (time,
 * working folder, arguments) and execs the real command, so tests count sbatch and scancel where they happen.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { startMeshfarm, type MeshProcess } from '../../bin/processes.ts'
import { connect, type MeshClient } from '../../shared/client/client.ts'
import type { TaskRecord } from '../../shared/protocol/messages.ts'

export const WORK = '/tmp/meshfarm-slurm-tests'
const COUNTED = ['sbatch', 'scancel', 'squeue', 'srun']

export interface BridgeMesh {
  mesh: LocalMesh
  client: MeshClient
  dir: string
  /** Starts `meshfarm bridge slurm ARGS` with its own state folder (or the one given, for a restart). */
  bridge: (args: string[], o?: { home?: string, name?: string, env?: NodeJS.ProcessEnv, ready?: RegExp, wrap?: string[] }) => Promise<{ p: MeshProcess, home: string }>
  /** The shims' log: one line per call, `command cwd args`. */
  calls: (command: string) => string[]
  stop: () => Promise<void>
}

function shims (dir: string): { bin: string, log: string } {
  const bin = join(dir, 'shim-bin')
  const log = join(dir, 'slurm-calls.log')
  mkdirSync(bin, { recursive: true })
  for (const c of COUNTED) {
    const real = execFileSync('sh', ['-c', `command -v ${c}`], { encoding: 'utf8' }).trim()
    const script = `#!/bin/sh\nprintf '%s %s %s\\n' ${c} "$PWD" "$*" >> ${log}\nexec ${real} "$@"\n`
    writeFileSync(join(bin, c), script)
    chmodSync(join(bin, c), 0o755)
  }
  return { bin, log }
}

export async function bridgeMesh (name: string): Promise<BridgeMesh> {
  mkdirSync(WORK, { recursive: true })
  const dir = mkdtempSync(join(WORK, `${name}-`))
  const mesh = await startLocalMesh({ dir, coordinatorArgs: ['--agent-lost', '5s', '--heartbeat', '500ms', '--crash-limit', '3'], agents: [] })
  const client = await connect({ home: mesh.clientHome })
  const { bin, log } = shims(dir)
  const started: MeshProcess[] = []
  let n = 0
  return {
    mesh,
    client,
    dir,
    bridge: async (args, o = {}) => {
      const home = o.home ?? await mesh.newHome(o.name ?? `bridge${n++}`, { roles: ['agent'] })
      const p = startMeshfarm(['bridge', 'slurm', '--listen', '/ip4/127.0.0.5/tcp/0', '--work-dir', join(dir, 'work', home.split('/').pop()!), ...args], {
        home, env: { ...o.env, PATH: `${bin}:${process.env.PATH ?? ''}` }, logFile: join(dir, `${home.split('/').pop()!}.log`), wrap: o.wrap
      })
      started.push(p)
      await p.waitFor(o.ready ?? /agent: connected to coordinator/, 60_000)
      return { p, home }
    },
    calls: command => existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(l => l.startsWith(`${command} `)) : [],
    stop: async () => {
      await client.close()
      await Promise.all(started.map(async p => await p.stop()))
      await mesh.stop()
      if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
    }
  }
}

export async function allRecords (client: MeshClient, jobId: number): Promise<TaskRecord[]> {
  const out: TaskRecord[] = []
  let after = 0
  for (;;) {
    const page = await client.tasks(jobId, { after, limit: 1000 })
    out.push(...page.tasks)
    if (page.next == null) return out
    after = page.next
  }
}
