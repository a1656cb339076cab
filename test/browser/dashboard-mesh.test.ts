/**
 * The dashboard of a REAL coordinator (`meshfarm coordinator --dashboard 0`) with two real agents, in a real
 * headless Chromium (Debian's, driven by playwright-core): log in with the code `meshfarm dashboard` prints,
 * see the agents and the jobs, a task finishing updates the page live, cancel through the coordinator, a reader
 * without actions, a removed member logged out, refusals without the cookie and for a foreign Host or Origin,
 * and a screenshot checked for content (written to docs/dashboard.png, with `meshfarm status` in docs/status.txt).
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { PNG } from 'pngjs'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { connect, type MeshClient } from '../../shared/client/client.ts'
import { parseJobFile } from '../../shared/client/spec.ts'
import { OUTCOME_COLOURS } from '../../shared/report/timeline-svg.ts'
import { runCli, runCliJson, until } from '../helpers/cli.ts'
import { chromiumArgs, ensureChromium } from './chromium.ts'

const check = await ensureChromium()
const skip = check.ok ? false : `no Chromium: ${check.reason}`
if (!check.ok) console.log(`browser tests skipped: ${check.reason}`)
const timeout = 60_000
// Callbacks given to page.evaluate run in the page; this file is type-checked without the DOM library.
declare const document: any
declare const window: any

let dir: string
let gate: string
let mesh: LocalMesh
let maria: string
let ana: string
let rita: string
let admin: MeshClient
let url = ''
let calibrate = 0
let sweep = 0
let browser: Browser
let ctx: BrowserContext
let page: Page
let attacker: Server
let attackerPort = 0
type Code = { url: string, code: string, expiresAt: number }
type Run = Awaited<ReturnType<typeof runCli>>
/** CLI runs started early, beside the slower setup (each is a process start), awaited by their tests. */
let ritaCode: Promise<Code>
let statusRuns: Promise<[Run, Run]>

const DOCS = new URL('../../docs/', import.meta.url)

/** A tasklist job from lines, submitted by whoever `client` is. */
async function submitLines (client: MeshClient, name: string, lines: string[], retries = 0): Promise<number> {
  const file = join(dir, `${name}.txt`)
  writeFileSync(file, lines.join('\n') + '\n')
  return (await client.submit(parseJobFile(file, { name, retries }))).jobId
}

before(async () => {
  if (!check.ok) return
  console.log(`browser: ${check.version} (${check.executablePath})`)
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-dash-'))
  gate = join(dir, 'gate')
  mkdirSync(gate)
  mesh = await startLocalMesh({
    dir,
    // No prefetch: a task held at an agent behind a gated one would not start.
    coordinatorArgs: ['--dashboard', '0', '--prefetch', '0'],
    env: { MESHFARM_GPU_DETECT: '0' },
    // Tasks here look at the test's gate folder, outside their own, which an isolated task cannot: unisolated.
    agents: [
      { ip: '127.0.0.2', hostname: 'lab-alpha', slots: 2, cores: 8, gpus: '0,1', extraArgs: ['--isolation', 'none'] },
      { ip: '127.0.0.3', hostname: 'lab-beta', slots: 2, cores: 4, extraArgs: ['--isolation', 'none'] }
    ]
  })
  url = mesh.coordinator.output().match(/dashboard: listening on (http:\/\/127\.0\.0\.1:\d+\/)/)![1]
  maria = await mesh.newHome('maria', { roles: ['submitter', 'admin'] })
  ana = await mesh.newHome('ana', { roles: ['submitter'] })
  rita = await mesh.newHome('rita', { roles: ['agent'] })
  admin = await connect({ home: maria })
  const anaClient = await connect({ home: ana })
  try {
    // Every task takes over a second: agents then hold no tasks beyond their slots (short tasks would queue
    // deeper at an agent, and a quick task could wait there behind a gated one).
    // maria's calibration: two tasks fail for good, one fails once and succeeds on its retry.
    calibrate = await submitLines(admin, 'calibrate', [
      'sleep 1.1; echo ok 0',
      'sleep 1.2; echo ok 1',
      'sleep 1.1; echo "Traceback (most recent call last):" >&2; echo \'  File "fit.py", line 42, in <module>\' >&2; echo "ValueError: the fit did not converge" >&2; exit 3',
      `sleep 1.1; mkdir ${gate}/retried 2>/dev/null && { echo "stale file handle" >&2; exit 1; }; echo ok 3`,
      'sleep 1.3; echo ok 4',
      'sleep 1.1; echo "MemoryError: asked for 64 GiB" >&2; exit 2'
    ], 1)
    ritaCode = runCliJson<Code>(rita, ['dashboard'])
    ritaCode.catch(() => {}) // its test reports a failure
    assert.notEqual((await admin.watch(calibrate)).state, 'active')
    // ana's sweep: four tasks that end (one fails), then four that wait for their gate file.
    sweep = await submitLines(anaClient, 'sweep', [
      'sleep 1.1; echo point 0', 'sleep 1.2; echo point 1', 'sleep 1.1; echo "out of memory at step 1200" >&2; exit 2', 'sleep 1.3; echo point 3',
      ...[4, 5, 6, 7].map(i => `while [ ! -e ${gate}/go-${i} ]; do sleep 0.05; done; echo point ${i}`)
    ])
    let last = ''
    await until(async () => { const [s] = await admin.status(sweep); last = JSON.stringify(s.counts); return s.counts.done + s.counts.failed === 4 && s.counts.running === 4 }, 60_000, 'the sweep half done')
      .catch(err => { throw new Error(`${String(err)}: ${last}`) })
    statusRuns = Promise.all([runCli(maria, ['status'], { env: { NO_COLOR: '1' } }), runCli(maria, ['status', String(calibrate)], { env: { NO_COLOR: '1' } })])
    statusRuns.catch(() => {})
  } finally {
    await anaClient.close()
  }
  attacker = createServer((_req, res) => {
    res.setHeader('Content-Type', 'text/html')
    res.end(`<!doctype html><title>attacker</title><form id="f" method="post" action="${url}api/jobs/${sweep}/cancel"></form>
<script>
Promise.allSettled([
  fetch('${url}api/jobs/${sweep}', { method: 'DELETE', credentials: 'include' }),
  fetch('${url}api/jobs/${sweep}/cancel', { method: 'POST', credentials: 'include', mode: 'no-cors' })
]).finally(() => document.getElementById('f').submit())
</script>`)
  })
  await new Promise<void>(resolve => attacker.listen(0, '127.0.0.1', resolve))
  attackerPort = (attacker.address() as AddressInfo).port
  browser = await chromium.launch({ executablePath: check.executablePath, headless: true, args: chromiumArgs(['--host-resolver-rules=MAP evil.test 127.0.0.1']) })
  console.log(`browser version (from the browser): ${browser.version()}`)
  ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 } })
  page = await ctx.newPage()
}, { timeout: 180_000 })

