/**
 * The dashboard in a real headless Chromium (Debian's, driven by playwright-core) against a scripted mesh, for
 * what a real mesh cannot be made to show on cue: harvest states, a Slurm bridge's allocations, a lost agent,
 * every outcome colour, a stream dropped at a chosen moment (the page resumes with Last-Event-ID and misses
 * nothing), and keyboard use. dashboard-mesh.test.ts drives a real coordinator and agents.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { chromium, type Browser, type Page } from 'playwright-core'
import { PNG } from 'pngjs'
import { startDashboard, type Dashboard } from '../../coordinator/dashboard/server.ts'
import { OUTCOME_COLOURS } from '../../shared/report/timeline-svg.ts'
import { MemoryMesh } from '../helpers/memory-mesh.ts'
import { chromiumArgs, ensureChromium } from './chromium.ts'

const ana = { peerId: 'peer-ana', name: 'ana', role: 'submitter' as const }
const bo = { peerId: 'peer-bo', name: 'bo', role: 'submitter' as const }

let mesh: MemoryMesh
let d: Dashboard
let browser: Browser
let page: Page
let sweep = 0
let small = 0
let alpha = ''
let beta = ''
const logs: string[] = []
const check = await ensureChromium()
const skip = check.ok ? false : `no Chromium: ${check.reason}`
if (!check.ok) console.log(`browser tests skipped: ${check.reason}`)
// Callbacks given to page.evaluate run in the page; this file is type-checked without the DOM library.
declare const document: any

/** A mesh mid-way: three agents, bo's finished job, ana's sweep half done (one failure), ana's small job queued. */
function scriptMesh (): void {
  mesh = new MemoryMesh(Date.now() - 90_000)
  alpha = mesh.addAgent('alpha', { slots: 4, cores: 8, memoryMb: 32768, gpus: [{ index: 0, model: 'RTX 4090', memoryMb: 24564 }, { index: 1, model: 'RTX 4090', memoryMb: 24564 }], name: 'lab-07-owner', status: { harvest: { lending: true, ownerPresent: false, reason: 'idle for 12 min' } } })
  beta = mesh.addAgent('beta', { slots: 2, cores: 4, backend: 'slurm', status: { notes: ['allocation 4711 running on 2 nodes (gpu partition)'] } })
  mesh.addAgent('gamma', { slots: 2, state: 'lost' })
  const render = mesh.submit(bo, 'bo-render', 3)
  for (let i = 0; i < 3; i++) { mesh.start(render, i, beta); mesh.tick(4000); mesh.finish(render, i) }
  sweep = mesh.submit(ana, 'ana-sweep', 12)
  const hosts = [alpha, alpha, alpha, beta, beta, alpha]
  for (let i = 0; i < 6; i++) mesh.start(sweep, i, hosts[i])
  mesh.tick(9000)
  for (let i = 0; i < 6; i++) {
    mesh.tick(2500)
    if (i === 4) mesh.finish(sweep, i, { exitCode: 3, stderr: 'Traceback (most recent call last):\n  File "sim.py", line 7\nValueError: x must be positive\n' })
    else mesh.finish(sweep, i)
  }
  for (let i = 6; i < 9; i++) mesh.start(sweep, i, i === 8 ? beta : alpha)
  mesh.tick(6000)
  small = mesh.submit(ana, 'ana-small', 2)
}

before(async () => {
  if (!check.ok) return
  console.log(`browser: ${check.version} (${check.executablePath})`)
  scriptMesh()
  d = await startDashboard({ source: mesh, port: 0, now: () => Math.max(Date.now(), mesh.clock), log: l => logs.push(l), retryMs: 300 })
  browser = await chromium.launch({
    executablePath: check.executablePath,
    headless: true,
    args: chromiumArgs()
  })
  console.log(`browser version (from the browser): ${browser.version()}`)
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
})

