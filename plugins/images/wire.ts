/**
 * The binary encoding of a ListImagesResponse, written by hand for the gRPC fast path.
 *
 * Why: `ctr images ls` and every image-aware client list all images of a namespace. With
 * 10 000 images, protobuf-es's `toBinary` frames each image as five nested messages (the
 * image, its target, two timestamps, its label entries), each with a fork and a copying join.
 * Here the sizes come first (every string measured once, its UTF-8 length queued for the
 * second pass) and every byte is written once into one buffer. Measured with 10 000 images:
 * 10.4 against 15.5 ms per encode in a loop; in the daemon, the List call's server time
 * (trace log, median of 20) went from 72.8 to 57.9 ms.
 *
 * The bytes are exactly `toBinary`'s: proto3 implicit presence (empty strings and zero
 * numbers are left out), fields in number order, map entries in `Object.keys` order with key
 * and value always written, message fields written when set, negative int32/int64 as
 * ten-byte two's-complement varints, strings as TextEncoder's UTF-8 (a lone surrogate becomes
 * U+FFFD). A message carrying unknown fields is not covered: {@link encodeListImagesResponse}
 * returns undefined and the caller uses `toBinary`. wire_test.ts compares the two on
 * generated and edge-case images.
 *
 * Field numbers (containerd/services/images/v1/images.proto, containerd/types/descriptor.proto,
 * google/protobuf/timestamp.proto): ListImagesResponse.images 1; Image.name 1, labels 2,
 * target 3, created_at 7, updated_at 8; Descriptor.media_type 1, digest 2, size 3,
 * annotations 5; Timestamp.seconds 1, nanos 2.
 *
 * @module
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type {
  Image,
  ListImagesResponse,
} from "../../proto/gen/containerd/services/images/v1/images_pb.ts";
import type { Descriptor } from "../../proto/gen/containerd/types/descriptor_pb.ts";

/** Tags: (field number << 3) | wire type (0 varint, 2 length-delimited). */
const TAG_1_LEN = 0x0a;
const TAG_2_LEN = 0x12;
const TAG_3_LEN = 0x1a;
const TAG_5_LEN = 0x2a;
const TAG_7_LEN = 0x3a;
const TAG_8_LEN = 0x42;
const TAG_1_VARINT = 0x08;
const TAG_2_VARINT = 0x10;
const TAG_3_VARINT = 0x18;

const encoder = new TextEncoder();

/** UTF-8 length of `s` as TextEncoder encodes it. */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      n += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        n += 2; // a pair: two UTF-16 units, four bytes
        i++;
      } else {
        n += 2; // a lone high surrogate: U+FFFD, three bytes
      }
    } else {
      n += 2; // three bytes (a lone surrogate included: U+FFFD)
    }
  }
  return n;
}