after(async () => {
  await browser?.close()
  attacker?.close()
  await admin?.close()
  await mesh?.stop()
  if (dir != null && process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})

/** Logs `p` in with a code from `meshfarm dashboard --json` (run from `home` now, or given). */
async function login (p: Page, from: string | Promise<Code>): Promise<Code> {
  const d = typeof from === 'string' ? await runCliJson<Code>(from, ['dashboard']) : await from
  await p.goto(d.url)
  assert.match(p.url(), /\/login$/, 'no session: the login form')
  await p.fill('#code', d.code)
  await Promise.all([p.waitForURL(d.url), p.click('button[type=submit]')])
  await p.locator('#live[data-state="live"]').waitFor()
  return d
}

test('`meshfarm dashboard` prints the address and a code; with it the page shows the agents and the jobs by person', { skip, timeout }, async () => {
  const [human, d] = await Promise.all([runCli(maria, ['dashboard']), login(page, maria)])
  assert.equal(human.code, 0, human.stderr)
  assert.match(human.stdout, new RegExp(`^dashboard: ${url.replace(/\./g, '\\.')}\nlogin code: [0-9A-Z]{4}(-[0-9A-Z]{4}){7}   \\(works once, until .+\\)\n`))
  assert.equal(d.url, url)
  assert.match(await page.locator('#me').innerText(), /^maria \(admin\)$/)
  await page.locator('#agents tbody tr').nth(1).waitFor()
  const agents = await page.locator('#agents tbody tr').allInnerTexts()
  assert.match(agents.find(r => r.startsWith('lab-alpha'))!, /up\s+2 of 2 slots\s+8\s+.*GiB\s+2: 0 .*1 /s)
  assert.match(agents.find(r => r.startsWith('lab-beta'))!, /up\s+2 of 2 slots\s+4\s+.*none/s)
  for (const row of agents) assert.match(row, /\s(now|\d s ago)$/, 'heard from a moment ago')
  assert.match(await page.locator('#mesh-summary').innerText(), /^2 agents \(2 up\): 4 of 4 slots busy, 12 cores, 2 GPUs\.$/)
  assert.deepEqual(await page.locator('.person h3').allInnerTexts(), ['ana — 1 job, 1 active', 'maria — 1 job, 0 active'])
  assert.equal(await page.locator(`tr[data-job="${sweep}"] .progress-text`).innerText(), '4 of 8 finished (3 done, 1 failed), 4 running')
  assert.equal(await page.locator(`tr[data-job="${calibrate}"] .state`).innerText(), 'failed')
  // The code worked once.
  const again = await ctx.browser()!.newPage()
  await again.goto(`${url}login`)
  await again.fill('#code', d.code)
  await again.click('button[type=submit]')
  assert.match(await again.locator('.error').innerText(), /unknown, used or expired/)
  await again.close()
})

test('a finished job: failures with the end of their stderr (from the coordinator\'s store), earlier attempts in the timeline', { skip, timeout }, async () => {
  await page.locator(`tr[data-job="${calibrate}"] button`, { hasText: `Show job ${calibrate}` }).click()
  await page.locator('#job-h', { hasText: `Job ${calibrate} calibrate` }).waitFor()
  await page.locator('.failure[data-task="2"] pre', { hasText: 'ValueError: the fit did not converge' }).waitFor()
  assert.match(await page.locator('.failure[data-task="2"]').innerText(), /task 2 task-2 on lab-\w+: exit code 3.*\(2 attempts\)[\s\S]*File "fit.py", line 42/)
  assert.match(await page.locator('.failure[data-task="5"]').innerText(), /MemoryError: asked for 64 GiB/)
  assert.equal(await page.locator('#tasks tr[data-task="3"]').getAttribute('data-state'), 'done')
  const svg = await page.evaluate(async (id: number) => await (await fetch(`/api/jobs/${id}/timeline.svg`)).text(), calibrate)
  const bars = svg.match(/<rect class="bar [^>]*>/g) ?? []
  assert.equal(bars.filter(b => !b.includes('bar-earlier')).length, 6, 'one bar per task')
  // Retries: task 2 and 5 failed twice, task 3 once before it succeeded.
  assert.deepEqual(bars.filter(b => b.includes('bar-earlier')).map(b => Number(/data-task="(\d+)"/.exec(b)![1])).sort(), [2, 3, 5])
})

test('a task finishing updates the page live, without a reload', { skip, timeout }, async () => {
  await page.locator(`tr[data-job="${sweep}"] button`, { hasText: `Show job ${sweep}` }).click()
  await page.locator('#tasks tr[data-task="4"][data-state="running"]').waitFor()
  await page.evaluate(() => { window.notReloaded = true })
  writeFileSync(join(gate, 'go-4'), '')
  await page.locator('#event-log li[data-type="task.finished"]', { hasText: `job ${sweep} task 4` }).waitFor()
  await page.locator('#tasks tr[data-task="4"][data-state="done"]').waitFor()
  await page.locator(`tr[data-job="${sweep}"] .progress-text`, { hasText: /^5 of 8 finished \(4 done, 1 failed\), 3 running$/ }).waitFor()
  const seq = Number(await page.evaluate(() => document.body.dataset.lastSeq))
  await page.waitForFunction(s => Number(document.getElementById('timeline')?.dataset.seq) >= s, seq)
  assert.equal(await page.evaluate(() => window.notReloaded), true)
})

test('without the cookie the API and the event stream answer 401', { skip, timeout }, async () => {
  const other = await browser.newContext()
  const p = await other.newPage()
  await p.goto(`${url}login`)
  const statuses = await p.evaluate(async (id: number) => {
    const paths = ['/api/me', '/api/overview', '/api/events', `/api/jobs/${id}/tasks`, `/api/jobs/${id}/timeline.svg`, `/api/jobs/${id}/failures`]
    return await Promise.all(paths.map(async path => (await fetch(path)).status))
  }, sweep)
  assert.deepEqual(statuses, [401, 401, 401, 401, 401, 401])
  const cancel = await p.evaluate(async (id: number) => (await fetch(`/api/jobs/${id}/cancel`, { method: 'POST' })).status, sweep)
  assert.equal(cancel, 401)
  await other.close()
})

test('a foreign Host is refused (DNS rebinding), and a page of another origin cannot cancel, even beside a session', { skip, timeout }, async () => {
  const p = await ctx.newPage()
  const rebound = await p.goto(`http://evil.test:${new URL(url).port}/`)
  assert.equal(rebound!.status(), 421)
  assert.equal(await p.evaluate(async () => (await fetch('/api/overview')).status), 421)
  const before = mesh.coordinator.output().length
  await p.goto(`http://evil.test:${attackerPort}/`)
  await p.waitForURL(`${url}api/jobs/${sweep}/cancel`)
  assert.match(await p.locator('body').innerText(), /cross-origin request refused/)
  const refused = mesh.coordinator.output().slice(before).split('\n').filter(l => /^dashboard: \w+ \/api\/jobs\/\d+(\/cancel)? refused: (cross-origin|method OPTIONS)/.test(l))
  assert.deepEqual(refused.map(l => l.split(' ')[1]).sort(), ['OPTIONS', 'POST', 'POST'], 'the fetches and the form reached the server and were refused')
  const [s] = await admin.status(sweep)
  assert.equal(s.state, 'active')
  assert.equal(s.counts.cancelled, 0)
  await p.close()
})

test('a reader sees the mesh without actions; a member removed from the mesh is logged out at once', { skip, timeout }, async () => {
  const other = await browser.newContext()
  const p = await other.newPage()
  await login(p, ritaCode)
  assert.match(await p.locator('#me').innerText(), /^rita \(reader\)$/)
  await p.locator(`tr[data-job="${sweep}"]`).waitFor()
  assert.equal(await p.locator('button.danger').count(), 0, 'no cancel for a reader')
  const forbidden = await p.evaluate(async (id: number) => (await fetch(`/api/jobs/${id}/cancel`, { method: 'POST' })).status, sweep)
  assert.equal(forbidden, 403)
  const id = (await admin.accessList()).find(m => m.name === 'rita')!.peerId
  await admin.accessRemove(id)
  assert.equal(await p.evaluate(async () => (await fetch('/api/me')).status), 401)
  assert.match(mesh.coordinator.output(), /dashboard: rita is no longer a member: session ended/)
  await other.close()
})

/** Pixels within `tolerance` of a colour, from row `fromY` down (the timeline's bars start below its legend). */
function countNear (png: PNG, hex: string, fromY = 0, tolerance = 6): number {
  const [r, g, b] = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16))
  let n = 0
  for (let i = fromY * png.width * 4; i < png.data.length; i += 4) {
    if (Math.abs(png.data[i] - r) <= tolerance && Math.abs(png.data[i + 1] - g) <= tolerance && Math.abs(png.data[i + 2] - b) <= tolerance) n++
  }
  return n
}

