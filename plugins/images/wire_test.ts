import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import {
  type Image,
  ImageSchema,
  ListImagesResponseSchema,
} from "../../proto/gen/containerd/services/images/v1/images_pb.ts";
import { DescriptorSchema } from "../../proto/gen/containerd/types/descriptor_pb.ts";
import { encodeListImagesResponse } from "./wire.ts";

function same(images: Image[], label: string): void {
  const message = create(ListImagesResponseSchema, { images });
  assert.deepEqual(
    encodeListImagesResponse(message),
    toBinary(ListImagesResponseSchema, message),
    label,
  );
}

/** A small deterministic generator, so a failure names a reproducible case. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const PIECES = [
  "",
  "a",
  "docker.io/library/busybox:latest",
  "ü",
  "€",
  "日本",
  "😀",
  "\ud800", // a lone high surrogate
  "\udc00", // a lone low surrogate
  "x\ud83dy", // a high surrogate followed by a non-surrogate
  "x".repeat(127),
  "y".repeat(128),
  "z".repeat(16384),
];

const INT64S = [
  0n,
  1n,
  127n,
  128n,
  2n ** 31n - 1n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 35n,
  2n ** 53n,
  2n ** 63n - 1n,
  -1n,
  -(2n ** 63n),
];
const INT32S = [0, 1, 127, 128, 999_999_999, 2 ** 31 - 1, -1, -(2 ** 31)];

function timestamp(next: () => number): Timestamp | undefined {
  if (next() < 0.2) return undefined;
  return create(TimestampSchema, {
    seconds: INT64S[Math.floor(next() * INT64S.length)]!,
    nanos: INT32S[Math.floor(next() * INT32S.length)]!,
  });
}

function map(next: () => number): Record<string, string> {
  const out: Record<string, string> = {};
  const n = Math.floor(next() * 4);
  for (let i = 0; i < n; i++) {
    out[`${PIECES[Math.floor(next() * PIECES.length)]!}${i}`] =
      PIECES[Math.floor(next() * PIECES.length)]!;
  }
  return out;
}

function image(next: () => number): Image {
  return create(ImageSchema, {
    name: PIECES[Math.floor(next() * PIECES.length)]!,
    labels: map(next),
    target: next() < 0.1 ? undefined : create(DescriptorSchema, {
      mediaType: PIECES[Math.floor(next() * PIECES.length)]!,
      digest: next() < 0.5 ? "" : `sha256:${"ab".repeat(32)}`,
      size: INT64S[Math.floor(next() * INT64S.length)]!,
      annotations: map(next),
    }),
    createdAt: timestamp(next),
    updatedAt: timestamp(next),
  });
}

Deno.test("encodeListImagesResponse gives toBinary's bytes: empty, zero values, edges", () => {
  same([], "no images");
  same([create(ImageSchema)], "an image with every field unset");
  same([create(ImageSchema, { target: create(DescriptorSchema) })], "an empty target");
  same(
    [create(ImageSchema, { createdAt: create(TimestampSchema) })],
    "a zero timestamp is still a field",
  );
  same(
    [create(ImageSchema, { labels: { "": "" } })],
    "a map entry of empty strings is written",
  );
  for (const piece of PIECES) {
    same([create(ImageSchema, { name: piece, labels: { [piece || "k"]: piece } })], piece);
  }
  for (const size of INT64S) {
    same([create(ImageSchema, { target: create(DescriptorSchema, { size }) })], `${size}`);
  }
  for (const nanos of INT32S) {
    for (const seconds of INT64S) {
      same(
        [create(ImageSchema, { updatedAt: create(TimestampSchema, { seconds, nanos }) })],
        `${seconds}s ${nanos}ns`,
      );
    }
  }
});

Deno.test("encodeListImagesResponse gives toBinary's bytes on generated lists", () => {
  const next = rng(6);
  for (let round = 0; round < 200; round++) {
    const images = Array.from({ length: Math.floor(next() * 20) }, () => image(next));
    same(images, `round ${round}`);
  }
  // The scale scenario's shape, 10 000 images in one response.
  const many = Array.from({ length: 10_000 }, (_, n) =>
    create(ImageSchema, {
      name: `bench.example/scale/img-${String(n).padStart(6, "0")}:latest`,
      labels: { "bench.example/index": String(n), "containerd.io/gc.root": "bench" },
      target: create(DescriptorSchema, {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: `sha256:${"cd".repeat(32)}`,
        size: BigInt(1234 + n),
      }),
      createdAt: create(TimestampSchema, { seconds: 1_795_900_000n + BigInt(n), nanos: n * 1000 }),
      updatedAt: create(TimestampSchema, { seconds: 1_795_900_000n, nanos: 999_999_999 }),
    }));
  same(many, "10 000 images");
});

Deno.test("encodeListImagesResponse leaves messages with unknown fields to toBinary", () => {
  const withUnknown = create(ImageSchema, { name: "a" });
  withUnknown.$unknown = [{ no: 99, wireType: 0, data: new Uint8Array([1]) }];
  assert.equal(
    encodeListImagesResponse(create(ListImagesResponseSchema, { images: [withUnknown] })),
    undefined,
  );
  const target = create(DescriptorSchema, { digest: "d" });
  target.$unknown = [{ no: 9, wireType: 0, data: new Uint8Array([1]) }];
  assert.equal(
    encodeListImagesResponse(
      create(ListImagesResponseSchema, { images: [create(ImageSchema, { target })] }),
    ),
    undefined,
  );
});
