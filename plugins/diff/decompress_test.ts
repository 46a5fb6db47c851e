import assert from "node:assert/strict";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { Code, codeOf } from "../../server/errdefs.ts";
import {
  declaredCompression,
  decompressLayer,
  detectCompression,
  LayerMediaTypes as T,
} from "./decompress.ts";

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of source) parts.push(c.slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function pseudoRandom(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = (x >>> 16) & 0x3f; // compressible, but not trivially
  }
  return out;
}

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
};

Deno.test("decompress: media types map to compressions as containerd's DiffCompression", () => {
  assert.equal(declaredCompression(T.ociTar), "none");
  assert.equal(declaredCompression(T.ociTarGzip), "gzip");
  assert.equal(declaredCompression(T.ociTarZstd), "zstd");
  assert.equal(declaredCompression(T.ociNondistributableTar), "none");
  assert.equal(declaredCompression(T.ociNondistributableTarGzip), "gzip");
  assert.equal(declaredCompression(T.ociNondistributableTarZstd), "zstd");
  assert.equal(declaredCompression(T.dockerTar), "unknown");
  assert.equal(declaredCompression(T.dockerForeignTar), "unknown");
  assert.equal(declaredCompression(T.dockerTarGzip), "gzip");
  assert.equal(declaredCompression(T.dockerForeignTarGzip), "gzip");
  assert.equal(declaredCompression(T.dockerTarZstd), "zstd");
  for (
    const bad of [
      "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
      "application/vnd.oci.image.manifest.v1+json",
      "application/octet-stream",
      "",
    ]
  ) {
    assert.throws(() => declaredCompression(bad), (err) => codeOf(err) === Code.Unimplemented);
  }
});

Deno.test("decompress: magic detection", () => {
  assert.equal(detectCompression(gzipSync(new Uint8Array([1]))), "gzip");
  assert.equal(detectCompression(zstdCompressSync(new Uint8Array([1]))), "zstd");
  assert.equal(detectCompression(new Uint8Array([0x50, 0x2a, 0x4d, 0x18])), "zstd"); // skippable
  assert.equal(detectCompression(new Uint8Array([0x2e, 0x2f, 0, 0])), "none");
  assert.equal(detectCompression(new Uint8Array([0x1f])), "none");
});

Deno.test("decompress: gzip, multi-member gzip, zstd and multi-frame zstd stream through", async () => {
  const data = pseudoRandom(3_000_000);
  const a = data.subarray(0, 1_000_000);
  const b = data.subarray(1_000_000);
  const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 9, 9, 9, 9]);
  const cases: [string, Uint8Array][] = [
    [T.ociTarGzip, gzipSync(data)],
    [T.ociTarGzip, concat(gzipSync(a), gzipSync(b))],
    [T.ociTarZstd, zstdCompressSync(data)],
    [T.ociTarZstd, concat(skippable, zstdCompressSync(a), skippable, zstdCompressSync(b))],
    [T.dockerTarGzip, zstdCompressSync(data)], // zstd under a gzip type, as containerd allows
    [T.dockerTar, gzipSync(data)],
    [T.dockerTar, data],
    [T.ociTar, data],
  ];
  for (const [mediaType, blob] of cases) {
    // 3-byte chunks only where the blob is small: a million yields tests nothing more.
    for (const size of blob.length < 200_000 ? [3, 65536, 1 << 20] : [4096, 1 << 20]) {
      const out = await collect(decompressLayer(mediaType, chunked(blob, size)));
      assert.equal(out.length, data.length, `${mediaType} in ${size}-byte chunks`);
      assert.deepEqual(out, data);
    }
  }
});

Deno.test("decompress: truncated or corrupt data is InvalidArgument", async () => {
  const data = pseudoRandom(500_000, 7);
  const gz = gzipSync(data);
  const zs = zstdCompressSync(data);
  const bad: [string, Uint8Array, RegExp][] = [
    [T.ociTarGzip, gz.slice(0, gz.length - 10), /gzip stream is truncated/],
    [T.ociTarGzip, gz.slice(0, 20), /gzip stream is truncated/],
    [T.ociTarZstd, zs.slice(0, zs.length - 10), /zstd stream is truncated/],
    [T.ociTarZstd, zs.slice(0, 6), /zstd stream is truncated/],
    [T.ociTarGzip, concat(gz, new Uint8Array([1, 2, 3, 4])), /gzip stream is corrupt/],
    [T.ociTarZstd, concat(zs, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), /zstd stream is corrupt/],
  ];
  for (const [mediaType, blob, pattern] of bad) {
    await assert.rejects(collect(decompressLayer(mediaType, chunked(blob, 4096))), (err) => {
      assert.equal(codeOf(err), Code.InvalidArgument, String(err));
      assert.match(String(err), pattern);
      return true;
    });
  }
  await assert.rejects(
    collect(decompressLayer("application/vnd.oci.image.layer.v1.tar+lz4", chunked(gz, 10))),
    (err) => codeOf(err) === Code.Unimplemented,
  );
});

Deno.test("decompress: source errors pass through; stopping early closes the source", async () => {
  const gz = gzipSync(pseudoRandom(2_000_000, 3));
  for (const mediaType of [T.ociTarGzip, T.ociTar, T.dockerTar]) {
    const boom = new Error("read failed");
    const failing = async function* () {
      yield gz.slice(0, 100_000);
      throw boom;
    };
    await assert.rejects(collect(decompressLayer(mediaType, failing())), (err) => err === boom);

    let closed = false;
    const watched = async function* () {
      try {
        for await (const c of chunked(gz, 1000)) yield c;
      } finally {
        closed = true;
      }
    };
    for await (const _ of decompressLayer(mediaType, watched())) break;
    // node:stream teardown is asynchronous for the gzip pipeline.
    for (let i = 0; i < 50 && !closed; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(closed, true, mediaType);
  }
});