test('the screenshot shows the agents, the jobs and the timeline in its outcome colours', { skip, timeout }, async () => {
  await page.waitForFunction(() => document.getElementById('timeline').naturalWidth > 0)
  const timeline = PNG.sync.read(await page.locator('#timeline').screenshot())
  const below = Math.round(timeline.height * 70 / await page.locator('#timeline').evaluate(img => img.naturalHeight))
  const done = countNear(timeline, OUTCOME_COLOURS.done, below)
  const failed = countNear(timeline, OUTCOME_COLOURS.failed, below)
  const running = countNear(timeline, OUTCOME_COLOURS.running, below)
  console.log(`timeline ${timeline.width}x${timeline.height}: done ${done} px, failed ${failed} px, running ${running} px`)
  assert.ok(done > 200 && failed > 20 && running > 200, 'done, failed and running bars drawn')
  // From the top: the mesh, the jobs by person and the selected job's timeline and failures.
  await page.evaluate(() => { window.scrollTo(0, 0) })
  const shot = await page.screenshot({ fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1240 } })
  const full = PNG.sync.read(shot)
  let ink = 0
  for (let i = 0; i < full.data.length; i += 4) if (full.data[i] < 128 && full.data[i + 1] < 128 && full.data[i + 2] < 128) ink++
  assert.ok(ink > full.width * full.height * 0.01, `text on the page: ${ink} dark px`)
  const text = await page.locator('body').innerText()
  for (const want of ['lab-alpha', 'lab-beta', 'ana', 'maria', 'sweep', 'calibrate', 'out of memory at step 1200']) assert.ok(text.includes(want), want)
  mkdirSync(DOCS, { recursive: true })
  writeFileSync(new URL('dashboard.png', DOCS), shot)
})

