import { test } from 'node:test'
import assert from 'node:assert/strict'
import { bashCompletion, describeProgram, zshCompletion } from '../../bin/completion.ts'
import { sampleProgram } from '../helpers/sample-program.ts'

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
