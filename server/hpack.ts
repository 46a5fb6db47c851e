/**
 * HPACK (RFC 7541), the header compression of HTTP/2, as the daemon's own HTTP/2 server needs
 * it: a full decoder (static and dynamic tables, Huffman-coded strings, table size updates),
 * because clients such as `ctr` (grpc-go) index and Huffman-code what they send; and a small
 * encoder that never touches the dynamic table (literals without indexing, names from the
 * static table), so responses need no per-connection encoder state and the peer's table size
 * setting never matters.
 *
 * @example
 * ```ts
 * import { encodeHeaders, HpackDecoder } from "./hpack.ts";
 * const block = encodeHeaders([[":status", "200"], ["content-type", "application/grpc"]]);
 * const fields = new HpackDecoder().decode(block); // [[":status","200"],["content-type",...]]
 * ```
 * @module
 */

/** A malformed header block; HTTP/2 answers it with a COMPRESSION_ERROR connection error. */
export class HpackError extends Error {
  override name = "HpackError";
}

/** One header field: lowercase name and value. */
export type HeaderField = [name: string, value: string];

/** The static table (RFC 7541 Appendix A); index 1 is element 0. */
const STATIC_TABLE: readonly HeaderField[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ...[
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
  ].map((name): HeaderField => [name, ""]),
];

/** Static-table index of each name (its first entry), for the encoder. */
const STATIC_NAME_INDEX: ReadonlyMap<string, number> = (() => {
  const index = new Map<string, number>();
  STATIC_TABLE.forEach(([name], i) => {
    if (!index.has(name)) index.set(name, i + 1);
  });
  return index;
})();

/**
 * Huffman code lengths of symbols 0–255 (RFC 7541 Appendix B), one character each as
 * `48 + length`; the EOS symbol (256) is 30 bits. The code is canonical — codes of one length
 * are consecutive in symbol order and shorter codes come first — so lengths are all a decoder
 * needs.
 */
const HUFFMAN_LENGTHS =
  "=GLLLLLLLHNLLNLLLLLLLLNLLLLLLLLL6::<=68;::8;8666555666666678?6<:=67777777" +
  "777777777777777878=C=>6?56565666577666567655677777?;>=LDFDDFFFGFGGGGGHGHHFGHGGGGEFGFGGHFEDFFGG" +
  "EGFFHEFGGEEFEGFGGDFFFGFFGJJDCFGFIJJJKKJHICEJKKJKHEEJJLKKKDHDEFEEGFFIIHHJGJKJJKKKKKLKKKKKJ";
const EOS = 256;
const MAX_CODE_BITS = 30;

/** Canonical decoding tables: per length, its first code, how many codes, where they start. */
interface HuffmanTable {
  readonly firstCode: Int32Array;
  readonly count: Int32Array;
  readonly offset: Int32Array;
  /** Symbols ordered by (length, symbol). */
  readonly symbols: Uint16Array;
}

function buildHuffmanTable(): HuffmanTable {
  const lengths = new Uint8Array(257);
  for (let s = 0; s < 256; s++) lengths[s] = HUFFMAN_LENGTHS.charCodeAt(s) - 48;
  lengths[EOS] = MAX_CODE_BITS;
  const count = new Int32Array(MAX_CODE_BITS + 1);
  for (const l of lengths) count[l]!++;
  const offset = new Int32Array(MAX_CODE_BITS + 1);
  const firstCode = new Int32Array(MAX_CODE_BITS + 1);
  let code = 0;
  let at = 0;
  for (let l = 1; l <= MAX_CODE_BITS; l++) {
    code = (code + count[l - 1]!) << 1;
    firstCode[l] = code;
    offset[l] = at;
    at += count[l]!;
  }
  // Symbols in (length, symbol) order: one pass in symbol order, each to its length's next
  // slot. (A pass per length was 7 710 iterations at every boot: enough for V8 to replace the
  // running loop with Maglev and then Turbofan code, ~2 ms on a compiler thread.)
  const symbols = new Uint16Array(257);
  const next = offset.slice();
  for (let s = 0; s <= EOS; s++) symbols[next[lengths[s]!]!++] = s;
  return { firstCode, count, offset, symbols };
}

/** Per-module constant: built once, never mutated. */
const HUFFMAN = buildHuffmanTable();

