/**
 * The meshfarm command line. Each subcommand parses its flags, calls the API (shared/client/client.ts) or starts a
 * service, and hands the result to the output layer. A user mistake is one `error:` line and an exit code:
 * 0 ok, 1 some task failed, 2 bad input, 3 no mesh/coordinator, 4 protocol, 5 not found, 6 forbidden,
 * 7 unsafe file, 8 disk.
 */
import { Command, Option } from 'commander'
import { resolve, join, basename } from 'node:path'
import { isMeshfarmError, errorMessage, MeshfarmError } from '../shared/util/errors.ts'
import { resolveHome } from '../shared/local/home.ts'
import { initMesh, loadMeshConfig } from '../shared/local/mesh-config.ts'
import { connect, type MeshClient } from '../shared/client/client.ts'
import { startCoordinator } from '../coordinator/service.ts'
import { startAgent } from '../node/agent.ts'
import { parseIsolationFlag } from '../node/isolation.ts'
import { detectResources, parseGpuList, parseLabels, parseMemoryFlag } from '../node/resources.ts'
import { parseDuration, parseMemory, type SpecDefaults } from '../shared/client/spec.ts'
import { jobsTable, peersTable, printJson, Progress, summaryLine, table, tasksTable } from './output.ts'
import { readFileSync } from 'node:fs'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateIdentity } from '../shared/local/identity.ts'
import { decodeInvite } from '../shared/local/invite.ts'
import { joinMesh } from '../shared/local/join.ts'
import { runDemo } from './demo.ts'
import { VERSION } from '../shared/util/version.ts'
import type { JobSummary } from '../shared/protocol/messages.ts'

const program = new Command()
program
  .name('meshfarm')
  .description('A peer-to-peer worker mesh for research labs: task farms and parameter sweeps over encrypted libp2p streams.')
  .version(VERSION)
  .option('--home <dir>', 'state folder (default: $MESHFARM_HOME or ~/.meshfarm)')
  .showHelpAfterError()

function home (): string {
  return resolveHome(program.opts().home)
}

async function withClient<T> (fn: (c: MeshClient) => Promise<T>): Promise<T> {
  const client = await connect({ home: home() })
  try {
    return await fn(client)
  } finally {
    await client.close()
  }
}

async function readStdin (): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('paste the invite, then press Enter and Ctrl-D:\n')
  let text = ''
  for await (const chunk of process.stdin) text += String(chunk)
  return text
}

function jobIdArg (v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new MeshfarmError('BAD_ARGUMENT', `not a job id: ${JSON.stringify(v)}`)
  return n
}

