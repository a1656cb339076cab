// The demo mesh's Docker files, tested where there is no Docker engine: the compose file's structure (services,
// images' build targets, volumes, roles, invite names), and the entry script run for real, outside Docker, as the
// coordinator and as an agent, each with its own MESHFARM_HOME and a shared folder standing in for the volume.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type AddressInfo } from 'node:net'
import { parse } from 'yaml'
import { runCliJson, until } from '../helpers/cli.ts'

const root = join(import.meta.dirname, '..', '..')
const entry = join(root, 'docker', 'entrypoint.sh')

interface Service { build?: { context: string, dockerfile: string, target: string }, hostname?: string, environment?: Record<string, string>, volumes?: string[], depends_on?: string[], ports?: string[] }

test('compose: a coordinator, two agents and a Slurm bridge, each built from a stage the Dockerfile has, sharing one volume', () => {
  const compose = parse(readFileSync(join(root, 'docker', 'compose.yaml'), 'utf8')) as { services: Record<string, Service>, volumes: Record<string, unknown> }
  const dockerfile = readFileSync(join(root, 'docker', 'Dockerfile'), 'utf8')
  const stages = [...dockerfile.matchAll(/^FROM \S+ AS (\S+)$/gm)].map(m => m[1])
  assert.deepEqual(Object.keys(compose.services), ['coordinator', 'agent1', 'agent2', 'slurm'])
  const roles = Object.fromEntries(Object.entries(compose.services).map(([k, s]) => [k, s.environment?.MESHFARM_ROLE]))
  assert.deepEqual(roles, { coordinator: 'coordinator', agent1: 'agent', agent2: 'agent', slurm: 'slurm-bridge' })
  for (const [name, s] of Object.entries(compose.services)) {
    assert.ok(s.build != null, `${name} is built`)
    assert.ok(existsSync(join(root, 'docker', s.build.context, s.build.dockerfile)), `${name}: ${s.build.dockerfile} exists`)
    assert.ok(stages.includes(s.build.target), `${name}: stage ${s.build.target} is in the Dockerfile (${stages.join(', ')})`)
    for (const v of s.volumes ?? []) {
      const [vol, mount] = v.split(':')
      assert.ok(vol in compose.volumes, `${name}: volume ${vol} is declared`)
      assert.ok(['/state', '/shared'].includes(mount), `${name}: ${mount}`)
    }
    assert.ok(s.volumes?.includes('shared:/shared'), `${name} shares the invites volume`)
    if (name !== 'coordinator') assert.deepEqual(s.depends_on, ['coordinator'])
    if (s.environment?.MESHFARM_NAME != null) assert.equal(s.environment.MESHFARM_NAME, s.hostname)
  }
  const invited = compose.services.coordinator.environment?.MESHFARM_INVITES.split(' ').sort()
  const agents = Object.values(compose.services).map(s => s.environment?.MESHFARM_NAME).filter((n): n is string => n != null).sort()
  assert.deepEqual(invited, agents, 'the coordinator invites exactly the agents that wait for an invite')
  assert.equal(compose.services.slurm.hostname, /^SlurmctldHost=(\S+)$/m.exec(readFileSync(join(root, 'docker', 'slurm.conf'), 'utf8'))?.[1], 'slurm.conf names the bridge container')
  assert.match(dockerfile, /^ENTRYPOINT \["\/opt\/meshfarm\/docker\/entrypoint\.sh"\]$/m)
  assert.match(dockerfile, /^COPY docker\/slurm\.conf \/etc\/slurm\/slurm\.conf$/m)
  assert.ok((statSync(entry).mode & 0o111) !== 0, 'the entry script is executable')
  assert.equal(spawnSync('sh', ['-n', entry]).status, 0, 'the entry script parses')
})

