/** Commands that make and change the mesh: init, invite, join, access. */
import { Option } from 'commander'
import { readFileSync } from 'node:fs'
import { parseDuration } from '../../shared/util/units.ts'
import { MeshfarmError } from '../../shared/util/errors.ts'
import { isRole, type Role } from '../../shared/protocol/roles.ts'
import { printJson, table } from '../output.ts'
import { collect, readStdin, type CliContext } from '../cli-context.ts'
import { DEFAULTS } from '../config.ts'

function role (v: string, flag: string): Role {
  if (isRole(v)) return v
  throw new MeshfarmError('BAD_ARGUMENT', `${flag}: unknown role ${JSON.stringify(v)}: use agent, submitter or admin`)
}

function memberName (v: string | undefined): string | undefined {
  if (v == null) return undefined
  if (v.trim() === '' || v.length > 64 || /[\u0000-\u001f]/.test(v)) throw new MeshfarmError('BAD_ARGUMENT', `--name: must be 1 to 64 printable characters, got ${JSON.stringify(v)}`)
  return v
}

export function meshCommands (ctx: CliContext): void {
  const { program } = ctx
  program.command('init')
    .description('create a new mesh with this machine as its coordinator: a swarm key (no key, no connection) and this machine\'s identity')
    .option('--bootstrap <multiaddr>', 'a peer to dial at start (repeatable)', collect, [])
    .option('--no-mdns', 'do not look for peers on the LAN')
    .option('--json', 'machine-readable output')
    .action(async (o: { bootstrap: string[], mdns: boolean, json?: boolean }) => {
      const [{ peerIdFromPrivateKey }, { loadOrCreateIdentity }, { initMesh }] = await Promise.all([import('@libp2p/peer-id'), import('../../shared/local/identity.ts'), import('../../shared/local/mesh-config.ts')])
      const peerId = peerIdFromPrivateKey(await loadOrCreateIdentity(ctx.home())).toString()
      initMesh(ctx.home(), { bootstrap: o.bootstrap, mdns: o.mdns, coordinator: peerId })
      if (o.json === true) return printJson({ home: ctx.home(), coordinator: peerId })
      console.log(`created a mesh in ${ctx.home()}; this machine (${peerId}) is its coordinator`)
      console.log("next: 'meshfarm coordinator' here, then 'meshfarm invite --role agent > invite.txt' for each workstation")
    })

  program.command('invite')
    .description('print a one-time, expiring invite for a new workstation (needs the admin role)')
    .addOption(new Option('--role <role>', 'what the new peer may do').choices(['agent', 'submitter', 'admin']).default('agent'))
    .option('--ttl <duration>', 'how long the invite is valid', '1h')
    .option('--name <name>', 'who the new member is, shown in status, peers and the dashboard (e.g. lab-07-owner)')
    .option('--json', 'machine-readable output')
    .action(async (o: { role: string, ttl: string, name?: string, json?: boolean }) => {
      const ttlMs = parseDuration(o.ttl, '--ttl')
      if (ttlMs < 1000 || ttlMs > 30 * 86_400_000) throw new MeshfarmError('BAD_ARGUMENT', `--ttl: must be between 1s and 30d, got ${JSON.stringify(o.ttl)}`)
      const r = await ctx.withClient(async client => await client.invite(role(o.role, '--role'), ttlMs, memberName(o.name)))
      if (o.json === true) return printJson(r)
      console.error(`invite for one ${o.role}, valid until ${new Date(r.expiresAt).toISOString()}; on the new machine: meshfarm join invite.txt`)
      console.log(r.invite)
    })
  void DEFAULTS

  program.command('join')
    .description('join a mesh with an invite read from FILE or standard input (never from the command line)')
    .argument('[file]', 'file holding the invite; - or nothing for standard input')
    .option('--name <name>', 'who you are on the mesh, unless the invite already names you (default: this machine\'s host name)')
    .option('--json', 'machine-readable output')
    .action(async (file: string | undefined, o: { name?: string, json?: boolean }) => {
      let text: string
      try {
        text = file != null && file !== '-' ? readFileSync(file, 'utf8') : await readStdin('paste the invite, then press Enter and Ctrl-D:')
      } catch (err) {
        throw new MeshfarmError('FILE_MISSING', `${file ?? 'stdin'}: cannot read the invite (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
      }
      const [{ joinMesh }, { decodeInvite }] = await Promise.all([import('../../shared/local/join.ts'), import('../../shared/local/invite.ts')])
      const joined = await joinMesh(ctx.home(), decodeInvite(text), { name: memberName(o.name) })
      if (o.json === true) return printJson({ home: ctx.home(), role: joined })
      console.log(`joined the mesh as ${joined}; state in ${ctx.home()}`)
    })

  const access = program.command('access').description('the access list: who may do what on this mesh')
  access.command('list')
    .description('members, their names and roles')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const peers = await ctx.withClient(async client => await client.accessList())
      if (o.json === true) return printJson(peers)
      console.log(table(['peer', 'name', 'roles'], peers.map(p => [p.peerId, p.name ?? '', p.roles.join(' ')])))
    })
  access.command('add')
    .description('give a peer id roles (needs admin)')
    .argument('<peer>', 'peer id')
    .requiredOption('--role <role>', 'agent, submitter or admin (repeatable)', collect, [])
    .option('--name <name>', 'who this is')
    .action(async (peer: string, o: { role: string[], name?: string }) => {
      const roles = o.role.map(r => role(r, '--role'))
      await ctx.withClient(async client => { await client.accessAdd(peer, roles, memberName(o.name)) })
      console.log(`${peer}: ${roles.join(', ')}`)
    })
  access.command('remove')
    .description('take a peer off the list and close its connections (needs admin)')
    .argument('<peer>', 'peer id or agent host name')
    .action(async (peer: string) => {
      await ctx.withClient(async client => { await client.accessRemove(peer) })
      console.log(`${peer} removed`)
    })
}
