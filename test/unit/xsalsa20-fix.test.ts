import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import xsalsa20 from 'xsalsa20'
import { fixXsalsa20 } from '../../shared/xsalsa20-fix.ts'

const digest = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** Two ciphers alternating megabyte chunks after one has grown the shared memory: a busy private connection. */
function alternate (rounds: number): string[] {
  const a = xsalsa20(new Uint8Array(24).fill(1), new Uint8Array(32).fill(2))
  const b = xsalsa20(new Uint8Array(24).fill(3), new Uint8Array(32).fill(4))
  const outs = [a.update(new Uint8Array(4 << 20))]
  for (let i = 0; i < rounds; i++) outs.push((i % 2 === 1 ? a : b).update(new Uint8Array(1 << 20).fill(i)))
  a.finalize()
  b.finalize()
  return outs.map(digest)
}

test('the private-network cipher survives large chunks in both directions, with the same output', () => {
  fixXsalsa20()
  // Unpatched, this died after about 55 rounds with "WebAssembly.Memory.grow(): Maximum memory size exceeded".
  const first = alternate(400)
  assert.equal(first.length, 401)
  // The keystream is unchanged: fresh ciphers with the same keys give the same bytes.
  assert.deepEqual(alternate(400), first)
  // Chunking does not matter for a stream cipher: one 3-byte-misaligned split gives the same bytes as one call.
  const whole = xsalsa20(new Uint8Array(24), new Uint8Array(32)).update(new Uint8Array(200_003))
  const parts = xsalsa20(new Uint8Array(24), new Uint8Array(32))
  const joined = Buffer.concat([parts.update(new Uint8Array(70_001)), parts.update(new Uint8Array(130_002))])
  assert.equal(digest(joined), digest(whole))
})
