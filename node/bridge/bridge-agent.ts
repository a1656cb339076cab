/**
 * `meshfarm bridge slurm`: an agent like any other (the same reactor, network loop, staging and outbox:
 * node/agent.ts) whose tasks run through Slurm instead of the local launchers. The mode (forward, allocation,
 * auto) gives the offer, the backend and a tick; this file checks Slurm is there, starts the agent with them,
 * runs the tick every poll interval, turns what it says into `agent.update`s (offer, status notes), and watches
 * for `meshfarm bridge resume`.
 */
import { existsSync, rmSync } from 'node:fs'
import { hostname as machineName } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { MeshConfig } from '../../shared/local/mesh-config.ts'
import { homePaths } from '../../shared/local/home.ts'
import { MeshfarmError, errorMessage } from '../../shared/util/errors.ts'
import type { AgentResources } from '../../shared/protocol/messages.ts'
import { startAgent, type AgentService } from '../agent.ts'
import type { BatchSystem } from './slurm/batch-system.ts'
import { createSlurmCli } from './slurm/slurm-cli.ts'
import type { BridgeConfig } from './slurm/bridge-config.ts'
import type { BridgeMode } from './slurm/mode.ts'
import type { OfferBase } from './slurm/offer.ts'
import { forwardMode } from './slurm/forward-mode.ts'
import { allocationMode } from './slurm/allocation-mode.ts'
import { autoMode } from './slurm/auto-mode.ts'

export interface BridgeOptions {
  config: BridgeConfig
  mesh: MeshConfig
  listen: string[]
  log: (line: string) => void
  /** Tests count the real commands through a wrapped runner; nothing else replaces Slurm. */
  batch?: BatchSystem
  env?: NodeJS.ProcessEnv
}

export interface Bridge {
  agent: AgentService
  /** Resolves when the bridge is over by itself (drained, or its allocation ended). */
  ended: Promise<void>
  stop: () => Promise<void>
}

/** `meshfarm bridge resume` leaves this file in the bridge's state folder; the running bridge takes it. */
export function resumeFile (home: string): string {
  return join(homePaths(home).agentDir, 'slurm-resume')
}

export async function startSlurmBridge (o: BridgeOptions): Promise<Bridge> {
  const { config, log } = o
  const batch = o.batch ?? createSlurmCli()
  const slurm = await batch.config()
  if (!slurm.ok) throw new MeshfarmError('REMOTE', `slurm: ${slurm.error.message}`)
  const offer: OfferBase = {
    hostname: config.hostname ?? `${machineName().split('.')[0]}-slurm`,
    slurmVersion: slurm.value.version,
    labels: config.labels,
    runsAsRoot: process.getuid?.() === 0
  }
  const mode: BridgeMode = config.mode === 'forward'
    ? await forwardMode(batch, slurm.value, config, offer, log)
    : config.mode === 'allocation'
      ? await allocationMode(batch, config, offer, log, o.env ?? process.env)
      : await autoMode(batch, config, offer, log)
  let agent: AgentService
  try {
    agent = await startAgent({ mesh: o.mesh, listen: o.listen, resources: mode.resources, workDir: config.workDir, runner: mode.runner, log })
  } catch (err) {
    await mode.close()
    throw err
  }
  log(mode.describe)
  mode.attach(agent)

  const resume = resumeFile(o.mesh.home)
  rmSync(resume, { force: true })
  let resources: AgentResources = mode.resources
  let notes = ''
  const stopped = new AbortController()
  const tick = async (): Promise<void> => {
    if (existsSync(resume)) {
      rmSync(resume, { force: true })
      log(`bridge: resume asked: ${mode.resume?.() ?? 'nothing is paused in this mode'}`)
    }
    const r = await mode.tick(Date.now())
    const said = JSON.stringify(r.notes)
    if (r.resources == null && said === notes) return
    if (r.resources != null) resources = r.resources
    notes = said
    agent.reactor.updateResources(resources, { notes: r.notes.map(n => n.slice(0, 4096)) })
  }
  const ticking = (async () => {
    while (!stopped.signal.aborted) {
      await tick().catch(err => { log(`bridge: ${errorMessage(err)}`) })
      await sleep(config.pollMs, undefined, { signal: stopped.signal }).catch(() => {})
    }
  })()

  let stopping: Promise<void> | null = null
  const stop = async (): Promise<void> => {
    // No tick runs once the agent stops (it would decide on a world that is going away).
    stopping ??= (async () => {
      stopped.abort()
      await ticking
      await agent.stop()
      await mode.close()
    })()
    await stopping
  }
  const ended = Promise.race([agent.drained, mode.ended ?? new Promise<void>(() => {})])
  return { agent, ended, stop }
}
