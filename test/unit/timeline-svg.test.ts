import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PNG } from 'pngjs'
import { assignLanes, barsFromRecords, escapeXml, formatOffset, OUTCOME_COLOURS, renderTimelineSvg, tickStep, type TimelineBar } from '../../shared/report/timeline-svg.ts'
import { svgToPng } from '../../shared/report/png.ts'
import { rec, T0 } from '../helpers/records.ts'

const barsIn = (svg: string): string[] => svg.match(/<rect class="bar [^>]*>/g) ?? []
const attr = (el: string, name: string): number => Number(new RegExp(` ${name}="([^"]*)"`).exec(el)![1])

test('one bar per task attempt that ran, on its host row, with its outcome', () => {
  const records = [
    rec(0, 'alpha', 0, 4), rec(1, 'alpha', 1, 3), rec(2, 'beta', 0, 10),
    rec(3, 'beta', 2, 5, { state: 'failed', exitCode: 2 }),
    rec(4, 'gamma', 3, 3.5, { state: 'failed', exitCode: null, failure: { kind: 'agent-lost', message: 'lost', retryable: true } }),
    rec(5, 'gamma', 4, null, { state: 'running' }),
    rec(6, null, null, null, { state: 'queued' }),
    rec(7, 'gamma', 1, 2, { state: 'cancelled' }),
    rec(8, null, null, null, { state: 'cancelled' }),
    rec(9, 'alpha', 6, null, { state: 'suspended' }),
    rec(10, null, null, null, { state: 'held' })
  ]
  const svg = renderTimelineSvg(barsFromRecords(records), { now: T0 + 12_000, title: 'job 7' })
  const bars = barsIn(svg)
  assert.equal(bars.length, 8, 'tasks that never started have no bar')
  assert.deepEqual(bars.map(b => /data-task="(\d+)"/.exec(b)![1]).sort(), ['0', '1', '2', '3', '4', '5', '7', '9'])
  const outcome = (i: number): string => /class="bar bar-(\w+)"/.exec(bars.find(b => b.includes(`data-task="${i}"`))!)![1]
  assert.equal(outcome(0), 'done')
  assert.equal(outcome(3), 'failed')
  assert.equal(outcome(4), 'lost')
  assert.equal(outcome(5), 'running')
  assert.equal(outcome(7), 'cancelled')
  assert.equal(outcome(9), 'suspended')
  // Overlapping attempts on one host get different lanes; the running one reaches `now`.
  const b0 = bars.find(b => b.includes('data-task="0"'))!
  const b1 = bars.find(b => b.includes('data-task="1"'))!
  assert.notEqual(attr(b0, 'y'), attr(b1, 'y'))
  const b5 = bars.find(b => b.includes('data-task="5"'))!
  assert.ok(Math.abs(attr(b5, 'x') + attr(b5, 'width') - (960 - 16)) < 0.2, 'running bar ends at the right edge (now)')
  for (const o of ['done (3)', 'failed (1)', 'lost (1)', 'cancelled (1)', 'running (1)', 'suspended (1)']) assert.ok(svg.includes(o), `legend names ${o}`)
  assert.match(svg, /class="host"[^>]*>alpha</)
})

test('hostile names are escaped and the result is well-formed SVG', () => {
  const evil = '"><script>alert(1)</script><x a=\'1\' & \u0000\u001b[31m'
  const bars: TimelineBar[] = [{ host: evil, index: 0, name: evil, start: T0, end: T0 + 1000, outcome: 'failed' }]
  const svg = renderTimelineSvg(bars, { now: T0 + 1000, title: evil })
  assert.ok(!svg.includes('<script'), 'no script element')
  assert.ok(!svg.includes('\u0000') && !svg.includes('\u001b'), 'no characters XML forbids')
  assert.ok(svg.includes('&lt;script&gt;'))
  assert.equal(barsIn(svg).length, 1)
  assert.doesNotThrow(() => svgToPng(svg), 'resvg parses it')
  assert.equal(escapeXml('a&b<c>"d\''), 'a&amp;b&lt;c&gt;&quot;d&#39;')
})

test('time axis: readable steps and labels', () => {
  assert.equal(tickStep(800), 100)
  assert.equal(tickStep(60_000), 10_000)
  assert.equal(tickStep(3_600_000), 600_000)
  assert.equal(tickStep(30 * 86_400_000), 604_800_000)
  assert.equal(formatOffset(0), '0s')
  assert.equal(formatOffset(500), '0.5s')
  assert.equal(formatOffset(45_000), '45s')
  assert.equal(formatOffset(150_000), '2m30s')
  assert.equal(formatOffset(3_900_000), '1h05m')
  assert.equal(formatOffset(2 * 86_400_000), '2d')
  const svg = renderTimelineSvg(barsFromRecords([rec(0, 'a', 0, 60), rec(1, 'a', 30, 95)]), { now: T0 })
  const ticks = [...svg.matchAll(/class="tick"[^>]*>([^<]*)</g)].map(m => m[1])
  assert.deepEqual(ticks, ['0s', '15s', '30s', '45s', '1m', '1m15s', '1m30s'])
})

test('lanes: never two overlapping intervals in one lane, as few lanes as the most overlap', () => {
  let seed = 7
  const rand = (): number => { seed = ((Math.imul(seed, 1103515245) + 12345) >>> 0) % 2 ** 31; return seed / 2 ** 31 }
  for (let round = 0; round < 50; round++) {
    const iv = Array.from({ length: 40 }, () => { const s = Math.floor(rand() * 100); return { start: s, end: s + 1 + Math.floor(rand() * 20) } })
    const { lane, lanes } = assignLanes(iv)
    for (let i = 0; i < iv.length; i++) {
      for (let j = i + 1; j < iv.length; j++) {
        if (lane[i] === lane[j]) assert.ok(iv[i].end <= iv[j].start || iv[j].end <= iv[i].start, `round ${round}: ${i} and ${j} overlap in lane ${lane[i]}`)
      }
    }
    const depth = Math.max(...iv.map(a => iv.filter(b => b.start <= a.start && a.start < b.end).length))
    assert.equal(lanes, depth, `round ${round}`)
  }
})

test('empty and oversized timelines say so', () => {
  assert.match(renderTimelineSvg([], { now: T0 }), /no task has started yet/)
  const many = Array.from({ length: 50 }, (_, i) => rec(i, `h${i % 3}`, i, i + 1))
  const svg = renderTimelineSvg(barsFromRecords(many), { now: T0, maxBars: 20 })
  assert.equal(barsIn(svg).length, 20)
  assert.match(svg, /showing the first 20 of 50 attempts/)
})

test('the PNG shows the bars in their outcome colours', () => {
  const svg = renderTimelineSvg(barsFromRecords([rec(0, 'alpha', 0, 10), rec(1, 'beta', 0, 10, { state: 'failed', exitCode: 1 })]), { now: T0 })
  const png = PNG.sync.read(svgToPng(svg))
  assert.equal(png.width, 960)
  const count = (hex: string): number => {
    const [r, g, b] = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16))
    let n = 0
    for (let i = 0; i < png.data.length; i += 4) if (png.data[i] === r && png.data[i + 1] === g && png.data[i + 2] === b) n++
    return n
  }
  assert.ok(count(OUTCOME_COLOURS.done) > 5000, 'a long blue bar')
  assert.ok(count(OUTCOME_COLOURS.failed) > 2000, 'a hatched vermillion bar')
})