/** Decode a Huffman-coded string (RFC 7541 5.2): padding must be at most 7 one-bits. */
export function huffmanDecode(input: Uint8Array): Uint8Array {
  const { firstCode, count, offset, symbols } = HUFFMAN;
  const out = new Uint8Array(Math.ceil((input.length * 8) / 5));
  let n = 0;
  let code = 0;
  let length = 0;
  let allOnes = true;
  for (let i = 0; i < input.length; i++) {
    const byte = input[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      code = (code << 1) | b;
      allOnes &&= b === 1;
      length++;
      const k = code - firstCode[length]!;
      if (k >= 0 && k < count[length]!) {
        const symbol = symbols[offset[length]! + k]!;
        if (symbol === EOS) throw new HpackError("Huffman string contains EOS");
        out[n++] = symbol;
        code = 0;
        length = 0;
        allOnes = true;
      } else if (length >= MAX_CODE_BITS) {
        throw new HpackError("invalid Huffman code");
      }
    }
  }
  if (length > 7 || !allOnes) throw new HpackError("invalid Huffman padding");
  return out.subarray(0, n);
}

/** Default and largest dynamic table size the decoder allows (SETTINGS_HEADER_TABLE_SIZE). */
export const HPACK_TABLE_BYTES = 4096;
/** Per-entry overhead counted against the table size (RFC 7541 4.1). */
const ENTRY_OVERHEAD = 32;

const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();

/**
 * One connection's HPACK decoder: it owns the dynamic table, so every header block of the
 * connection must pass through it, in order — including blocks of streams that are refused.
 */
export class HpackDecoder {
  /** Newest first. */
  #table: { field: HeaderField; size: number }[] = [];
  #tableBytes = 0;
  #maxTableBytes = HPACK_TABLE_BYTES;
  readonly #maxListBytes: number;
  /** Decoded strings by a hash of their encoded bytes (see #string). */
  readonly #strings = new Map<
    number,
    { raw: Uint8Array; huffman: boolean; decoded: DecodedString }
  >();

  /** `maxListBytes` caps the decoded header list (names + values + 32 per field). */
  constructor(maxListBytes = 1 << 20) {
    this.#maxListBytes = maxListBytes;
  }

  /** Decode a complete header block into fields, updating the dynamic table. */
  decode(block: Uint8Array): HeaderField[] {
    const fields: HeaderField[] = [];
    let listBytes = 0;
    let at = 0;
    let fieldSeen = false;
    const readInt = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      let value = block[at++]! & mask;
      if (value < mask) return value;
      let shift = 0;
      for (;;) {
        if (at >= block.length) throw new HpackError("truncated integer");
        const b = block[at++]!;
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if ((b & 0x80) === 0) return value;
        if (shift > 28) throw new HpackError("integer too large");
      }
    };
    const readString = (): { text: string; bytes: number } => {
      if (at >= block.length) throw new HpackError("truncated string");
      const huffman = (block[at]! & 0x80) !== 0;
      const length = readInt(7);
      if (at + length > block.length) throw new HpackError("truncated string");
      const raw = block.subarray(at, at + length);
      at += length;
      return this.#string(raw, huffman);
    };
    const entry = (index: number): { field: HeaderField; size: number } => {
      if (index === 0) throw new HpackError("header index 0");
      if (index <= STATIC_TABLE.length) {
        const field = STATIC_TABLE[index - 1]!;
        return { field, size: field[0].length + field[1].length + ENTRY_OVERHEAD };
      }
      const dynamic = this.#table[index - STATIC_TABLE.length - 1];
      if (dynamic === undefined) throw new HpackError(`header index ${index} out of range`);
      return dynamic;
    };
    const emit = (field: HeaderField, size: number) => {
      listBytes += size;
      if (listBytes > this.#maxListBytes) {
        throw new HpackError(`header list larger than ${this.#maxListBytes} bytes`);
      }
      fields.push(field);
    };
    while (at < block.length) {
      const first = block[at]!;
      if (first & 0x80) {
        const { field, size } = entry(readInt(7));
        emit(field, size);
        fieldSeen = true;
      } else if ((first & 0xe0) === 0x20) {
        if (fieldSeen) throw new HpackError("table size update after a header field");
        const size = readInt(5);
        if (size > HPACK_TABLE_BYTES) {
          throw new HpackError(`table size ${size} above the ${HPACK_TABLE_BYTES} allowed`);
        }
        this.#maxTableBytes = size;
        this.#evict(0);
      } else {
        const indexing = (first & 0xc0) === 0x40;
        const index = readInt(indexing ? 6 : 4);
        let name: string;
        let nameBytes: number;
        if (index === 0) {
          const s = readString();
          name = s.text;
          nameBytes = s.bytes;
        } else {
          name = entry(index).field[0];
          nameBytes = name.length;
        }
        const value = readString();
        const field: HeaderField = [name, value.text];
        const size = nameBytes + value.bytes + ENTRY_OVERHEAD;
        emit(field, size);
        fieldSeen = true;
        if (indexing) this.#insert(field, size);
      }
    }
    return fields;
  }

  /**
   * A string's text, from the cache when these exact bytes were seen before: clients that
   * do not index a field (nghttp2 never indexes `:path`) send the same Huffman bytes on
   * every request, and decoding them was the largest cost of a small call.
   */
  #string(raw: Uint8Array, huffman: boolean): DecodedString {
    if (raw.length > STRING_CACHE_MAX_BYTES) return decodeString(raw, huffman);
    let hash = huffman ? 0x811c9dc5 : 0x01000193;
    for (let i = 0; i < raw.length; i++) hash = Math.imul(hash ^ raw[i]!, 0x01000193);
    const cached = this.#strings.get(hash);
    if (cached !== undefined && cached.huffman === huffman && sameBytes(cached.raw, raw)) {
      return cached.decoded;
    }
    const decoded = decodeString(raw, huffman);
    if (this.#strings.size >= STRING_CACHE_ENTRIES) this.#strings.clear();
    this.#strings.set(hash, { raw: raw.slice(), huffman, decoded });
    return decoded;
  }

  #insert(field: HeaderField, size: number): void {
    this.#evict(size);
    if (size > this.#maxTableBytes) return; // too large: the table is just emptied
    this.#table.unshift({ field, size });
    this.#tableBytes += size;
  }

  /** Evict oldest entries until `incoming` more bytes fit. */
  #evict(incoming: number): void {
    while (this.#table.length > 0 && this.#tableBytes + incoming > this.#maxTableBytes) {
      this.#tableBytes -= this.#table.pop()!.size;
    }
  }
}

