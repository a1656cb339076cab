/**
 * The building blocks of every job-file parser (YAML job files, tasklists, ictasks configs, `meshfarm parallel`):
 * one-line errors `file: field: what` with a "did you mean" hint, scalar fields, relative names and `{name}`
 * placeholders. Pure: no file system.
 */
import { isAbsolute } from 'node:path'
import { MeshfarmError } from '../util/errors.ts'
import { parseDuration as parseDurationMs, parseSizeMb } from '../util/units.ts'

export type Params = Record<string, string | number | boolean>

export class SpecContext {
  readonly file: string
  readonly baseDir: string
  constructor (file: string, baseDir: string) {
    this.file = file
    this.baseDir = baseDir
  }

  fail (field: string, what: string): never {
    throw new MeshfarmError('SPEC_INVALID', `${this.file}: ${field}: ${what}`.replace(/\s*\n\s*/g, ' '))
  }
}

export function show (v: unknown): string {
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

export function isMap (v: unknown): v is Record<string, unknown> {
  return v != null && typeof v === 'object' && !Array.isArray(v)
}

/** The closest known key, for "did you mean" hints. */
export function suggest (key: string, known: string[]): string {
  let best = ''
  let bestDist = 3
  for (const k of known) {
    const d = distance(key, k)
    if (d < bestDist) { best = k; bestDist = d }
  }
  return best !== '' ? ` (did you mean '${best}'?)` : ''
}

function distance (a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) dp[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      dp[i][j] = Math.min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
  }
  return dp[a.length][b.length]
}

export function checkKeys (ctx: SpecContext, obj: Record<string, unknown>, known: string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) ctx.fail(where === '' ? k : `${where}.${k}`, `unknown key${suggest(k, known)}`)
  }
}

/** A job file's duration (milliseconds): the one duration parser, with the job file's error code. */
export function parseDuration (value: unknown, where: string): number {
  return parseDurationMs(value, where, { code: 'SPEC_INVALID' })
}

/** A job file's memory size in MB: the one size parser, with the job file's error code. */
export function parseMemory (value: unknown, where: string): number {
  return parseSizeMb(value, where, { code: 'SPEC_INVALID' })
}

export function wholeNumber (ctx: SpecContext, v: unknown, field: string, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) ctx.fail(field, `must be a whole number >= ${min}, got ${show(v)}`)
  return v
}

export function stringMap (ctx: SpecContext, v: unknown, field: string): Record<string, string> {
  if (!isMap(v)) ctx.fail(field, `must be a map of names to values, got ${show(v)}`)
  const out: Record<string, string> = {}
  for (const [k, val] of Object.entries(v)) {
    if (typeof val === 'string' || typeof val === 'number' || typeof val === 'boolean') out[k] = String(val)
    else ctx.fail(`${field}.${k}`, `must be a string, number or boolean, got ${show(val)}`)
  }
  return out
}

export function relativeName (ctx: SpecContext, v: string, field: string): string {
  if (v === '' || v.includes('\u0000')) ctx.fail(field, 'must be a non-empty name')
  if (isAbsolute(v) || v.split('/').includes('..') || v.includes('\\')) ctx.fail(field, `must be a relative name inside the task folder, got ${show(v)}`)
  return v.split('/').filter(s => s !== '' && s !== '.').join('/')
}

/**
 * Fills `{name}` placeholders. Only a bare name in braces is one: shell syntax such as `${HOME}`, `{a,b}` or
 * awk's `'{print $1}'` passes through as written, and `{{`/`}}` give literal braces.
 */
export function fill (ctx: SpecContext, template: string, params: Params, field: string): string {
  return template.replace(/\{\{|\}\}|(\$?)\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}/g, (whole, dollar: string | undefined, name: string | undefined) => {
    if (whole === '{{') return '{'
    if (whole === '}}') return '}'
    if (dollar === '$') return whole
    const key = name ?? ''
    if (!(key in params)) ctx.fail(field, `unknown placeholder {${key}}${suggest(key, Object.keys(params))}`)
    return String(params[key])
  })
}
