import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { gzipCompression } from "./gzip.ts";

Deno.test("gzipCompression round-trips and reads what gzip(1) wrote", async () => {
  const text = "containerd ".repeat(1000);
  const packed = await gzipCompression.compress(new TextEncoder().encode(text));
  assert.ok(packed.byteLength < 200, `${packed.byteLength} bytes`);
  assert.equal(new TextDecoder().decode(await gzipCompression.decompress(packed, 1 << 20)), text);
  const gz = new Deno.Command("gzip", { args: ["-c"], stdin: "piped", stdout: "piped" }).spawn();
  const writer = gz.stdin.getWriter();
  await writer.write(new TextEncoder().encode("from gzip"));
  await writer.close();
  const { stdout } = await gz.output();
  assert.equal(
    new TextDecoder().decode(await gzipCompression.decompress(stdout, 100)),
    "from gzip",
  );
  assert.equal((await gzipCompression.decompress(new Uint8Array(0), 10)).byteLength, 0);
});

Deno.test("gzipCompression: over the limit is ResourceExhausted, garbage is InvalidArgument", async () => {
  const packed = await gzipCompression.compress(new Uint8Array(1 << 20));
  await assert.rejects(
    gzipCompression.decompress(packed, 1000),
    (err: unknown) =>
      err instanceof ConnectError && err.code === Code.ResourceExhausted &&
      err.rawMessage.includes("readMaxBytes 1000"),
  );
  await assert.rejects(
    gzipCompression.decompress(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), 1000),
    (err: unknown) => err instanceof ConnectError && err.code === Code.InvalidArgument,
  );
});
