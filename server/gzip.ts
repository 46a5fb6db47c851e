/**
 * gzip for Connect's `acceptCompression`, on the runtime's built-in Compression Streams.
 *
 * Why not connect-node's `compressionGzip`: importing @connectrpc/connect-node loads node:zlib,
 * node:http and node:http2, and the daemon no longer needs any of them to boot. Behaviour is
 * the same: a body that inflates past `readMaxBytes` is ResourceExhausted (and inflating stops
 * there), a body that is not gzip is InvalidArgument.
 *
 * @example
 * ```ts
 * import { gzipCompression } from "./gzip.ts";
 * const packed = await gzipCompression.compress(new TextEncoder().encode("hello"));
 * await gzipCompression.decompress(packed, 1024); // the 5 bytes of "hello"
 * ```
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { concatBytes } from "./bytes.ts";

async function collect(
  stream: ReadableStream<Uint8Array>,
  maxBytes: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const parts: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new ConnectError(
        `message is larger than configured readMaxBytes ${maxBytes} after decompression`,
        Code.ResourceExhausted,
      );
    }
    parts.push(value);
  }
  return concatBytes(parts, size);
}

function through(bytes: Uint8Array, transform: CompressionStream | DecompressionStream) {
  return new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(transform);
}

/** The "gzip" message encoding (grpc-encoding / connect-content-encoding). */
export const gzipCompression: Compression = {
  name: "gzip",
  compress(bytes: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    return collect(through(bytes, new CompressionStream("gzip")), Number.MAX_SAFE_INTEGER);
  },
  async decompress(bytes: Uint8Array, readMaxBytes: number): Promise<Uint8Array<ArrayBuffer>> {
    if (bytes.byteLength === 0) return new Uint8Array(0);
    try {
      return await collect(through(bytes, new DecompressionStream("gzip")), readMaxBytes);
    } catch (err) {
      if (err instanceof ConnectError) throw err;
      throw new ConnectError(
        "decompression failed",
        Code.InvalidArgument,
        undefined,
        undefined,
        err,
      );
    }
  },
};