test('`meshfarm status` of a job with failures, captured for the README', { skip, timeout }, async () => {
  const [all, one] = await statusRuns
  assert.equal(all.code, 0, all.stderr)
  assert.equal(one.code, 0, one.stderr)
  assert.match(one.stdout, /task \d+\.2 task-2: .*stderr: .*ValueError: the fit did not converge/)
  assert.match(one.stdout, /task \d+\.5 task-5: .*MemoryError: asked for 64 GiB/)
  writeFileSync(new URL('status.txt', DOCS), `$ meshfarm status\n${all.stdout}\n$ meshfarm status ${calibrate}\n${one.stdout}`)
})

test('cancel from the page goes through the coordinator: the running tasks stop', { skip, timeout }, async () => {
  await page.locator(`tr[data-job="${sweep}"] button.danger`, { hasText: 'Cancel…' }).click()
  await page.locator(`tr[data-job="${sweep}"] button.danger`, { hasText: `Yes, cancel job ${sweep}` }).click()
  await page.locator(`tr[data-job="${sweep}"] .state`, { hasText: 'cancelled' }).waitFor()
  const [s] = await admin.status(sweep)
  assert.equal(s.state, 'cancelled')
  assert.equal(s.counts.cancelled, 3)
  assert.match(mesh.coordinator.output(), new RegExp(`dashboard: maria cancelled job ${sweep} \\(3 tasks\\)`))
  await page.locator('#agents tbody tr', { hasText: /lab-alpha.*\b0 of 2 slots/ }).waitFor()
})
