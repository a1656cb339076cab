/** Protocol ids and wire limits shared by every meshfarm peer. Bump the version on any incompatible change. */
export const PROTOCOL_AGENT = '/meshfarm/agent/1.0.0'
export const PROTOCOL_CLIENT = '/meshfarm/client/1.0.0'
export const PROTOCOL_BLOB = '/meshfarm/blob/1.0.0'
export const PROTOCOL_ROSTER = '/meshfarm/roster/1.0.0'

/** Largest control frame a peer accepts; bigger frames are refused before they are buffered. */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024
/** Blobs up to this size travel inline inside control messages instead of their own stream. */
export const INLINE_BLOB_BYTES = 64 * 1024
/** Chunk size for bulk blob transfer. */
export const BLOB_CHUNK_BYTES = 256 * 1024

export const DEFAULT_HEARTBEAT_MS = 2000
export const DEFAULT_AGENT_LOST_MS = 15000
export const DEFAULT_CRASH_LIMIT = 3
