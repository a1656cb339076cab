/** Long-running services: the coordinator and the agent. */
import { loadMeshConfig } from '../../shared/local/mesh-config.ts'
import { MeshfarmError } from '../../shared/util/errors.ts'
import { parseWholeNumber } from '../../shared/util/units.ts'
import { Coordinator } from '../../coordinator/coordinator.ts'
import { startAgent } from '../../node/agent.ts'
import { detectResources, parseGpuList, parseLabels, parseMemoryFlag } from '../../node/resources.ts'
import { checkAddrs, compileCoordinator, DEFAULTS, type CoordinatorFlags } from '../config.ts'
import { collect, untilSignal, type CliContext } from '../cli-context.ts'

export function serviceCommands (ctx: CliContext): void {
  const { program } = ctx
  program.command('coordinator')
    .description('run the coordinator: the queue, the agent registry and the scheduler')
    .option('--listen <multiaddr>', 'address to listen on (repeatable; default /ip4/0.0.0.0/tcp/7341)', collect, [])
    .option('--agent-lost <duration>', 'silence after which an agent is declared lost (default 15s)')
    .option('--heartbeat <duration>', 'agent heartbeat interval (default 2s)')
    .option('--crash-limit <n>', 'attempts that die with their agent before a task fails (default 3)')
    .option('--prefetch <n>', 'tasks an agent may hold beyond its slots (default 1)')
    .option('--dashboard [port]', `serve the dashboard on 127.0.0.1 (default port ${DEFAULTS.dashboardPort}; 0: any free port)`)
    .action(async (o: CoordinatorFlags) => {
      const settings = compileCoordinator(o, process.env)
      const mesh = loadMeshConfig(ctx.home())
      const coordinator = await Coordinator.start({ mesh, ...settings, listen: [...settings.listen], log: line => { console.log(line) } })
      console.log(`coordinator: ready as ${coordinator.node.peerId.toString()}`)
      const failure = await untilSignal(async () => { await coordinator.stop() }, coordinator.ended)
      if (failure != null) throw failure
    })

  program.command('agent')
    .description('lend this machine to the mesh: advertise its cores, memory and GPUs and run tasks')
    .option('--listen <multiaddr>', 'address to listen on (repeatable)', collect, [])
    .option('--cores <n>', 'cores to offer (default: all logical cores)')
    .option('--memory <size>', 'memory to offer, e.g. 16G (default: all)')
    .option('--gpus <ids>', 'GPU ids to offer, e.g. 0,1 or none (default: detected)')
    .option('--slots <n>', 'tasks at once (default: cores)')
    .option('--label <key=value>', 'a label tasks can require (repeatable)', collect, [])
    .option('--hostname <name>', 'name to report (default: the machine\'s)')
    .option('--allow-root', 'run tasks as root (refused by default)')
    .action(async (o: { listen: string[], cores?: string, memory?: string, gpus?: string, slots?: string, label: string[], hostname?: string, allowRoot?: boolean }) => {
      const resources = await detectResources({
        cores: o.cores != null ? parseWholeNumber(o.cores, '--cores', 1, 4096) : undefined,
        slots: o.slots != null ? parseWholeNumber(o.slots, '--slots', 1, 4096) : undefined,
        memoryMb: o.memory != null ? parseMemoryFlag(o.memory) : undefined,
        gpus: o.gpus != null ? parseGpuList(o.gpus) : undefined,
        labels: parseLabels(o.label),
        hostname: o.hostname
      })
      const mesh = loadMeshConfig(ctx.home())
      if (resources.runsAsRoot) {
        if (o.allowRoot !== true) throw new MeshfarmError('FORBIDDEN', 'this agent runs as root and would run every task as root: run it as an ordinary user, or pass --allow-root')
        console.log('agent: WARNING: running as root: tasks run as root (--allow-root)')
      }
      const agent = await startAgent({ mesh, listen: o.listen.length > 0 ? checkAddrs(o.listen, '--listen') : [...DEFAULTS.agentListen], resources })
      await untilSignal(agent.stop, agent.drained.then(async () => { await agent.stop() }))
    })
}
