// The plain Node baseline: N runs of a command, `concurrency` at a time, from a small process.
// Usage: node spawn-loop.mjs N CONCURRENCY COMMAND [ARGS...]
import { spawn } from 'node:child_process'

const [n, concurrency, cmd, ...args] = process.argv.slice(2)
const total = Number(n)
let started = 0
let finished = 0
await new Promise((resolve, reject) => {
  const next = () => {
    if (finished === total) { resolve(); return }
    if (started === total) return
    started++
    const child = spawn(cmd, args, { stdio: 'ignore' })
    child.once('error', reject)
    child.once('exit', () => { finished++; next() })
  }
  for (let i = 0; i < Number(concurrency); i++) next()
})
