/** The dispatch curve's picture: points placed on a log x axis, min-max bars, text escaped, well-formed. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { curveSvg } from '../../bench/curve-svg.ts'

test('the dispatch curve places each agent count on a log axis, with its median and min-max bar', () => {
  const svg = curveSvg([
    { agents: 100, median: 9000, min: 8000, max: 9500 },
    { agents: 1, median: 3000, min: 2900, max: 3100 },
    { agents: 10, median: 6000, min: 5000, max: 7000 }
  ], 'a <title> & more')
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
  assert.match(svg, /<\/svg>\n$/)
  assert.ok(svg.includes('a &lt;title&gt; &amp; more'))
  const line = svg.match(/<polyline[^>]* points="([^"]+)"/)![1].split(' ').map(p => p.split(',').map(Number))
  assert.equal(line.length, 3)
  const [x1, x10, x100] = line.map(p => p[0])
  assert.ok(Math.abs((x10 - x1) - (x100 - x10)) < 0.2, 'decades are equally wide')
  const [y1, y10, y100] = line.map(p => p[1])
  assert.ok(y1 > y10 && y10 > y100, 'more tasks per second is higher up')
  assert.equal(svg.match(/<circle /g)?.length, 3)
  assert.ok(svg.includes('<title>10 agents: 6000 tasks/s (5000-7000)</title>'))
})

test('a curve with no finite points is still a picture, not a throw', () => {
  const svg = curveSvg([{ agents: 1, median: Number.NaN, min: Number.NaN, max: Number.NaN }], 'empty')
  assert.match(svg, /<\/svg>\n$/)
  assert.ok(!svg.includes('NaN'))
})