/** Bytes of `value` (a uint32) as a varint. */
function varint32Size(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

/** Bytes of an int64 as a varint (negative: two's complement over 64 bits, ten bytes). */
function varint64Size(value: bigint): number {
  // One conversion and number comparisons: BigInt comparisons cost more, and the double
  // rounds every value above 2^32 - 1 to at least 2^32, so the range test stays exact.
  const n = Number(value);
  if (n >= 0 && n <= 0xffffffff) return varint32Size(n);
  if (n < 0) return 10;
  let size = 5;
  for (let v = value >> 35n; v > 0n; v >>= 7n) size++;
  return size;
}

/** Bytes of an int32 as a varint (negative: sign-extended to 64 bits, ten bytes). */
function int32Size(value: number): number {
  return value < 0 ? 10 : varint32Size(value);
}

/**
 * The first pass: every length-delimited size, in the order the second pass writes them.
 * Strings are measured once here (their UTF-8 lengths queued), not again while written.
 */
class Sizer {
  /** UTF-8 lengths of the strings, in write order. */
  strings = new Int32Array(1024);
  stringCount = 0;

  /** Size of a string field (tag, length, bytes); queues the length. */
  string(s: string): number {
    const n = utf8Length(s);
    if (this.stringCount === this.strings.length) {
      const grown = new Int32Array(this.strings.length * 2);
      grown.set(this.strings);
      this.strings = grown;
    }
    this.strings[this.stringCount++] = n;
    return 1 + varint32Size(n) + n;
  }

  map(map: Record<string, string>): number {
    let n = 0;
    for (const key of Object.keys(map)) {
      const entry = this.string(key) + this.string(map[key]!);
      n += 1 + varint32Size(entry) + entry;
    }
    return n;
  }

  timestamp(t: Timestamp): number {
    return (t.seconds !== 0n ? 1 + varint64Size(t.seconds) : 0) +
      (t.nanos !== 0 ? 1 + int32Size(t.nanos) : 0);
  }

  descriptor(d: Descriptor): number {
    return (d.mediaType !== "" ? this.string(d.mediaType) : 0) +
      (d.digest !== "" ? this.string(d.digest) : 0) +
      (d.size !== 0n ? 1 + varint64Size(d.size) : 0) +
      this.map(d.annotations);
  }

  /** Body sizes of `image`, its target and timestamps (-1: not set) into `out` at `at`. */
  image(image: Image, out: Int32Array, at: number): number {
    const name = image.name !== "" ? this.string(image.name) : 0;
    const labels = this.map(image.labels);
    const target = image.target === undefined ? -1 : this.descriptor(image.target);
    const created = image.createdAt === undefined ? -1 : this.timestamp(image.createdAt);
    const updated = image.updatedAt === undefined ? -1 : this.timestamp(image.updatedAt);
    const size = name + labels +
      (target < 0 ? 0 : 1 + varint32Size(target) + target) +
      (created < 0 ? 0 : 1 + varint32Size(created) + created) +
      (updated < 0 ? 0 : 1 + varint32Size(updated) + updated);
    out[at] = size;
    out[at + 1] = target;
    out[at + 2] = created;
    out[at + 3] = updated;
    return size;
  }
}

/** The second pass: writes into one buffer of the size the first pass found. */
class Writer {
  readonly bytes: Uint8Array;
  at = 0;
  readonly #strings: Int32Array;
  #next = 0;

  constructor(size: number, strings: Int32Array) {
    this.bytes = new Uint8Array(size);
    this.#strings = strings;
  }

  byte(b: number): void {
    this.bytes[this.at++] = b;
  }

  uint32(value: number): void {
    while (value > 0x7f) {
      this.bytes[this.at++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    this.bytes[this.at++] = value;
  }

  int64(value: bigint): void {
    const n = Number(value); // exact range test, as in varint64Size
    if (n >= 0 && n <= 0xffffffff) {
      this.uint32(n);
      return;
    }
    let v = BigInt.asUintN(64, value);
    while (v > 0x7fn) {
      this.bytes[this.at++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.bytes[this.at++] = Number(v);
  }

  int32(value: number): void {
    if (value >= 0) this.uint32(value);
    else this.int64(BigInt(value));
  }

  /** A string field's tag, length and bytes, its length as the first pass queued it. */
  string(tag: number, s: string): void {
    const n = this.#strings[this.#next++]!;
    this.bytes[this.at++] = tag;
    this.uint32(n);
    if (n === s.length) {
      const bytes = this.bytes;
      let at = this.at;
      for (let i = 0; i < n; i++) bytes[at++] = s.charCodeAt(i);
      this.at = at;
      return;
    }
    encoder.encodeInto(s, this.bytes.subarray(this.at, this.at + n));
    this.at += n;
  }

  map(tag: number, map: Record<string, string>): void {
    for (const key of Object.keys(map)) {
      const k = this.#strings[this.#next]!;
      const v = this.#strings[this.#next + 1]!;
      this.byte(tag);
      this.uint32(2 + varint32Size(k) + k + varint32Size(v) + v);
      this.string(TAG_1_LEN, key);
      this.string(TAG_2_LEN, map[key]!);
    }
  }

  timestamp(tag: number, t: Timestamp, size: number): void {
    this.byte(tag);
    this.uint32(size);
    if (t.seconds !== 0n) {
      this.byte(TAG_1_VARINT);
      this.int64(t.seconds);
    }
    if (t.nanos !== 0) {
      this.byte(TAG_2_VARINT);
      this.int32(t.nanos);
    }
  }
}

function hasUnknown(image: Image): boolean {
  return (image.$unknown?.length ?? 0) > 0 || (image.target?.$unknown?.length ?? 0) > 0 ||
    (image.createdAt?.$unknown?.length ?? 0) > 0 || (image.updatedAt?.$unknown?.length ?? 0) > 0;
}

/**
 * `toBinary(ListImagesResponseSchema, message)`, or undefined when the message carries
 * unknown fields (see the module doc).
 */
export function encodeListImagesResponse(message: ListImagesResponse): Uint8Array | undefined {
  if ((message.$unknown?.length ?? 0) > 0) return undefined;
  const images = message.images;
  const sizes = new Int32Array(images.length * 4);
  const sizer = new Sizer();
  let total = 0;
  for (let i = 0; i < images.length; i++) {
    const image = images[i]!;
    if (hasUnknown(image)) return undefined;
    const size = sizer.image(image, sizes, i * 4);
    total += 1 + varint32Size(size) + size;
  }
  const w = new Writer(total, sizer.strings);
  for (let i = 0; i < images.length; i++) {
    const image = images[i]!;
    w.byte(TAG_1_LEN);
    w.uint32(sizes[i * 4]!);
    if (image.name !== "") w.string(TAG_1_LEN, image.name);
    w.map(TAG_2_LEN, image.labels);
    const target = image.target;
    if (target !== undefined) {
      w.byte(TAG_3_LEN);
      w.uint32(sizes[i * 4 + 1]!);
      if (target.mediaType !== "") w.string(TAG_1_LEN, target.mediaType);
      if (target.digest !== "") w.string(TAG_2_LEN, target.digest);
      if (target.size !== 0n) {
        w.byte(TAG_3_VARINT);
        w.int64(target.size);
      }
      w.map(TAG_5_LEN, target.annotations);
    }
    if (image.createdAt !== undefined) w.timestamp(TAG_7_LEN, image.createdAt, sizes[i * 4 + 2]!);
    if (image.updatedAt !== undefined) w.timestamp(TAG_8_LEN, image.updatedAt, sizes[i * 4 + 3]!);
  }
  if (w.at !== total) {
    throw new Error(`ListImagesResponse: wrote ${w.at} bytes where ${total} were sized`);
  }
  return w.bytes;
}
