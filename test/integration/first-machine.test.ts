/**
 * The first machine of a new mesh, as a user sets it up: `init`, `coordinator`, an `agent` and the CLI, all with
 * the one state folder in ~/.meshfarm; then a second workstation joins with an invite.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { lstatSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, startMeshfarm, type MeshProcess } from '../../bin/processes.ts'
import { runCli } from '../helpers/cli.ts'

test('one state folder serves the coordinator, an agent and the CLI; a second machine joins with an invite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-first-'))
  const home = join(dir, 'lab1')
  const procs: MeshProcess[] = []
  const root = process.getuid?.() === 0 ? ['--allow-root'] : []
  try {
    assert.equal((await runCli(home, ['init', '--no-mdns'])).code, 0)
    const port = await freePort('127.0.0.1')
    const coordinator = startMeshfarm(['coordinator', '--listen', `/ip4/127.0.0.1/tcp/${port}`], { home })
    procs.push(coordinator)
    await coordinator.waitFor(/coordinator: ready/, 60_000)
    const agent = startMeshfarm(['agent', '--listen', '/ip4/127.0.0.1/tcp/0', '--hostname', 'lab1', '--slots', '2', ...root], { home })
    procs.push(agent)
    await agent.waitFor(/agent: connected to coordinator/, 60_000)

    writeFileSync(join(dir, 'hello.txt'), 'echo hello from $(hostname)\n')
    const submitted = await runCli(home, ['submit', 'hello.txt', '--wait', '--json'], { cwd: dir })
    assert.equal(submitted.code, 0, submitted.stderr)

    const invite = await runCli(home, ['invite', '--role', 'agent', '--json'])
    assert.equal(invite.code, 0, invite.stderr)
    writeFileSync(join(dir, 'invite.txt'), (JSON.parse(invite.stdout) as { invite: string }).invite)
    const lab2 = join(dir, 'lab2')
    const joined = await runCli(lab2, ['join', join(dir, 'invite.txt')])
    assert.equal(joined.code, 0, joined.stderr)
    const second = startMeshfarm(['agent', '--listen', '/ip4/127.0.0.2/tcp/0', '--hostname', 'lab2', '--slots', '2', ...root], { home: lab2 })
    procs.push(second)
    await second.waitFor(/agent: connected to coordinator/, 60_000)
    const peers = await runCli(home, ['peers', '--json'])
    const hosts = (JSON.parse(peers.stdout) as Array<{ hostname: string, state: string }>).filter(p => p.state === 'up').map(p => p.hostname).sort()
    assert.deepEqual(hosts, ['lab1', 'lab2'])
    assert.match(readFileSync(join(home, 'coordinator', 'access.json'), 'utf8'), /this machine \(operator\)/)
    // Keys, the access list, the database and the outbox are the owner's alone: nothing in the state folder is
    // readable by anyone else (a task under another uid, another user of the machine).
    const open = readdirSync(home, { recursive: true, encoding: 'utf8' }).map(f => join(home, f))
      .filter(f => { const st = lstatSync(f); return st.isFile() && (st.mode & 0o077) !== 0 })
    assert.deepEqual(open, [], 'files of the state folder others can read or write')
    for (const f of ['identity.key', 'swarm.key', 'operator.key', 'coordinator/state.db', 'coordinator/access.json']) assert.equal(lstatSync(join(home, f)).mode & 0o777, 0o600, f)
  } finally {
    await Promise.all(procs.map(async p => await p.stop()))
    rmSync(dir, { recursive: true, force: true })
  }
})
