import { test } from 'node:test'
import assert from 'node:assert/strict'
import { bashCompletion, describeProgram, zshCompletion } from '../../bin/completion.ts'
import { sampleProgram } from '../helpers/sample-program.ts'
import { buildProgram } from '../../bin/meshfarm.ts'

test('completion is generated from the program: every command path with its flags, sub-commands and choices', () => {
  const info = describeProgram(sampleProgram())
  assert.deepEqual(info.map(c => c.path), ['', 'submit', 'invite', 'access', 'access list', 'access remove', 'agent'])
  const submit = info.find(c => c.path === 'submit')!
  assert.deepEqual(submit.options.map(o => o.flags[0]), ['--wait', '--cores', '--layout', '--home', '--help'], 'own flags, then the global ones')
  assert.deepEqual(submit.options.find(o => o.flags[0] === '--layout')?.choices, ['per-task', 'flat', 'ictasks'])
  assert.equal(submit.takesArgs, true)
  assert.deepEqual(info.find(c => c.path === 'access')?.subs.map(s => s.name), ['list', 'remove'])
})

test('the bash script: one function, complete -F, choices and value flags; zsh: #compdef with descriptions', () => {
  const bash = bashCompletion(sampleProgram())
  assert.match(bash, /^complete -o filenames -F _meshfarm meshfarm$/m)
  assert.match(bash, /"invite\|--role"\) COMPREPLY=\(\$\(compgen -W 'agent submitter admin' -- "\$cur"\)\); return ;;/)
  assert.match(bash, /"submit\|--cores"\) COMPREPLY=\(\$\(compgen -f -- "\$cur"\)\); return ;;/)
  assert.match(bash, /"access\|list"/)
  const zsh = zshCompletion(sampleProgram())
  assert.match(zsh, /^#compdef meshfarm$/m)
  assert.match(zsh, /'invite:print an invite\\: one-time'/, 'colons in descriptions are escaped for _describe')
  assert.match(zsh, /"invite\|--role"\) compadd -- 'agent' 'submitter' 'admin'; return ;;/)
  assert.doesNotMatch(zsh, /local[^\n]*\bpath=/, 'zsh ties $path to $PATH: the script must not make it local')
})

test("the real program's completion: every command, the phase-2 flags and their choices; global flags only before a command", () => {
  const info = describeProgram(buildProgram())
  const at = (path: string): ReturnType<typeof describeProgram>[number] => info.find(c => c.path === path)!
  for (const cmd of ['submit', 'fetch', 'parallel', 'completion', 'agent', 'coordinator', 'status']) assert.ok(at('').subs.some(s => s.name === cmd), cmd)
  const flags = (path: string): string[] => at(path).options.flatMap(o => o.flags)
  for (const f of ['--input', '--output', '--shared', '--format', '--layout', '--wait']) assert.ok(flags('submit').includes(f), `submit ${f}`)
  assert.deepEqual(at('submit').options.find(o => o.flags.includes('--format'))?.choices, ['yaml', 'tasklist'])
  assert.deepEqual(at('fetch').options.find(o => o.flags.includes('--layout'))?.choices, ['per-task', 'flat', 'ictasks'])
  for (const f of ['--install-service', '--uninstall-service', '--service-user']) assert.ok(flags('agent').includes(f), `agent ${f}`)
  assert.ok(!flags('submit').includes('--home'), '--home belongs before the command')
  assert.ok(flags('').includes('--home'))
  assert.equal(at('parallel').takesArgs, true, 'parallel completes file names for its arguments')
  assert.match(bashCompletion(buildProgram()), /"\|parallel"/)
})
