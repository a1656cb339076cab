/** Runs one owner-socket client call as whatever user starts it: `owner-client.ts SOCKET lend|reclaim|status`. */
import { hereStatus, lend, reclaim } from '../../node/harvest/owner-control.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'

const [socketPath, op] = process.argv.slice(2)
try {
  const status = op === 'lend' ? await lend({ socketPath, untilMs: null }) : op === 'reclaim' ? await reclaim({ socketPath }) : await hereStatus({ socketPath })
  console.log(JSON.stringify({ ok: true, mode: status.harvest.mode, control: status.harvest.control }))
} catch (err) {
  console.log(JSON.stringify({ ok: false, code: isMeshfarmError(err) ? err.code : 'THROWN', message: (err as Error).message }))
}