after(async () => {
  await browser?.close()
  await d?.close()
})

const timeout = 60_000

test('login with a one-time code: the page shows the agents and the jobs by person', { skip, timeout }, async () => {
  await page.goto(d.url)
  assert.match(page.url(), /\/login$/, 'no session: the login form')
  const code = mesh.login(ana)
  await page.fill('#code', code)
  await Promise.all([page.waitForURL(d.url), page.click('button[type=submit]')])
  await page.locator('#live[data-state="live"]').waitFor()
  await page.locator('#agents tbody tr').nth(2).waitFor()
  const agents = await page.locator('#agents tbody tr').allInnerTexts()
  assert.match(agents.find(r => r.startsWith('alpha'))!, /up\s+2 of 4 slots.*\s8\s.*32\.0 GiB\s+2: 0 RTX 4090, 1 RTX 4090\s+lab-07-owner\s+lending, owner away, idle for 12 min/s)
  assert.match(agents.find(r => r.startsWith('beta'))!, /1 of 2 slots.*slurm: allocation 4711 running on 2 nodes \(gpu partition\)/s)
  assert.match(agents.find(r => r.startsWith('gamma'))!, /lost/)
  assert.match(await page.locator('#mesh-summary').innerText(), /3 agents \(2 up\)/)
  assert.match(await page.locator('#me').innerText(), /ana \(submitter\)/)
  const people = await page.locator('.person h3').allInnerTexts()
  assert.deepEqual(people, ['ana — 2 jobs, 2 active', 'bo — 1 job, 0 active'])
  assert.match(await page.locator(`tr[data-job="${sweep}"] .progress-text`).innerText(), /^6 of 12 finished \(5 done, 1 failed\), 3 running, 3 queued$/)
  assert.match(await page.locator('#job-h').innerText(), new RegExp(`Job ${sweep} ana-sweep`))
  assert.match(await page.locator('#failures').innerText(), /task 4 ana-sweep-4 on beta: exit code 3[\s\S]*ValueError: x must be positive/)
  // Cancel is offered on ana's own jobs only.
  assert.equal(await page.locator(`tr[data-job="${sweep}"] button.danger`).count(), 1)
  assert.equal(await page.locator('tr[data-job="1"] button.danger').count(), 0)

  const second = await browser.newPage()
  await second.goto(`${d.url}login`)
  await second.fill('#code', code)
  await second.click('button[type=submit]')
  await second.locator('.error').waitFor()
  assert.match(await second.locator('.error').innerText(), /unknown, used or expired/)
  assert.match(second.url(), /\/login$/)
  await second.close()
})

test('a task finishing updates the page live; the timeline follows', { skip, timeout }, async () => {
  const seqBefore = Number(await page.locator('#timeline').getAttribute('data-seq'))
  mesh.tick(1500)
  mesh.finish(sweep, 6)
  const seq = mesh.lastSeq()
  await page.locator(`#event-log li[data-seq="${seq}"]`).waitFor()
  await page.locator(`tr[data-job="${sweep}"] .progress-text`, { hasText: /^7 of 12 finished \(6 done, 1 failed\), 2 running/ }).waitFor()
  await page.locator('#tasks tr[data-task="6"][data-state="done"]').waitFor()
  await page.waitForFunction(s => Number(document.getElementById('timeline')?.dataset.seq) >= s, seq)
  assert.ok(seq > seqBefore)
  await page.locator('#agents tbody tr', { hasText: /alpha.*\b1 of 4 slots/ }).waitFor()
})

