/**
 * Joining byte chunks: what a reader collected in parts (a stream read to its end, HTTP/2
 * frames of one write, the fragments of a header block) as one contiguous buffer.
 *
 * @example
 * ```ts
 * import { concatBytes } from "./bytes.ts";
 * const joined = concatBytes([new Uint8Array([1, 2]), new Uint8Array([3])]);
 * console.log(joined); // Uint8Array(3) [ 1, 2, 3 ]
 * ```
 * @module
 */

/**
 * A new buffer with `parts` one after another. `length` is their total byte length when the
 * caller already counted it while collecting (else it is summed here).
 */
export function concatBytes(
  parts: readonly Uint8Array[],
  length?: number,
): Uint8Array<ArrayBuffer> {
  let total = length;
  if (total === undefined) {
    total = 0;
    for (const part of parts) total += part.byteLength;
  }
  return joinInto(new Uint8Array(total), parts, total);
}

/**
 * Copy `parts` (`length` bytes in all) to the start of `target`, which must hold them, and
 * return the filled view: a join into a buffer the caller reuses (HTTP/2 writes).
 */
export function joinInto<T extends ArrayBufferLike>(
  target: Uint8Array<T>,
  parts: readonly Uint8Array[],
  length: number,
): Uint8Array<T> {
  let at = 0;
  for (const part of parts) {
    target.set(part, at);
    at += part.byteLength;
  }
  return target.subarray(0, length);
}
