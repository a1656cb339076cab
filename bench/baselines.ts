/**
 * The tools a user would pick instead of meshfarm, each measured the way that user would run it: xargs,
 * GNU parallel and a plain Node spawn loop for task farms; scp, tar over ssh (to an sshd started for the
 * benchmark on loopback) and a raw TCP copy for staging files. A tool that is not installed is reported as
 * missing, not faked.
 */
import { spawn, spawnSync } from 'node:child_process'
import { createReadStream, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { userInfo } from 'node:os'
import { fileURLToPath } from 'node:url'
import { pipeline } from 'node:stream/promises'
import { since } from './stats.ts'

const here = (name: string): string => fileURLToPath(new URL(name, import.meta.url))

/** Tools the run treats as absent (`--without parallel,sshd`): a machine without them, measured as it would be. */
const hidden = new Set<string>()
export function hideTools (names: string[]): void {
  for (const n of names) hidden.add(n)
}

export function have (command: string): boolean {
  if (hidden.has(command)) return false
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

/** Runs a shell command line and resolves with its wall time in seconds; rejects if it fails. */
export async function timeShell (line: string): Promise<number> {
  const t0 = performance.now()
  await new Promise<void>((resolve, reject) => {
    const child = spawn('sh', ['-c', line], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.once('error', reject)
    child.once('exit', code => { code === 0 ? resolve() : reject(new Error(`${line.slice(0, 80)}: exit ${code}: ${err.trim().slice(-300)}`)) })
  })
  return since(t0)
}

export const farm = {
  xargs: async (n: number, jobs: number) => await timeShell(`seq 1 ${n} | xargs -P${jobs} -n1 true`),
  parallel: async (n: number, jobs: number) => await timeShell(`seq 1 ${n} | parallel --will-cite -j${jobs} true`),
  nodeSpawnLoop: async (n: number, jobs: number) => await timeShell(`'${process.execPath}' '${here('./spawn-loop.mjs')}' ${n} ${jobs} true`)
}

/** A raw TCP copy of one file into another process that writes it to disk. */
export async function tcpCopy (file: string, dest: string): Promise<number> {
  const sink = spawn(process.execPath, [here('./tcp-sink.mjs'), dest], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  const saw = async (pattern: RegExp): Promise<RegExpMatchArray> => await new Promise((resolve, reject) => {
    const check = (): void => { const m = out.match(pattern); if (m != null) resolve(m) }
    sink.stdout.on('data', (d: Buffer) => { out += d.toString(); check() })
    sink.once('exit', () => { reject(new Error('tcp sink exited early')) })
    check()
  })
  const port = Number((await saw(/port (\d+)/))[1])
  const t0 = performance.now()
  const done = saw(/done/)
  await pipeline(createReadStream(file), connect(port, '127.0.0.1'))
  await done
  return since(t0)
}

export interface Sshd {
  /** Options for ssh; scp takes the same with -P for the port. */
  target: string
  ssh: (remote: string, cipher?: string) => string
  scp: (files: string, dest: string, cipher: string) => string
  stop: () => void
}

/** An sshd of our own on 127.0.0.1 with a throwaway host key and client key, or null where sshd is missing. */
export async function startSshd (dir: string, port: number): Promise<Sshd | null> {
  const sshd = hidden.has('sshd') ? undefined : ['/usr/sbin/sshd', '/usr/bin/sshd'].find(p => existsSync(p))
  if (sshd == null || !have('ssh') || !have('scp')) return null
  mkdirSync(dir, { recursive: true })
  for (const key of ['host_key', 'id']) {
    if (!existsSync(join(dir, key))) spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, key)], { stdio: 'ignore' })
  }
  spawnSync('cp', [join(dir, 'id.pub'), join(dir, 'authorized_keys')])
  mkdirSync('/run/sshd', { recursive: true })
  writeFileSync(join(dir, 'sshd_config'), [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host_key')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, `PidFile ${join(dir, 'sshd.pid')}`,
    'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'StrictModes no', 'UsePAM no',
    'Subsystem sftp internal-sftp'
  ].join('\n') + '\n')
  const child = spawn(sshd, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const common = `-i '${join(dir, 'id')}' -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes`
  const target = `${userInfo().username}@127.0.0.1`
  const server: Sshd = {
    target,
    ssh: (remote, cipher) => `ssh ${common} ${cipher != null ? `-c ${cipher}` : ''} -p ${port} ${target} '${remote}'`,
    scp: (files, dest, cipher) => `scp -q ${common} -c ${cipher} -P ${port} ${files} ${target}:'${dest}'`,
    stop: () => { child.kill() }
  }
  // Ready when a login succeeds.
  for (let i = 0; i < 50; i++) {
    if (child.exitCode != null) throw new Error(`sshd would not start: ${err.trim().slice(-300)}`)
    try {
      await timeShell(server.ssh('true'))
      return server
    } catch {
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
  child.kill()
  throw new Error(`sshd did not accept a login: ${err.trim().slice(-300)}`)
}
