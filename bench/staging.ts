/**
 * Staging: one large file and many small ones moved to an agent in another process and written to disk,
 * against scp (two ciphers) and tar over ssh to an sshd of the benchmark's own, and a raw TCP copy.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, openSync, closeSync, rmSync, writeSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { BenchContext } from './run.ts'
import { freePort } from '../bin/processes.ts'
import { startSshd, tcpCopy, timeShell, type Sshd } from './baselines.ts'
import { makeJob, runJob, startBenchMesh, type BenchMesh } from './meshfarm-runs.ts'
import { alternate, summarize } from './stats.ts'

const MB = 1e6

/** Writes `size` random bytes to `path` in chunks, so that nothing big is held in memory. */
function writeRandomFile (path: string, size: number): void {
  const fd = openSync(path, 'w')
  const chunk = 16 * 2 ** 20
  for (let done = 0; done < size; done += chunk) writeSync(fd, randomBytes(Math.min(chunk, size - done)))
  closeSync(fd)
}

/** New leading bytes: same size, a new content hash, so no cache on any side can skip the transfer. */
function freshen (path: string): void {
  const fd = openSync(path, 'r+')
  writeSync(fd, randomBytes(64), 0, 64, 0)
  closeSync(fd)
}

export async function stagingSection (ctx: BenchContext): Promise<void> {
  const rounds = ctx.quick ? 1 : 3
  const sshd = await startSshd(join(ctx.dir, 'ssh'), await freePort()).catch(err => { ctx.note(`sshd: ${(err as Error).message}`); return null })
  if (sshd == null) ctx.note('sshd is not available (Debian package openssh-server): the scp and tar|ssh comparisons are missing')
  const bench = await startBenchMesh(join(ctx.dir, 'mesh'), [{ ip: '127.0.0.2', hostname: 'bench-stage', slots: 2 }])
  try {
    await largeFile(ctx, bench, sshd, rounds)
    await smallFiles(ctx, bench, sshd, rounds)
  } finally {
    sshd?.stop()
    await bench.stop()
  }
}

async function largeFile (ctx: BenchContext, bench: BenchMesh, sshd: Sshd | null, rounds: number): Promise<void> {
  const size = ctx.quick ? 64 * 2 ** 20 : 2 ** 30
  const label = ctx.quick ? '64 MiB' : '1 GiB'
  const file = join(ctx.dir, 'large.bin')
  const dest = join(ctx.dir, 'large-dest')
  mkdirSync(dest, { recursive: true })
  writeRandomFile(file, size)
  const uploads: number[] = []
  const contenders: Record<string, () => Promise<number>> = {
    meshfarm: async () => {
      freshen(file)
      const t = await runJob(bench.client, makeJob('stage-large', 1, () => 'true', {}, [{ src: file, name: 'large.bin' }]))
      uploads.push(size / MB / t.uploadS)
      return size / MB / (t.totalS - t.submitS)
    },
    'raw TCP': async () => {
      rmSync(join(dest, 'large.bin'), { force: true })
      return size / MB / await tcpCopy(file, join(dest, 'large.bin'))
    }
  }
  if (sshd != null) {
    for (const [name, cipher] of [['scp aes128-gcm', 'aes128-gcm@openssh.com'], ['scp chacha20', 'chacha20-poly1305@openssh.com']]) {
      contenders[name] = async () => {
        rmSync(join(dest, 'large.bin'), { force: true })
        return size / MB / await timeShell(sshd.scp(`'${file}'`, join(dest, 'large.bin'), cipher))
      }
    }
  }
  const s = await alternate(rounds, contenders)
  const up = summarize(uploads)
  ctx.raw.stagingLarge = { bytes: size, MBps: s, uploadToCoordinatorMBps: up }
  for (const name of Object.keys(contenders).filter(k => k !== 'meshfarm')) {
    const ratio = s.meshfarm.median / s[name].median
    const goal = name === 'scp aes128-gcm' ? { goal: '>= 1x scp aes128-gcm', met: ratio >= 1 } : {}
    ctx.row({ measure: `${label} file, coordinator to agent`, unit: 'MB/s', meshfarm: s.meshfarm.median, min: s.meshfarm.min, max: s.meshfarm.max, baselineName: name, baseline: s[name].median, ratio, ...goal })
  }
  ctx.row({ measure: `${label} file, submitter to coordinator`, unit: 'MB/s', meshfarm: up.median, min: up.min, max: up.max })
  rmSync(file, { force: true })
}

async function smallFiles (ctx: BenchContext, bench: BenchMesh, sshd: Sshd | null, rounds: number): Promise<void> {
  const count = ctx.quick ? 100 : 1000
  const sample = ctx.quick ? 10 : 100
  const src = join(ctx.dir, 'small')
  const dest = join(ctx.dir, 'small-dest')
  mkdirSync(src, { recursive: true })
  const names = Array.from({ length: count }, (_, i) => `f${String(i).padStart(4, '0')}.dat`)
  const rewrite = (): void => { for (const n of names) writeFileSync(join(src, n), randomBytes(4096)) }
  const contenders: Record<string, () => Promise<number>> = {
    meshfarm: async () => {
      rewrite()
      const inputs = names.map(n => ({ src: join(src, n), name: n }))
      const t = await runJob(bench.client, makeJob('stage-small', 1, () => 'true', { inputs }))
      return count / t.totalS
    }
  }
  if (sshd != null) {
    contenders['scp per file'] = async () => {
      rewrite()
      rmSync(dest, { recursive: true, force: true })
      mkdirSync(dest)
      let total = 0
      for (const n of names.slice(0, sample)) total += await timeShell(sshd.scp(`'${join(src, n)}'`, join(dest, n), 'aes128-gcm@openssh.com'))
      return sample / total
    }
    contenders['tar | ssh'] = async () => {
      rewrite()
      rmSync(dest, { recursive: true, force: true })
      return count / await timeShell(`tar -C '${src}' -cf - . | ${sshd.ssh(`mkdir -p ${dest} && tar -C ${dest} -xf -`, 'aes128-gcm@openssh.com')}`)
    }
  }
  const s = await alternate(rounds, contenders)
  ctx.raw.stagingSmall = { files: count, bytesEach: 4096, scpSample: sample, filesPerSecond: s }
  // meshfarm's own number stands on every machine; the comparisons only where an sshd could be started.
  if (sshd == null) ctx.row({ measure: `${count} files of 4 KiB, submitter to agent`, unit: 'files/s', meshfarm: s.meshfarm.median, min: s.meshfarm.min, max: s.meshfarm.max, baselineName: 'scp per file: no sshd here', goal: '>= 10x scp per file' })
  for (const name of Object.keys(contenders).filter(k => k !== 'meshfarm')) {
    const ratio = s.meshfarm.median / s[name].median
    const goal = name === 'scp per file' ? { goal: '>= 10x scp per file', met: ratio >= 10 } : {}
    ctx.row({ measure: `${count} files of 4 KiB, submitter to agent`, unit: 'files/s', meshfarm: s.meshfarm.median, min: s.meshfarm.min, max: s.meshfarm.max, baselineName: name, baseline: s[name].median, ratio, ...goal })
  }
}
