// Lab habits against the real tools: the generated bash completion driven in a real bash (complete -p, COMP_WORDS),
// the zsh script through zsh's parser, and the systemd unit through systemd-analyze verify, each where installed.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bashCompletion, zshCompletion } from '../../bin/completion.ts'
import { renderAgentUnit } from '../../bin/service-unit.ts'
import { sampleProgram } from '../helpers/sample-program.ts'

const has = (cmd: string, arg = '--version'): boolean => spawnSync(cmd, [arg], { stdio: 'ignore' }).status === 0

test('bash completes commands, sub-commands, flags, choices and files from the generated script', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-complete-'))
  try {
    const script = join(dir, 'meshfarm.bash')
    writeFileSync(script, bashCompletion(sampleProgram()))
    for (const f of ['job.yaml', 'jobs.txt', 'other.dat']) writeFileSync(join(dir, f), '')
    const driver = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _meshfarm; printf "%s\\n" "${COMPREPLY[@]}"'
    const complete = (...words: string[]): string[] =>
      execFileSync('bash', ['-c', driver, 'bash', script, 'meshfarm', ...words], { cwd: dir, encoding: 'utf8' }).split('\n').filter(l => l !== '').sort()
    assert.equal(execFileSync('bash', ['-c', 'source "$1"; complete -p meshfarm', 'bash', script], { encoding: 'utf8' }).trim(), 'complete -o filenames -F _meshfarm meshfarm')
    assert.deepEqual(complete(''), ['access', 'agent', 'invite', 'submit'])
    assert.deepEqual(complete('inv'), ['invite'])
    assert.deepEqual(complete('invite', '--role', 'a'), ['admin', 'agent'])
    assert.deepEqual(complete('access', ''), ['list', 'remove'])
    assert.deepEqual(complete('access', 'list', '--'), ['--help', '--home', '--json'])
    assert.deepEqual(complete('--home', 'access', 'sub'), ['submit'], "a flag's value (a folder named access) is not taken for a command")
    assert.deepEqual(complete('submit', '--layout', ''), ['flat', 'ictasks', 'per-task'])
    assert.deepEqual(complete('submit', 'jo'), ['job.yaml', 'jobs.txt'], 'a job file is a file name')
    assert.deepEqual(complete('agent', '--ins'), ['--install-service'])
    assert.deepEqual(complete('--'), ['--help', '--home', '--version'])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the zsh script parses in zsh', { skip: !has('zsh') && 'zsh is not installed' }, () => {
  const r = spawnSync('zsh', ['-n'], { input: zshCompletion(sampleProgram()), encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
})

test('systemd-analyze verify accepts the agent unit', { skip: !has('systemd-analyze') && 'systemd-analyze is not installed' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-unit-'))
  try {
    const file = join(dir, 'meshfarm-agent.service')
    const executable = join(import.meta.dirname, '..', '..', 'bin', 'meshfarm')
    writeFileSync(file, renderAgentUnit({ mode: 'system', user: 'daemon', executable, agentArgs: ['--cores', '2', '--label', 'room=B 12', '--slots', '50%'], home: '/var/lib/mesh farm' }))
    const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    assert.doesNotMatch(r.stderr, new RegExp(`${file.replaceAll('.', '\\.')}:\\d+: (?!Special user)`), r.stderr)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
