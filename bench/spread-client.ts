/**
 * The spread benchmark's submitter, run inside the coordinator's network namespace (the benchmark's own process
 * cannot reach the simulated LAN): submits one job whose tasks each run on one named agent and share one file,
 * and prints its timing as one JSON line.
 *
 *   spread-client.ts <client home> <shared file> <agent label values, comma-separated>
 */
import { basename } from 'node:path'
import { connect } from '../shared/client/client.ts'
import { makeJob, runJob } from './meshfarm-runs.ts'

const [home, file, spots] = process.argv.slice(2)
const client = await connect({ home })
try {
  const places = spots.split(',')
  const job = makeJob('spread', places.length, () => 'true', {}, [{ src: file, name: basename(file) }])
  job.tasks.forEach((t, i) => { t.constraints = { spot: places[i] } })
  console.log(JSON.stringify(await runJob(client, job)))
} finally {
  await client.close()
}