test('after a dropped stream the page reconnects with Last-Event-ID and misses nothing', { skip, timeout }, async () => {
  const first = mesh.lastSeq()
  await page.locator(`#event-log li[data-seq="${first}"]`).waitFor()
  d.dropStreams()
  assert.equal(d.streams(), 0)
  // While the page is away:
  mesh.tick(800)
  mesh.finish(sweep, 7)
  mesh.start(sweep, 9, beta)
  mesh.tick(700)
  mesh.finish(sweep, 8, { exitCode: 1, stderr: 'out of memory\n' })
  const last = mesh.lastSeq()
  await page.locator(`#event-log li[data-seq="${last}"]`).waitFor()
  assert.ok(logs.some(l => l === `dashboard: a stream resumes after ${first} (${last - first} events)`), 'resumed from the last id, not a fresh start')
  const seqs = (await page.locator('#event-log li').evaluateAll(lis => lis.map(li => Number((li as any).dataset.seq)))).reverse()
  const want = mesh.events.map(e => e.seq).filter(s => s > seqs[0])
  assert.deepEqual(seqs.slice(1), want, 'every event once, in order')
  await page.locator('.failure[data-task="8"]', { hasText: 'out of memory' }).waitFor()
})

test('keyboard: a job is shown and cancelled without a mouse', { skip, timeout }, async () => {
  await page.locator('body').focus()
  let label = ''
  for (let i = 0; i < 60 && label !== 'Show job 1'; i++) {
    await page.keyboard.press('Tab')
    label = await page.evaluate(() => document.activeElement?.textContent ?? '')
  }
  assert.equal(label, 'Show job 1')
  await page.keyboard.press('Enter')
  await page.locator('#job-h', { hasText: 'Job 1 bo-render' }).waitFor()
  await page.locator(`tr[data-job="${small}"] button.danger`).focus()
  await page.keyboard.press('Enter')
  await page.locator(`tr[data-job="${small}"] button.danger`, { hasText: `Yes, cancel job ${small}` }).focus()
  await page.keyboard.press('Enter')
  await page.locator(`tr[data-job="${small}"] .state`, { hasText: 'cancelled' }).waitFor()
  assert.equal(mesh.jobs.get(small)!.state, 'cancelled')
  await page.locator(`tr[data-job="${sweep}"] button`, { hasText: `Show job ${sweep}` }).click()
  await page.locator('#job-h', { hasText: `Job ${sweep} ana-sweep` }).waitFor()
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

test('the screenshot shows the timeline with each outcome\'s colour', { skip, timeout }, async () => {
  const seq = mesh.lastSeq()
  await page.waitForFunction(s => Number(document.getElementById('timeline')?.dataset.seq) >= s, seq)
  await page.waitForFunction(() => document.getElementById('timeline').naturalWidth > 0)
  const timeline = PNG.sync.read(await page.locator('#timeline').screenshot())
  const px = timeline.width * timeline.height
  const bars = Math.round(timeline.height * 70 / await page.locator('#timeline').evaluate(img => img.naturalHeight))
  const done = countNear(timeline, OUTCOME_COLOURS.done, bars)
  const failed = countNear(timeline, OUTCOME_COLOURS.failed, bars)
  const running = countNear(timeline, OUTCOME_COLOURS.running, bars)
  console.log(`timeline ${timeline.width}x${timeline.height}: done ${done} px, failed ${failed} px, running ${running} px`)
  assert.ok(done > px * 0.02, `done bars: ${done} of ${px} px`)
  assert.ok(failed > 100, `failed bars: ${failed} px`)
  assert.ok(running > 100, `running bars: ${running} px`)
  assert.ok(countNear(timeline, OUTCOME_COLOURS.lost, bars) < 20, 'no lost attempt, no lost colour under the legend')
  assert.ok(countNear(timeline, OUTCOME_COLOURS.lost) > 20, 'but the legend shows it')

  const shot = await page.screenshot({ fullPage: true })
  const full = PNG.sync.read(shot)
  let ink = 0
  for (let i = 0; i < full.data.length; i += 4) if (full.data[i] < 128 && full.data[i + 1] < 128 && full.data[i + 2] < 128) ink++
  assert.ok(ink > full.width * full.height * 0.01, `text on the page: ${ink} dark px`)
})
