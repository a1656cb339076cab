/**
 * Slurm command failures as data, pure: which ones retrying reproduces (permanent: a wrong partition, account or
 * option, munge down, a job the limits forbid) and which ones pass (transient: EAGAIN, timeouts, slurmctld
 * restarting). Slurm's own words are kept; a failure nobody recognises is permanent, so an unknown error gives one
 * clear line instead of a retry storm.
 */
import type { SlurmError } from './batch-system.ts'

const TRANSIENT = [
  /Resource temporarily unavailable/i,
  /temporarily unable to accept job/i,
  /Socket timed out/i,
  /Unable to contact slurm controller/i,
  /slurmctld (is )?not responding/i,
  /Slurm backup controller in standby mode/i,
  /Connection refused/i,
  /Connection reset by peer/i,
  /Transient error/i,
  /Communication connection failure/i,
  /Zero Bytes were transmitted or received/i,
  /no answer within/i
]

/** Recognised permanent failures, checked before the transient ones: a munge failure also mentions the socket. */
const PERMANENT = [
  /Invalid partition name/i,
  /Invalid account/i,
  /Invalid qos/i,
  /Invalid generic resource/i,
  /Invalid job array specification/i,
  /Requested time limit is invalid/i,
  /Requested node configuration is not available/i,
  /More processors requested than permitted/i,
  /Memory specification can not be satisfied/i,
  /violates accounting\/QOS policy/i,
  /not permitted to use this partition/i,
  /Access\/permission denied/i,
  /unrecognized option|invalid option|unknown option|Try "\w+ --help"/i,
  /munge|Authentication failure|Invalid authentication credential|auth_g_/i,
  /Invalid user id/i,
  /command not found|ENOENT/i
]

/** The line that says what went wrong, without the `sbatch: error:` prefix and Slurm's retry chatter. */
export function slurmWords (stderr: string): string {
  const lines = stderr.split('\n').map(l => l.trim()).filter(l => l !== '')
  // Munge down: its own line says what to do ("Did you start munged?"); the final one only "authentication error".
  const munge = lines.find(l => /Munge \w+ failed/i.test(l))
  if (munge != null) return munge.replace(/^\S+:\s*error:\s*/i, '')
  const failed = lines.find(l => /submission failed:/i.test(l))
  if (failed != null) return failed.replace(/^.*submission failed:\s*/i, '')
  const meaningful = lines.filter(l => !/sleeping and retrying/i.test(l) && !/^Try "/.test(l))
  const err = meaningful.find(l => /error/i.test(l)) ?? meaningful[0] ?? lines[0] ?? ''
  return err.replace(/^\S+:\s*error:\s*/i, '').replace(/^error:\s*/i, '').replace(/^\S+: /, '')
}

export function classifySlurmFailure (command: string, stderr: string, exitCode: number | null): SlurmError {
  const words = slurmWords(stderr)
  const message = `${command}: ${words !== '' ? words : `exited with code ${String(exitCode)} and said nothing`}`
  const all = `${stderr}\n${words}`
  if (PERMANENT.some(re => re.test(all))) return { kind: 'permanent', message }
  if (TRANSIENT.some(re => re.test(all))) return { kind: 'transient', message }
  return { kind: 'permanent', message }
}
