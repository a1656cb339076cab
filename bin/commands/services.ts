/** Long-running services: the coordinator and the agent (and the agent's systemd unit). */
import { readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { userInfo } from 'node:os'
import { fileURLToPath } from 'node:url'
import { MeshfarmError } from '../../shared/util/errors.ts'
import { compileAgent, compileAgentEnv, compileCoordinator, DEFAULTS, type CoordinatorFlags } from '../config.ts'
import { collect, untilSignal, type CliContext } from '../cli-context.ts'
import { agentService, type AgentFlags } from './agent-service.ts'
import { addMachineOptions, machineFromFlags } from './harvest.ts'

/** bin/meshfarm, the wrapper that finds Node 24 wherever npm put it: what a unit starts. */
const EXECUTABLE = fileURLToPath(new URL('../meshfarm', import.meta.url))

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
      const { loadMeshConfig } = await import('../../shared/local/mesh-config.ts')
      const mesh = loadMeshConfig(ctx.home())
      // The services load what they run only when started: the CLI's other commands stay quick.
      const { Coordinator } = await import('../../coordinator/coordinator.ts')
      const coordinator = await Coordinator.start({ mesh, ...settings, listen: [...settings.listen], log: line => { console.log(line) } })
      console.log(`coordinator: ready as ${coordinator.node.peerId.toString()}`)
      const failure = await untilSignal(async () => { await coordinator.stop() }, coordinator.ended)
      if (failure != null) throw failure
    })

  addMachineOptions(program.command('agent'))
    .description('lend this machine to the mesh: advertise its cores, memory and GPUs and run tasks')
    .option('--listen <multiaddr>', 'address to listen on (repeatable)', collect, [])
    .option('--cores <n>', 'cores to offer (default: all logical cores)')
    .option('--memory <size>', 'memory to offer, e.g. 16G (default: all)')
    .option('--gpus <ids>', 'GPU ids to offer, e.g. 0,1 or none (default: detected)')
    .option('--slots <n>', 'tasks at once (default: cores)')
    .option('--label <key=value>', 'a label tasks can require (repeatable)', collect, [])
    .option('--hostname <name>', 'name to report (default: the machine\'s)')
    .option('--allow-root', 'run the agent as root (refused by default); its tasks run as slot users')
    .option('--isolation <mode>', 'how tasks are kept from the mesh\'s keys: auto, namespace, slot-users, bubblewrap or none', 'auto')
    .option('--work-dir <dir>', 'where task folders go (default /var/tmp/meshfarm-<uid>); never inside the state folder')
    .option('--install-service', 'write a systemd unit that runs this agent, with these flags, across reboots, and enable it')
    .option('--uninstall-service', 'stop, disable and remove the agent\'s systemd unit')
    .option('--service-user <name>', 'as root: the account the agent runs as (default: the user sudo was run by)')
    .action(async (o: AgentFlags & { installService?: boolean, uninstallService?: boolean }) => {
      if (o.installService === true || o.uninstallService === true) {
        if (o.installService === true && o.uninstallService === true) throw new MeshfarmError('BAD_ARGUMENT', '--install-service and --uninstall-service: give one of them')
        const me = userInfo()
        const said = agentService(o.installService === true ? 'install' : 'uninstall', o, { path: ctx.home(), given: ctx.program.opts().home != null || process.env.MESHFARM_HOME != null }, EXECUTABLE, {
          root: '/',
          run: cmd => { const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8' }); return { status: r.status ?? 1, stderr: r.stderr ?? String(r.error ?? '') } },
          uid: me.uid,
          userName: me.username,
          homeDir: me.homedir,
          sudoUser: process.env.SUDO_USER,
          passwd: () => readFileSync('/etc/passwd', 'utf8')
        })
        for (const line of said) console.log(`agent: ${line}`)
        return
      }
      if (o.serviceUser != null) throw new MeshfarmError('BAD_ARGUMENT', '--service-user: only with --install-service')
      const settings = compileAgent(o)
      const machine = machineFromFlags(o)
      const [{ detectResources }, { startAgent }] = await Promise.all([import('../../node/resources.ts'), import('../../node/agent.ts')])
      const fromEnv = compileAgentEnv(process.env)
      const { gpus, labels, ...offer } = settings.offer
      const resources = await detectResources({ detectGpus: fromEnv.detectGpus, ...offer, labels: { ...labels }, ...(gpus != null ? { gpus: [...gpus] } : {}) })
      const { loadMeshConfig } = await import('../../shared/local/mesh-config.ts')
      const mesh = loadMeshConfig(ctx.home())
      if (resources.runsAsRoot && !settings.allowRoot) {
        throw new MeshfarmError('FORBIDDEN', 'this agent runs as root and would run its tasks as slot users it creates (or as root with --isolation none): run it as an ordinary user, or pass --allow-root')
      }
      const listen = settings.listen.length > 0 ? [...settings.listen] : [...DEFAULTS.agentListen]
      const agent = await startAgent({ mesh, listen, resources, isolation: settings.isolation, workDir: settings.workDir, machine, launcher: { kind: fromEnv.launcher, cc: fromEnv.cc } })
      if (resources.runsAsRoot && agent.isolation.mode === 'none') console.log('agent: WARNING: running as root with --isolation none: tasks run as root')
      await untilSignal(agent.stop, agent.drained.then(async () => { await agent.stop() }))
    })
}