function start (env: Record<string, string>, log: string[], args: string[] = []): ChildProcess {
  const child = spawn(entry, args, { env: { ...process.env, MESHFARM: join(root, 'bin', 'meshfarm'), MESHFARM_MDNS: '0', MESHFARM_DISCOVERY_MS: '5000', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout?.on('data', (d: Buffer) => log.push(d.toString()))
  child.stderr?.on('data', (d: Buffer) => log.push(d.toString()))
  return child
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise(resolve => server.close(resolve))
  return port
}

/** agent1 is up in the coordinator's `peers` (false while the coordinator is still starting). */
async function agentUp (home: string): Promise<boolean> {
  try {
    return (await runCliJson<Array<{ hostname: string, state: string }>>(home, ['peers'])).some(a => a.hostname === 'agent1' && a.state === 'up')
  } catch {
    return false
  }
}

/** Pids of live processes whose environment sets MESHFARM_HOME to one of these folders. */
function processesWithHome (homes: string[]): string[] {
  const wanted = new Set(homes.map(h => `MESHFARM_HOME=${h}`))
  return readdirSync('/proc').filter(p => /^\d+$/.test(p)).filter(pid => {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').some(v => wanted.has(v))
    } catch {
      return false
    }
  })
}

async function stop (child: ChildProcess): Promise<number | null> {
  if (child.exitCode != null) return child.exitCode
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  child.kill('SIGTERM')
  return await exited
}

test('the entry script: the coordinator inits and invites, the agent joins with its invite; a second start skips both', { timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-entry-'))
  const log: string[] = []
  const shared = join(dir, 'shared')
  const coordHome = join(dir, 'coordinator')
  const agentHome = join(dir, 'agent1')
  // A fixed port, as in compose: a restarted coordinator is found where the agent's invite said it was.
  const coordEnv = { MESHFARM_ROLE: 'coordinator', MESHFARM_HOME: coordHome, MESHFARM_SHARED: shared, MESHFARM_INVITES: 'agent1', MESHFARM_LISTEN: `/ip4/127.0.0.1/tcp/${await freePort()}` }
  const agentEnv = { MESHFARM_ROLE: 'agent', MESHFARM_NAME: 'agent1', MESHFARM_HOME: agentHome, MESHFARM_SHARED: shared, MESHFARM_INVITE_WAIT: '120' }
  let coordinator = start(coordEnv, log)
  // Extra arguments go to the agent; tests may run as root, where an agent needs --allow-root (the image does not).
  const agentArgs = process.getuid?.() === 0 ? ['--allow-root'] : []
  let agent = start(agentEnv, log, agentArgs) // starts first-come: it waits for its invite
  try {
    const invite = join(shared, 'invites', 'agent1.invite')
    await until(() => existsSync(join(shared, 'joined', 'agent1')), 120_000, `agent1 to join (log: ${log.join('')})`)
    assert.equal(existsSync(invite), false, 'a used invite is deleted')
    assert.ok(existsSync(join(agentHome, 'mesh.json')))
    await until(async () => await agentUp(coordHome), 60_000, 'agent1 in peers')
    assert.equal(await stop(agent), 0, `the agent stops cleanly on SIGTERM: ${log.join('')}`)
    assert.equal(await stop(coordinator), 0, `the coordinator stops cleanly on SIGTERM: ${log.join('')}`)
    // Second start: same mesh, no new invite for an agent that joined, the agent needs none.
    const meshBefore = readFileSync(join(coordHome, 'mesh.json'), 'utf8')
    coordinator = start(coordEnv, log)
    agent = start(agentEnv, log, agentArgs)
    await until(async () => await agentUp(coordHome), 90_000, 'agent1 back')
    assert.equal(readFileSync(join(coordHome, 'mesh.json'), 'utf8'), meshBefore, 'no second init')
    assert.equal(existsSync(invite), false, 'no invite for an agent that has joined')
  } finally {
    await stop(agent)
    await stop(coordinator)
    // Nothing the entry script started may outlive it (a subshell in between would leave meshfarm running).
    const left = processesWithHome([coordHome, agentHome]).join(' ')
    rmSync(dir, { recursive: true, force: true })
    assert.equal(left, '', 'no process of the test outlives its entry script')
  }
})
