/**
 * Colours only where a person reads a terminal: never with NO_COLOR set (no-color.org), always with FORCE_COLOR set
 * to anything but 0/false, else only on a TTY whose TERM is not "dumb". Decided once per stream, from the
 * stream and the environment the CLI passes in.
 */
export interface ColourEnv { NO_COLOR?: string, FORCE_COLOR?: string, TERM?: string }

export function colourEnabled (stream: { isTTY?: boolean }, env: ColourEnv): boolean {
  if (env.NO_COLOR != null && env.NO_COLOR !== '') return false
  if (env.FORCE_COLOR != null && env.FORCE_COLOR !== '') return env.FORCE_COLOR !== '0' && env.FORCE_COLOR.toLowerCase() !== 'false'
  return stream.isTTY === true && env.TERM !== 'dumb'
}

const CODES = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39] } as const
export type Style = keyof typeof CODES
export type Colours = Record<Style, (text: string) => string>

/** Style functions that wrap text in ANSI codes, or return it unchanged when colours are off. */
export function colours (enabled: boolean): Colours {
  const make = (s: Style) => enabled ? (t: string) => `\u001b[${CODES[s][0]}m${t}\u001b[${CODES[s][1]}m` : (t: string) => t
  return Object.fromEntries(Object.keys(CODES).map(s => [s, make(s as Style)])) as Colours
}

/** A task or job state in its colour: done green, failed red, running and staging cyan, the rest plain. */
export function stateColour (c: Colours, state: string): string {
  if (state === 'done') return c.green(state)
  if (state === 'failed') return c.red(state)
  if (state === 'running' || state === 'staging' || state === 'active') return c.cyan(state)
  if (state === 'cancelled') return c.yellow(state)
  return state
}
