/**
 * A fix for the xsalsa20 package (1.2.0, used by @libp2p/pnet for the private-network cipher), applied when
 * the mesh module loads. All its cipher instances share one WebAssembly memory, but each keeps its own view of
 * it; when one instance grows the memory (a message chunk larger than the memory so far), every other view is
 * detached and reads as length 0, so the next update of each of them grows the memory again by its whole chunk.
 * Two instances alternating (the two directions of one connection) grow it without end until
 * `WebAssembly.Memory.grow(): Maximum memory size exceeded` kills the process: any transfer of a few megabytes
 * over a private mesh brought down a peer. Here every instance follows the memory's current buffer.
 */
import xsalsa20 from 'xsalsa20'

interface WasmXor {
  _memory: Uint8Array
  realloc: (size: number) => void
  update: (input: Uint8Array, output: Uint8Array) => void
}

let patched = false

export function fixXsalsa20 (): void {
  if (patched) return
  patched = true
  const probe = xsalsa20(new Uint8Array(24), new Uint8Array(32)) as unknown as { _xor: WasmXor, finalize: () => void }
  const proto = Object.getPrototypeOf(probe._xor) as WasmXor
  probe.finalize()
  // Without WebAssembly the package uses a pure-JS fallback that has no shared memory and no bug.
  if (typeof proto.realloc !== 'function' || typeof proto.update !== 'function') return
  let live: Uint8Array | null = null
  const realloc = proto.realloc
  const update = proto.update
  proto.realloc = function (this: WasmXor, size: number) {
    realloc.call(this, size)
    live = this._memory
  }
  proto.update = function (this: WasmXor, input: Uint8Array, output: Uint8Array) {
    if (live != null && this._memory.buffer !== live.buffer) this._memory = live
    update.call(this, input, output)
  }
}
