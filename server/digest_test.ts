import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Code, codeOf } from "./errdefs.ts";
import {
  isDigest,
  parseDigest,
  Sha256,
  sha256Digest,
  sha256Hex,
  sha256OfStream,
} from "./digest.ts";

const encoder = new TextEncoder();
const HEX = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; // sha256("abc")

function invalidArgument(input: string, reason: string | RegExp): void {
  assert.throws(() => parseDigest(input), (err: unknown) => {
    assert.equal(codeOf(err), Code.InvalidArgument, String(err));
    const message = (err as Error).message;
    assert.ok(message.includes(JSON.stringify(input)), `${message} names the digest`);
    if (typeof reason === "string") {
      assert.ok(message.includes(reason), `${message} says ${reason}`);
    } else assert.match(message, reason);
    return true;
  });
}

Deno.test("parseDigest accepts sha256 with 64 lowercase hex", () => {
  assert.deepEqual(parseDigest(`sha256:${HEX}`), { algorithm: "sha256", hex: HEX });
  assert.equal(isDigest(`sha256:${HEX}`), true);
});

Deno.test("parseDigest refuses malformed digests, naming them", () => {
  for (
    const input of ["", "sha256", "sha256:", `:${HEX}`, HEX, `SHA256:${HEX}`, `sha 256:${HEX}`]
  ) {
    invalidArgument(input, "invalid checksum digest format");
  }
  invalidArgument(`sha256:${HEX.slice(1)}`, "invalid checksum digest length");
  invalidArgument(`sha256:${HEX}0`, "invalid checksum digest length");
  invalidArgument(`sha256:${HEX.toUpperCase()}`, "invalid checksum digest format");
  invalidArgument(`sha256:${HEX.slice(0, 62)}/x`, "invalid checksum digest format");
  invalidArgument(`sha256:${"../".repeat(21)}a`, "invalid checksum digest format");
  invalidArgument(`sha256:${HEX}\n`, /invalid checksum digest/);
  for (const input of ["", "nope", `sha256:${HEX.slice(1)}`]) assert.equal(isDigest(input), false);
});

Deno.test("parseDigest refuses other algorithms as unsupported", () => {
  invalidArgument(`sha512:${"a".repeat(128)}`, "unsupported digest algorithm");
  invalidArgument(`sha384:${"a".repeat(96)}`, "unsupported digest algorithm");
  invalidArgument(`md5:${"a".repeat(32)}`, "unsupported digest algorithm");
  assert.match(
    (() => {
      try {
        parseDigest(`sha512:${"a".repeat(128)}`);
        return "";
      } catch (err) {
        return (err as Error).message;
      }
    })(),
    /: invalid argument$/,
  );
});

Deno.test("Sha256 streams and reads the running digest without ending it", () => {
  const hash = new Sha256();
  assert.equal(hash.digest(), sha256Digest(""));
  hash.update(encoder.encode("a")).update(encoder.encode("b"));
  assert.equal(hash.digest(), sha256Digest("ab"));
  hash.update(encoder.encode("c"));
  assert.equal(hash.hex(), HEX);
  assert.equal(hash.digest(), `sha256:${HEX}`);
  assert.equal(hash.length, 3);
  hash.reset();
  assert.equal(hash.length, 0);
  assert.equal(hash.digest(), sha256Digest(""));
});

Deno.test("one-shot helpers agree with node:crypto", async () => {
  const data = new Uint8Array(100_000).map((_, i) => (i * 31 + (i >> 8)) & 0xff);
  const expected = createHash("sha256").update(data).digest("hex");
  assert.equal(sha256Hex(data), expected);
  assert.equal(sha256Digest(data), `sha256:${expected}`);
  assert.equal(sha256Hex("abc"), HEX);
  assert.equal(sha256Hex("ü"), createHash("sha256").update(encoder.encode("ü")).digest("hex"));
  const chunks = [data.subarray(0, 10), data.subarray(10, 70_000), data.subarray(70_000)];
  assert.deepEqual(await sha256OfStream(chunks), {
    digest: `sha256:${expected}`,
    size: data.length,
  });
  async function* gen() {
    yield* chunks;
  }
  assert.deepEqual(await sha256OfStream(gen()), {
    digest: `sha256:${expected}`,
    size: data.length,
  });
});
