/**
 * The agent's side of the machine: every task in its own group with its limits (node/cgroups/hooks.ts), and with
 * `--harvest` the harvest loop wired to the reactor. Each tick, on each presence change (the helper's post, the
 * injected file) and at once after an owner command, the Harvester's pure policy decides, and its decisions go
 * through the reactor: suspend (the backend freezes the task's group), continue, vacate; the offer (slots, GPUs)
 * and the harvest status go to the coordinator in agent.update. node/agent.ts calls `openMachine`, `attach` and
 * `close`, nothing else.
 */
import { createHash } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { AgentResources } from '../../shared/protocol/messages.ts'
import { errorMessage } from '../../shared/util/errors.ts'
import type { LocalTaskHooks } from '../backend/local.ts'
import type { LauncherFeature } from '../launcher/client.ts'
import type { AgentReactor } from '../reactor.ts'
import { openTaskControl, type TaskControl } from '../cgroups/hooks.ts'
import type { HarvestConfig } from './config.ts'
import { setupPresence, type PresenceSetup } from './compose.ts'
import { formatDuration } from './format.ts'
import { Harvester } from './harvester.ts'
import { ownerControlPaths, startOwnerControl, type HereStatus, type OwnerControl } from './owner-control.ts'
import type { HarvestOutcome, HarvestSummary, OwnerCommand } from './policy.ts'
import { applyHarvest, harvestStatus, hereTasks, offer, taskViews, type Sent } from './offer.ts'

export interface HarvestSettings {
  config: HarvestConfig
  /** --input-devices (root only). */
  inputDevices: boolean
  /** --owner: whose machine this is (the owner token is theirs); null: the agent's own user. */
  ownerUid: number | null
  /** --owner-socket; null: the state folder's owner.sock, or /run/meshfarm/owner.sock as root. */
  ownerSocket: string | null
  /** MESHFARM_PRESENCE_FILE: a file that stands in for every input source (tests, site scripts). */
  presenceFile: string | null
  /** How often the sources are read when nothing tells the agent sooner. */
  tickMs: number
}

/** What `meshfarm agent` was told about the machine. */
export interface MachineSettings {
  /** 'none': --no-cgroups (process trees, rlimits and nice instead). */
  cgroups: 'auto' | 'none'
  harvest: HarvestSettings | null
}

export const DEFAULT_MACHINE: MachineSettings = Object.freeze({ cgroups: 'auto', harvest: null })

export interface Machine {
  hooks: LocalTaskHooks
  /** Starts deciding for the reactor's attempts; call right after reactor.start(), with the agent's full offer. */
  attach: (reactor: AgentReactor, resources: AgentResources) => void
  /** After the backend has closed: what tasks left is killed, groups removed, the owner socket closed. */
  close: () => Promise<void>
}

export interface MachineContext {
  /** The agent's state folder: names its groups (the same across restarts) and holds owner.sock. */
  stateDir: string
  features: ReadonlySet<LauncherFeature>
  log: (line: string) => void
}

/** Groups are named after the state folder, so a restarted agent finds (and kills) what its last run left. */
export function agentGroupName (stateDir: string): string {
  return `agent-${createHash('sha256').update(stateDir).digest('hex').slice(0, 12)}`
}

export async function openMachine (s: MachineSettings, ctx: MachineContext): Promise<Machine> {
  const control = await openTaskControl({ prefer: s.cgroups, name: agentGroupName(ctx.stateDir), features: ctx.features, harvested: s.harvest != null, log: ctx.log })
  for (const line of control.lines) ctx.log(`agent: ${line}`)
  if (s.harvest == null) return { hooks: control.hooks, attach: () => {}, close: async () => { await control.close() } }
  let h: AgentHarvest
  try {
    h = await AgentHarvest.open(s.harvest, control, ctx)
  } catch (err) {
    await control.close()
    throw err
  }
  return {
    hooks: control.hooks,
    attach: (reactor, resources) => { h.attach(reactor, resources) },
    close: async () => { await h.close(); await control.close() }
  }
}

const STARTING: HarvestSummary = { mode: 'owner', ownerPresent: null, idleSince: null, lendingUntil: null, control: 'default', suspendedTasks: 0, reason: 'agent starting: looking for its owner' }

class AgentHarvest {
  private reactor: AgentReactor | null = null
  private base: AgentResources | null = null
  private owner: OwnerControl | null = null
  private watcher: FSWatcher | null = null
  private timer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null
  private again = false
  private closed = false
  private sent: Sent | null = null
  private lastMode = ''

  private readonly s: HarvestSettings
  private readonly control: TaskControl
  private readonly presence: PresenceSetup
  private readonly harvester: Harvester
  private readonly log: (line: string) => void

  private constructor (
    s: HarvestSettings,
    control: TaskControl,
    presence: PresenceSetup,
    harvester: Harvester,
    log: (line: string) => void
  ) {
    this.s = s
    this.control = control
    this.presence = presence
    this.harvester = harvester
    this.log = log
  }