/** A decoded string literal and its length in octets (what the table size counts). */
interface DecodedString {
  readonly text: string;
  readonly bytes: number;
}

/** Strings longer than this are decoded every time (they are rare and rarely repeat). */
const STRING_CACHE_MAX_BYTES = 128;
/** Distinct strings a decoder remembers before it starts over. */
const STRING_CACHE_ENTRIES = 256;

function decodeString(raw: Uint8Array, huffman: boolean): DecodedString {
  const bytes = huffman ? huffmanDecode(raw) : raw;
  return { text: latinOrUtf8(bytes), bytes: bytes.length };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** ASCII stays a one-byte-per-char string without a decoder call; anything else is UTF-8. */
function latinOrUtf8(bytes: Uint8Array): string {
  if (bytes.length < 64) {
    let ascii = true;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i]! > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode(...bytes);
  }
  return utf8.decode(bytes);
}

/**
 * Encode header fields as one block: `:status: 200` as its static index, every other field as
 * a literal without indexing (a static-table name where there is one), strings not Huffman
 * coded. Names must already be lowercase.
 */
export function encodeHeaders(fields: Iterable<HeaderField>): Uint8Array<ArrayBuffer> {
  let out: Uint8Array<ArrayBuffer> = new Uint8Array(256);
  let at = 0;
  const reserve = (more: number) => {
    if (at + more <= out.length) return;
    const grown = new Uint8Array(Math.max(out.length * 2, at + more));
    grown.set(out.subarray(0, at));
    out = grown;
  };
  const writeInt = (value: number, prefixBits: number, firstBits: number) => {
    reserve(6);
    const max = (1 << prefixBits) - 1;
    if (value < max) {
      out[at++] = firstBits | value;
      return;
    }
    out[at++] = firstBits | max;
    value -= max;
    while (value >= 0x80) {
      out[at++] = (value & 0x7f) | 0x80;
      value = Math.floor(value / 0x80);
    }
    out[at++] = value;
  };
  const writeString = (text: string) => {
    let ascii = true;
    for (let i = 0; i < text.length; i++) {
      if (text.charCodeAt(i) > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (!ascii) {
      const bytes = utf8Encoder.encode(text);
      writeInt(bytes.length, 7, 0);
      reserve(bytes.length);
      out.set(bytes, at);
      at += bytes.length;
      return;
    }
    writeInt(text.length, 7, 0);
    reserve(text.length);
    for (let i = 0; i < text.length; i++) out[at++] = text.charCodeAt(i);
  };
  for (const [name, value] of fields) {
    if (name === ":status" && value === "200") {
      reserve(1);
      out[at++] = 0x88;
      continue;
    }
    const index = STATIC_NAME_INDEX.get(name);
    if (index !== undefined) {
      writeInt(index, 4, 0);
    } else {
      reserve(1);
      out[at++] = 0;
      writeString(name);
    }
    writeString(value);
  }
  return out.subarray(0, at);
}
