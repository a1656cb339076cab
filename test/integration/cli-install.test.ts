/**
 * How bin/meshfarm picks what it runs, on real copies of the checkout: the bundle (dist/meshfarm.mjs) only while
 * no source is newer, else the TypeScript sources; `npm ci` on a fresh copy builds the bundle (postinstall) and
 * gives a working CLI; with esbuild missing the install still succeeds and the CLI runs its sources.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..', '..')
const SOURCES = ['bin', 'shared', 'coordinator', 'node']
const PATH = `${join(root, 'node_modules', '.bin')}:/usr/bin:/bin`

function cli (app: string, args: string[], home: string): { code: number, out: string } {
  const r = spawnSync(join(app, 'bin', 'meshfarm'), args, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, PATH, MESHFARM_HOME: home } })
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}`.trim() }
}

test('bin/meshfarm runs the bundle while it is newer than every source, and the sources once any is newer', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-pick-'))
  try {
    const app = join(dir, 'app')
    // preserveTimestamps: the copies keep the checkout's own times, all older than the bundle written below.
    for (const d of [...SOURCES, 'package.json']) cpSync(join(root, d), join(app, d), { recursive: true, preserveTimestamps: true })
    symlinkSync(join(root, 'node_modules'), join(app, 'node_modules'))
    mkdirSync(join(app, 'dist'))
    // A stand-in bundle that says who answered (the real one is built and run in cli-bundle.test.ts).
    const bundle = join(app, 'dist', 'meshfarm.mjs')
    writeFileSync(bundle, "console.log('answered by the bundle')\n")
    const home = join(dir, 'home')
    let t = Date.now() / 1000 + 100
    for (const [i, source] of [['bin', 'meshfarm.ts'], ['shared', 'util/errors.ts'], ['coordinator', 'core.ts'], ['node', 'agent.ts'], ['.', 'package.json']].entries()) {
      t += 100
      utimesSync(bundle, t, t)
      assert.deepEqual(cli(app, ['--version'], home), { code: 0, out: 'answered by the bundle' }, `round ${i}: the bundle is the newest`)
      utimesSync(join(app, source[0], source[1]), t + 10, t + 10)
      assert.deepEqual(cli(app, ['--version'], home), { code: 0, out: '0.1.0' }, `${source.join('/')} is newer than the bundle: the sources run`)
    }
    // A new source file counts as well.
    utimesSync(bundle, t + 100, t + 100)
    assert.equal(cli(app, ['--version'], home).out, 'answered by the bundle')
    writeFileSync(join(app, 'shared', 'new-module.ts'), 'export {}\n')
    utimesSync(join(app, 'shared', 'new-module.ts'), t + 200, t + 200)
    assert.equal(cli(app, ['--version'], home).out, '0.1.0')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('npm ci on a fresh copy gives a working CLI from its bundle; without esbuild the install succeeds and runs the sources', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-ci-'))
  try {
    // The checkout as a clone would have it: the files git tracks or would track, nothing it ignores.
    const clone = join(dir, 'clone')
    mkdirSync(clone)
    const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: root }).toString().split('\0').filter(f => f !== '' && existsSync(join(root, f)))
    for (const f of files) cpSync(join(root, f), join(clone, f))
    const npm = (args: string[]): string => execFileSync('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: clone, encoding: 'utf8', env: { ...process.env, PATH } })
    const installed = npm(['ci'])
    assert.match(installed, /meshfarm: built dist\/meshfarm\.mjs/)
    assert.ok(existsSync(join(clone, 'dist', 'meshfarm.mjs')))
    const home = join(dir, 'home')
    assert.deepEqual(cli(clone, ['--version'], home), { code: 0, out: '0.1.0' })
    const init = cli(clone, ['init', '--no-mdns', '--json'], home)
    assert.equal(init.code, 0, init.out)
    assert.match((JSON.parse(init.out) as { coordinator: string }).coordinator, /^12D3KooW/, 'a command that loads the mesh runs from the bundle')

    // esbuild gone (a platform without its binary, an install that left it out): postinstall notes it, exits 0.
    rmSync(join(clone, 'node_modules', 'esbuild'), { recursive: true, force: true })
    rmSync(join(clone, 'dist'), { recursive: true, force: true })
    const again = npm(['run', 'postinstall'])
    assert.match(again, /meshfarm: no bundle \(.*\); the CLI runs its TypeScript sources/)
    assert.ok(!existsSync(join(clone, 'dist', 'meshfarm.mjs')), 'no half-built bundle left behind')
    assert.deepEqual(cli(clone, ['--version'], home), { code: 0, out: '0.1.0' })
    const status = cli(clone, ['init', '--no-mdns', '--json'], join(dir, 'home2'))
    assert.equal(status.code, 0, status.out)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
