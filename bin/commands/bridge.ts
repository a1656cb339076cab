/** `meshfarm bridge slurm`: an agent whose tasks run through Slurm; `meshfarm bridge resume`: lift a paused auto-allocation. */
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import type { MeshConfig } from '../../shared/local/mesh-config.ts'
import { MeshfarmError } from '../../shared/util/errors.ts'
import { parseDuration } from '../../shared/util/units.ts'
import type { BridgeFlags } from '../../node/bridge/slurm/bridge-config.ts'
import { checkAddrs, DEFAULTS } from '../config.ts'
import { collect, untilSignal, type CliContext } from '../cli-context.ts'

async function loadMesh (home: string): Promise<MeshConfig> {
  return (await import('../../shared/local/mesh-config.ts')).loadMeshConfig(home)
}

export function bridgeCommands (ctx: CliContext): void {
  const bridge = ctx.program.command('bridge').description('run the mesh\'s tasks through a batch system (Slurm)')
  bridge.command('slurm')
    .description('an agent whose tasks run in Slurm: forwarded as job arrays, as steps inside this allocation (--in-allocation), or in allocations it asks for (--auto-alloc)')
    .option('--partition <name>', 'the partition tasks go to (forward and --auto-alloc)')
    .option('--account <name>', 'the Slurm account to charge')
    .option('--max-jobs <n>', 'forward: tasks in Slurm at once, running or queued there (default 1000)')
    .option('--sbatch-arg <option>', 'an extra sbatch option, e.g. --qos=normal (repeatable)', collect, [])
    .option('--poll <duration>', 'how often to ask Slurm (one squeue per poll; default 5s, at least 1s)')
    .option('--work-dir <dir>', 'task folders, on a file system the cluster\'s nodes see (default ~/meshfarm-work)')
    .option('--throttle <n>', 'forward: elements of one job array running at once (%N)')
    .option('--in-allocation', 'inside salloc or an sbatch script: run tasks as srun steps in this allocation')
    .option('--auto-alloc <limits>', 'ask Slurm for allocations when the mesh has a backlog, e.g. max=4,time=2h,idle=5m')
    .option('--drain-before <duration>', 'allocations: hand back tasks that cannot finish this long before the end (default 2m)')
    .option('--label <key=value>', 'a label tasks can require, besides site=cluster and partition=<name> (repeatable)', collect, [])
    .option('--hostname <name>', 'name shown in peers (default <host>-slurm)')
    .option('--listen <multiaddr>', 'address to listen on (repeatable)', collect, [])
    .action(async (o: BridgeFlags & { listen: string[] }) => {
      const [{ compileBridge }, { startSlurmBridge }] = await Promise.all([import('../../node/bridge/slurm/bridge-config.ts'), import('../../node/bridge/bridge-agent.ts')])
      const config = compileBridge(o, { userHome: homedir() })
      const mesh = await loadMesh(ctx.home())
      const b = await startSlurmBridge({ config, mesh, listen: o.listen.length > 0 ? checkAddrs(o.listen, '--listen') : [...DEFAULTS.agentListen], log: line => { console.log(line) } })
      const ended = await untilSignal(b.stop, b.ended.then(() => 'ended' as const))
      if (ended === 'ended') {
        console.log('bridge: done; stopping')
        await b.stop()
      }
    })

  bridge.command('resume')
    .description('lift the pause of the auto-allocating bridge that runs from this state folder')
    .option('--wait <duration>', 'how long to wait for the bridge to take it', '30s')
    .action(async (o: { wait: string }) => {
      const waitMs = parseDuration(o.wait, '--wait')
      const mesh = await loadMesh(ctx.home())
      const { resumeFile } = await import('../../node/bridge/bridge-agent.ts')
      const file = resumeFile(mesh.home)
      writeFileSync(file, `${Date.now()}\n`)
      // The bridge looks at every poll; taking the file is its answer.
      for (let waited = 0; waited < waitMs; waited += 250) {
        if (!existsSync(file)) {
          console.log('bridge: resume taken; the bridge\'s log and `meshfarm peers` say what it does next')
          return
        }
        await sleep(250)
      }
      rmSync(file, { force: true })
      throw new MeshfarmError('NOT_FOUND', `no running bridge took the resume within ${o.wait} (is one running with --home ${mesh.home}?); a bridge that starts is not paused anyway`)
    })
}