function collect (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

/** Waits for SIGINT/SIGTERM, then stops the service within a grace period. */
function untilSignal (stop: () => Promise<void>, extra?: Promise<void>): Promise<void> {
  return new Promise(resolvePromise => {
    let stopping = false
    const done = async (): Promise<void> => {
      if (stopping) return
      stopping = true
      const force = setTimeout(() => process.exit(0), 10_000)
      force.unref()
      await stop().catch(() => {})
      resolvePromise()
    }
    process.once('SIGINT', () => { void done() })
    process.once('SIGTERM', () => { void done() })
    void extra?.then(done)
  })
}

program.command('init')
  .description('create a new mesh with this machine as its coordinator: a swarm key (no key, no connection) and this machine\'s identity')
  .option('--bootstrap <multiaddr>', 'a peer to dial at start (repeatable)', collect, [])
  .option('--no-mdns', 'do not look for peers on the LAN')
  .option('--json', 'machine-readable output')
  .action(async (o: { bootstrap: string[], mdns: boolean, json?: boolean }) => {
    const peerId = peerIdFromPrivateKey(await loadOrCreateIdentity(home())).toString()
    initMesh(home(), { bootstrap: o.bootstrap, mdns: o.mdns, coordinator: peerId })
    const out = { home: home(), coordinator: peerId }
    if (o.json === true) printJson(out)
    else {
      console.log(`created a mesh in ${out.home}; this machine (${peerId}) is its coordinator`)
      console.log("next: 'meshfarm coordinator' here, then 'meshfarm invite --role agent' for each workstation")
    }
  })

program.command('invite')
  .description('print a one-time, expiring invite for a new workstation (needs the admin role)')
  .addOption(new Option('--role <role>', 'what the new peer may do').choices(['agent', 'submitter', 'admin']).default('agent'))
  .option('--ttl <duration>', 'how long the invite is valid', '1h')
  .option('--json', 'machine-readable output')
  .action(async (o: { role: string, ttl: string, json?: boolean }) => {
    await withClient(async client => {
      const r = await client.invite(o.role, parseDuration(o.ttl, '--ttl'))
      if (o.json === true) printJson(r)
      else {
        console.error(`invite for one ${o.role}, valid until ${new Date(r.expiresAt).toISOString()}; on the new machine run: meshfarm join < invite.txt`)
        console.log(r.invite)
      }
    })
  })

program.command('join')
  .description('join a mesh with an invite read from FILE or standard input (never from the command line)')
  .argument('[file]', 'file holding the invite; - or nothing for standard input')
  .option('--json', 'machine-readable output')
  .action(async (file: string | undefined, o: { json?: boolean }) => {
    const text = file != null && file !== '-' ? readFileSync(file, 'utf8') : await readStdin()
    const role = await joinMesh(home(), decodeInvite(text))
    if (o.json === true) printJson({ home: home(), role })
    else console.log(`joined the mesh as ${role}; state in ${home()}`)
  })

const access = program.command('access').description('the access list: who may do what on this mesh')
access.command('list')
  .description('peers and their roles')
  .option('--json', 'machine-readable output')
  .action(async (o: { json?: boolean }) => {
    await withClient(async client => {
      const peers = await client.accessList()
      if (o.json === true) printJson(peers)
      else console.log(table(['peer', 'name', 'roles'], peers.map(p => [p.peerId, p.name ?? '', p.roles.join(' ')])))
    })
  })
access.command('add')
  .description('give a peer id roles (needs admin)')
  .argument('<peer>', 'peer id')
  .requiredOption('--role <role>', 'agent, submitter or admin (repeatable)', collect, [])
  .option('--name <name>', 'a note on who this is')
  .action(async (peer: string, o: { role: string[], name?: string }) => {
    await withClient(async client => {
      await client.accessAdd(peer, o.role, o.name)
      console.log(`${peer}: ${o.role.join(', ')}`)
    })
  })
access.command('remove')
  .description('take a peer off the list and close its connections (needs admin)')
  .argument('<peer>', 'peer id or agent host name')
  .action(async (peer: string) => {
    await withClient(async client => {
      await client.accessRemove(peer)
      console.log(`${peer} removed`)
    })
  })

program.command('coordinator')
  .description('run the coordinator: the queue, the agent registry and the scheduler')
  .option('--listen <multiaddr>', 'address to listen on (repeatable)', collect, [])
  .option('--agent-lost <duration>', 'silence after which an agent is declared lost', '15s')
  .option('--heartbeat <duration>', 'agent heartbeat interval', '2s')
  .option('--crash-limit <n>', 'attempts lost with their agent before a task fails', '3')
  .action(async (o: { listen: string[], agentLost: string, heartbeat: string, crashLimit: string }) => {
    const mesh = loadMeshConfig(home())
    const service = await startCoordinator({
      mesh,
      listen: o.listen.length > 0 ? o.listen : ['/ip4/0.0.0.0/tcp/7341'],
      agentLostMs: parseDuration(o.agentLost, '--agent-lost'),
      heartbeatMs: parseDuration(o.heartbeat, '--heartbeat'),
      crashLimit: Number(o.crashLimit)
    })
    console.log(`coordinator: ready as ${service.node.peerId.toString()}`)
    await untilSignal(service.stop)
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
  .option('--allow-root', 'run the agent as root (refused by default); its tasks run as slot users')
  .option('--isolation <mode>', 'how tasks are kept from the mesh\'s keys: auto, namespace, slot-users, bubblewrap or none', 'auto')
  .option('--work-dir <dir>', 'where task folders go (default /var/tmp/meshfarm-<uid>); never inside the state folder')
  .action(async (o: { listen: string[], cores?: string, memory?: string, gpus?: string, slots?: string, label: string[], hostname?: string, allowRoot?: boolean, isolation: string, workDir?: string }) => {
    const isolation = parseIsolationFlag(o.isolation)
    const mesh = loadMeshConfig(home())
    const int = (v: string | undefined, flag: string): number | undefined => {
      if (v == null) return undefined
      const n = Number(v)
      if (!Number.isInteger(n) || n < 1) throw new MeshfarmError('BAD_ARGUMENT', `${flag}: expected a whole number >= 1, got ${JSON.stringify(v)}`)
      return n
    }
    const resources = await detectResources({
      cores: int(o.cores, '--cores'),
      slots: int(o.slots, '--slots'),
      memoryMb: o.memory != null ? parseMemoryFlag(o.memory) : undefined,
      gpus: o.gpus != null ? parseGpuList(o.gpus) : undefined,
      labels: parseLabels(o.label),
      hostname: o.hostname
    })
    if (resources.runsAsRoot) {
      if (o.allowRoot !== true) throw new MeshfarmError('FORBIDDEN', 'this agent runs as root and would run its tasks as slot users it creates (or as root with --isolation none): run it as an ordinary user, or pass --allow-root')
    }
    const agent = await startAgent({ mesh, listen: o.listen.length > 0 ? o.listen : ['/ip4/0.0.0.0/tcp/0'], resources, isolation, workDir: o.workDir })
    if (resources.runsAsRoot && agent.isolation.mode === 'none') console.log('agent: WARNING: running as root with --isolation none: tasks run as root')
    await untilSignal(agent.stop, agent.drained)
  })

function overridesFrom (o: Record<string, string | undefined>): SpecDefaults {
  const d: SpecDefaults = {}
  if (o.cores != null) d.cores = Number(o.cores)
  if (o.gpus != null) d.gpus = Number(o.gpus)
  if (o.memory != null) d.memoryMb = parseMemory(o.memory, '--memory')
  if (o.timeout != null) d.timeoutMs = parseDuration(o.timeout, '--timeout')
  if (o.name != null) d.name = o.name
  if (o.layout != null) d.layout = o.layout === 'flat' ? 'flat' : 'per-task'
  if (o.retries != null) d.retries = Number(o.retries)
  return d
}

/** Follows a job with a progress bar and fetches its results as they arrive. */
async function waitAndFetch (client: MeshClient, jobId: number, dest: string, json: boolean): Promise<JobSummary> {
  const bar = json ? null : new Progress(`job ${jobId}`)
  const watching = client.watch(jobId, s => {
    bar?.update(s.counts.done + s.counts.failed + s.counts.cancelled, s.total, `${s.counts.running + s.counts.staging} running, ${s.counts.failed} failed`)
  })
  const fetching = client.fetch(jobId, dest, { follow: true })
  const [summary] = await Promise.all([watching, fetching])
  bar?.stop()
  return summary
}

program.command('submit')
  .description('submit a job: a YAML job file or a tasklist (one command per line)')
  .argument('<file>', 'job file (.yaml/.yml) or tasklist')
  .option('--wait', 'follow the job with a progress bar and fetch its results')
  .option('--results <dir>', 'where --wait puts the results (default: ./meshfarm-results/<name>-<job>)')
  .option('--cores <n>', 'cores per task (overrides the file)')
  .option('--gpus <n>', 'GPUs per task')
  .option('--memory <size>', 'memory per task, e.g. 2G')
  .option('--timeout <duration>', 'time limit per task, e.g. 10m')
  .option('--retries <n>', 'retries for tasks that exit non-zero')
  .option('--name <name>', 'job name')
  .addOption(new Option('--layout <layout>', 'results layout').choices(['per-task', 'flat']))
  .option('--json', 'machine-readable output')
  .action(async (file: string, o: Record<string, any>) => {
    const { parseJobFile } = await import('../shared/client/spec.ts')
    const job = parseJobFile(file, overridesFrom(o))
    await withClient(async client => {
      const { jobId, total } = await client.submit(job)
      if (o.wait !== true) {
        if (o.json === true) printJson({ jobId, total })
        else console.log(`submitted job ${jobId} (${job.name}) with ${total} tasks`)
        return
      }
      const dest = resolve(o.results ?? join('meshfarm-results', `${job.name}-${jobId}`))
      if (o.json !== true) console.log(`submitted job ${jobId} (${job.name}) with ${total} tasks; results go to ${dest}`)
      const summary = await waitAndFetch(client, jobId, dest, o.json === true)
      if (o.json === true) printJson({ jobId, results: dest, summary })
      else console.log(`${summaryLine(summary)}\nresults: ${dest}`)
      if (summary.state !== 'done') process.exitCode = 1
    })
  })

program.command('status')
  .description('jobs on the mesh, or one job\'s tasks')
  .argument('[job]', 'a job id')
  .option('--tasks', 'list the job\'s tasks')
  .option('--json', 'machine-readable output')
  .action(async (job: string | undefined, o: { tasks?: boolean, json?: boolean }) => {
    await withClient(async client => {
      const jobId = job != null ? jobIdArg(job) : undefined
      const jobs = await client.status(jobId)
      if (jobId != null && o.tasks === true) {
        const tasks = []
        let after: number | null = 0
        while (after != null) {
          const page = await client.tasks(jobId, { after })
          tasks.push(...page.tasks)
          after = page.next
        }
        if (o.json === true) printJson({ job: jobs[0], tasks })
        else console.log(`${summaryLine(jobs[0])}\n${tasksTable(tasks)}`)
        return
      }
      if (o.json === true) printJson(jobs)
      else console.log(jobs.length === 0 ? 'no jobs' : jobsTable(jobs))
    })
  })

program.command('peers')
  .description('agents on the mesh with their resources')
  .option('--json', 'machine-readable output')
  .action(async (o: { json?: boolean }) => {
    await withClient(async client => {
      const agents = await client.peers()
      if (o.json === true) printJson(agents)
      else console.log(agents.length === 0 ? 'no agents' : peersTable(agents))
    })
  })

program.command('cancel')
  .description('cancel a job: queued tasks are dropped, running ones stopped')
  .argument('<job>', 'a job id')
  .option('--json', 'machine-readable output')
  .action(async (job: string, o: { json?: boolean }) => {
    await withClient(async client => {
      const n = await client.cancel(jobIdArg(job))
      if (o.json === true) printJson({ jobId: Number(job), cancelled: n })
      else console.log(`job ${job}: ${n} task(s) cancelled`)
    })
  })

program.command('fetch')
  .description('bring a job\'s results here; resumes a broken download')
  .argument('<job>', 'a job id')
  .option('--dest <dir>', 'results folder (default: ./meshfarm-results/<name>-<job>)')
  .option('--json', 'machine-readable output')
  .action(async (job: string, o: { dest?: string, json?: boolean }) => {
    await withClient(async client => {
      const jobId = jobIdArg(job)
      const { job: header } = await client.job(jobId)
      const dest = resolve(o.dest ?? join('meshfarm-results', `${basename(header.name)}-${jobId}`))
      const bar = o.json === true ? null : new Progress(`fetch ${jobId}`)
      const report = await client.fetch(jobId, dest, { onProgress: p => bar?.update(p.tasks, p.total, `${(p.bytes / 1e6).toFixed(1)} MB`) })
      bar?.stop()
      if (o.json === true) printJson(report)
      else console.log(`fetched ${report.tasks} task(s) (${report.skipped} already here, ${report.files} files, ${(report.bytes / 1e6).toFixed(1)} MB) into ${dest}`)
    })
  })

program.command('ping')
  .description('check that the coordinator answers')
  .option('--json', 'machine-readable output')
  .action(async (o: { json?: boolean }) => {
    await withClient(async client => {
      const r = await client.ping()
      if (o.json === true) printJson(r)
      else console.log(`coordinator ${r.peerId} (meshfarm ${r.version}) answered in ${r.rttMs.toFixed(1)} ms`)
    })
  })

program.command('drain')
  .description('let an agent finish its tasks and take no new ones, then stop')
  .argument('<peer>', 'peer id, a unique part of it, or host name')
  .action(async (peer: string) => {
    await withClient(async client => {
      await client.drain(peer)
      console.log(`draining ${peer}`)
    })
  })

program.command('demo')
  .description('start a coordinator and two agents on loopback, run a 50-task sweep, show the results, stop')
  .option('--tasks <n>', 'sweep size', '50')
  .option('--keep', 'leave the demo folder in place')
  .action(async (o: { tasks: string, keep?: boolean }) => {
    process.exitCode = await runDemo({ tasks: Number(o.tasks), keep: o.keep === true })
  })

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (isMeshfarmError(err)) {
    console.error(`error: ${err.message}`)
    process.exitCode = err.exitCode
  } else {
    console.error(`error: ${errorMessage(err)}`)
    process.exitCode = 1
  }
}
