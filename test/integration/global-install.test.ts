// `meshfarm` on PATH the ways a lab installs it: `npm install -g` of the packed package into a temporary prefix,
// and `npx meshfarm` in a project that depends on it (dependencies hoisted above the package). The wrapper
// bin/meshfarm must find Node 24 in either layout. Uses npm's cache (--prefer-offline); ~30 s.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..', '..')
const npm = (args: string[], cwd: string): string => execFileSync('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
  cwd, encoding: 'utf8', env: { ...process.env, PATH: `${join(root, 'node_modules', '.bin')}:${process.env.PATH ?? ''}` }
})

test('meshfarm runs from a global install into a prefix and through npx in a project', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-install-'))
  try {
    const tarball = join(dir, npm(['pack', '--pack-destination', dir, '--silent'], root).trim().split('\n').pop()!)
    const prefix = join(dir, 'prefix')
    npm(['install', '-g', '--prefix', prefix, tarball], dir)
    // From another folder, with a PATH whose node (if any) is not the project's: the wrapper finds its own.
    const env = { ...process.env, MESHFARM_HOME: join(dir, 'home'), PATH: `${join(prefix, 'bin')}:/usr/bin:/bin` }
    assert.equal(execFileSync('meshfarm', ['--version'], { cwd: dir, env, encoding: 'utf8' }).trim(), '0.1.0')
    const init = JSON.parse(execFileSync('meshfarm', ['init', '--no-mdns', '--json'], { cwd: dir, env, encoding: 'utf8' })) as { coordinator: string }
    assert.match(init.coordinator, /^12D3KooW/, 'a command that needs Node 24 (libp2p 3) runs')
    const project = join(dir, 'project')
    mkdirSync(project)
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'lab-project', version: '1.0.0', private: true }))
    npm(['install', tarball], project)
    assert.equal(execFileSync('npx', ['--no-install', 'meshfarm', '--version'], { cwd: project, env: { ...env, PATH: `${join(root, 'node_modules', '.bin')}:/usr/bin:/bin` }, encoding: 'utf8' }).trim(), '0.1.0')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
