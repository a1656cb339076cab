/**
 * Errors with stable codes. The CLI prints `error: <message>` for any MeshfarmError and exits with its exitCode;
 * callers branch on `code`, never on instanceof (package copies break instanceof).
 */
export type ErrorCode =
  | 'SPEC_INVALID'
  | 'FILE_MISSING'
  | 'NO_MESH'
  | 'NO_COORDINATOR'
  | 'PROTOCOL'
  | 'NOT_FOUND'
  | 'FORBIDDEN'
  | 'UNSAFE_PATH'
  | 'HASH_MISMATCH'
  | 'INSECURE_FILE'
  | 'BAD_ARGUMENT'
  | 'DISK'
  | 'TIMEOUT'
  | 'REMOTE'
  | 'INTERNAL'

const EXIT_CODES: Record<ErrorCode, number> = {
  SPEC_INVALID: 2,
  BAD_ARGUMENT: 2,
  FILE_MISSING: 2,
  NO_MESH: 3,
  NO_COORDINATOR: 3,
  TIMEOUT: 3,
  PROTOCOL: 4,
  REMOTE: 4,
  NOT_FOUND: 5,
  FORBIDDEN: 6,
  UNSAFE_PATH: 7,
  HASH_MISMATCH: 7,
  INSECURE_FILE: 7,
  DISK: 8,
  INTERNAL: 9
}

export class MeshfarmError extends Error {
  readonly code: ErrorCode
  constructor (code: ErrorCode, message: string) {
    super(message)
    this.name = 'MeshfarmError'
    this.code = code
  }

  get exitCode (): number {
    return EXIT_CODES[this.code]
  }
}

export function isMeshfarmError (err: unknown): err is MeshfarmError {
  return err instanceof Error && err.name === 'MeshfarmError' && typeof (err as MeshfarmError).code === 'string'
}

/** A one-line description of any thrown value (libp2p sometimes throws errors without a message). */
export function errorMessage (err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0 && (err.message ?? '') === '') return errorMessage(err.errors[0])
  if (err instanceof Error) return (err.message ?? '') !== '' ? err.message.split('\n')[0] : err.name
  // Streams and sockets sometimes reject with an Event (a closed or aborted connection), not an Error.
  if (err != null && typeof err === 'object') {
    const { message, type } = err as { message?: unknown, type?: unknown }
    if (typeof message === 'string' && message !== '') return message.split('\n')[0]
    if (typeof type === 'string') return `the connection ended (${type})`
  }
  return String(err)
}