  static async open (s: HarvestSettings, control: TaskControl, ctx: MachineContext): Promise<AgentHarvest> {
    const asRoot = process.getuid?.() === 0
    const paths = s.ownerSocket != null ? { socketPath: s.ownerSocket, tokenPath: s.ownerSocket.replace(/\.sock$/, '') + '.token' } : ownerControlPaths(ctx.stateDir, asRoot)
    const presence = await setupPresence({ helperSocket: paths.socketPath, inputDevices: s.inputDevices, injectedFile: s.presenceFile ?? undefined })
    const harvester = new Harvester({ config: s.config, sources: presence.sources, ours: control.tracker, now: Date.now() })
    const h = new AgentHarvest(s, control, presence, harvester, ctx.log)
    try {
      h.owner = await startOwnerControl({
        ...paths,
        ownerUid: s.ownerUid ?? undefined,
        onCommand: cmd => h.command(cmd),
        onStatus: () => h.here(Date.now()),
        onPresence: r => { presence.helper.report(r, Date.now()); void h.pass() },
        log: line => { ctx.log(`agent: harvest: ${line}`) }
      })
      if (s.presenceFile != null) {
        // A test (or a site script) changing the file is seen at once, not at the next tick.
        const name = basename(s.presenceFile)
        h.watcher = watch(dirname(s.presenceFile), (_event, file) => { if (file === name) void h.pass() })
        h.watcher.unref()
      }
    } catch (err) {
      await h.close()
      throw err
    }
    const c = s.config
    const uid = s.ownerUid ?? process.getuid?.() ?? 0
    ctx.log(`agent: harvest: ${presence.line}`)
    ctx.log(`agent: harvest: tasks start after ${formatDuration(c.startIdleMs)} idle with load not ours <= ${c.backgroundLoad}; suspended when the owner is back (input within ${formatDuration(c.keyboardBusyMs)}, or load >= ${c.highLoad} for ${formatDuration(c.highLoadMs)}), continued after ${formatDuration(c.continueIdleMs)} idle, vacated after ${formatDuration(c.maxSuspendMs)} suspended`)
    ctx.log(`agent: harvest: owner controls (meshfarm lend, reclaim, status --here) on ${paths.socketPath}, for uid ${uid}${asRoot && s.ownerUid == null ? ' (root only: name the owner with --owner USER)' : ''}`)
    return h
  }

  attach (reactor: AgentReactor, resources: AgentResources): void {
    this.reactor = reactor
    this.base = resources
    // Nothing is lent before the first look at the owner.
    const status = harvestStatus({ cpu: false, gpu: false }, STARTING)
    const first = offer(resources, { cpu: false, gpu: false })
    reactor.updateResources(first, { harvest: status })
    this.sent = { slots: first.slots, gpus: first.gpus.length, status, at: Date.now() }
    void this.pass()
    this.timer = setInterval(() => { void this.pass() }, this.s.tickMs)
    this.timer.unref()
  }

  /** Reads the sources and decides; passes never overlap, and one asked for during a pass runs after it. */
  async pass (): Promise<void> {
    if (this.running != null) {
      this.again = true
      return await this.running
    }
    this.running = (async () => {
      do {
        this.again = false
        try {
          await this.harvester.observe(Date.now())
          this.decide(Date.now())
        } catch (err) {
          this.log(`agent: harvest: ${errorMessage(err)}`)
        }
      } while (this.again && !this.closed)
    })().finally(() => { this.running = null })
    return await this.running
  }

  /** The synchronous part: the policy over the attempts held now, its decisions through the reactor. */
  private decide (now: number): HarvestOutcome | null {
    const r = this.reactor
    if (r == null || this.base == null || this.closed || r.state === 'stopping' || r.state === 'stopped') return null
    const held = r.attempts()
    const out = this.harvester.decide(taskViews(held), now)
    const { told, sent } = applyHarvest(r, held, out, this.base, this.sent, now)
    this.sent = sent
    const mode = `${out.summary.mode}/${out.accept.cpu}/${out.accept.gpu}`
    if (told.length > 0 || mode !== this.lastMode) this.log(`agent: harvest: ${out.summary.mode}${told.length > 0 ? ` (${told.join(', ')})` : ''}: ${out.reason}`)
    this.lastMode = mode
    return out
  }

  /** An owner command takes effect at once, on the last observation (a reclaim is itself the owner's presence). */
  private command (cmd: OwnerCommand): HereStatus {
    const now = Date.now()
    this.harvester.command(cmd, now)
    this.decide(now)
    return this.here(now)
  }

  here (now: number): HereStatus {
    const held = this.reactor?.attempts() ?? []
    return {
      harvest: this.harvester.last?.summary ?? STARTING,
      tasks: hereTasks(held, id => this.control.startedAt(id)),
      sources: [...this.harvester.details, `checked ${formatDuration(now - this.harvester.observedAt)} ago`]
    }
  }

  async close (): Promise<void> {
    this.closed = true
    if (this.timer != null) clearInterval(this.timer)
    this.watcher?.close()
    await this.running?.catch(() => {})
    await this.owner?.close().catch(() => {})
    await this.presence.close().catch(() => {})
  }
}
