/**
 * Streaming tar reader and a small tar writer: the only module of containerd-ts that knows the
 * tar format.
 *
 * The reader pulls 512-byte blocks from an async byte source and yields one entry at a time;
 * an entry's data is streamed, never held whole, so a layer of any size is read in constant
 * memory. It understands the formats container layers use: POSIX ustar, PAX (local `x`
 * records: `path`, `linkpath`, `size`, `uid`, `gid`, `mtime`, `atime`, `uname`, `gname`,
 * `SCHILY.xattr.*` with raw byte values), GNU (`L`/`K` long names, base-256 numbers, atime)
 * and old V7 headers. PAX global headers (`g`) are read and ignored, as Go's archive/tar and
 * containerd do. GNU sparse files are refused.
 *
 * It is stricter than Go's reader in one way: a non-empty archive must end with the
 * end-of-archive marker (a zero block), so a tar cut off at a block boundary is reported as
 * truncated instead of silently accepted. Bytes after the marker are read (so a digest over the
 * stream covers them, as containerd's does) but not parsed.
 *
 * Our own implementation rather than the npm tar-stream package: tar-stream decodes PAX values
 * as UTF-8 text, which corrupts binary xattrs such as `security.capability`, and it parses
 * whatever follows the end-of-archive marker as more headers.
 *
 * @example
 * ```ts
 * import { readTar, tarArchive } from "./tar.ts";
 * const bytes = tarArchive([{ header: { name: "hello.txt" }, data: "hi\n" }]);
 * for await (const entry of readTar([bytes])) {
 *   console.log(entry.header.name, entry.header.size); // hello.txt 3
 *   for await (const _chunk of entry.body) { }
 * }
 * ```
 * @module
 */
import { InvalidArgumentError, NotImplementedError } from "../../server/errdefs.ts";

/** Size of a tar block; headers and data are padded to it. */
export const BLOCK_SIZE = 512;

/** Largest PAX, GNU long-name or global header we accept (as Go's archive/tar: 1 MiB). */
export const MAX_SPECIAL_SIZE = 1 << 20;

/** The kinds of entries a layer can hold, plus `unsupported` for anything else. */
export type TarEntryType =
  | "file"
  | "link"
  | "symlink"
  | "char"
  | "block"
  | "dir"
  | "fifo"
  | "unsupported";

/** A timestamp with nanoseconds, as tar and utimensat carry it. */
export interface TarTime {
  /** Whole seconds since the Unix epoch (may be negative). */
  sec: number;
  /** Nanoseconds, 0..999999999. */
  nsec: number;
}

/** A parsed tar header with PAX and GNU extensions already merged in. */
export interface TarHeader {
  /** Entry name exactly as archived (after PAX `path` / GNU `L`), not cleaned. */
  name: string;
  /** Entry kind. A `\0` type flag is `dir` when the name ends with `/`, else `file`. */
  type: TarEntryType;
  /** The raw type flag character, e.g. `"0"`, `"5"`, `"S"`. */
  typeflag: string;
  /** Permission and setuid/setgid/sticky bits (`mode & 0o7777`). */
  mode: number;
  /** Owner user id. */
  uid: number;
  /** Owner group id. */
  gid: number;
  /** Size of the entry's data in the archive (0 for header-only types). */
  size: number;
  /** Modification time. */
  mtime: TarTime;
  /** Access time when the archive carries one (PAX `atime` or GNU header field). */
  atime: TarTime | undefined;
  /** Link target of `link` and `symlink` entries, else "". */
  linkname: string;
  /** Device major number of `char` and `block` entries. */
  devmajor: number;
  /** Device minor number of `char` and `block` entries. */
  devminor: number;
  /** Owner user name (informational). */
  uname: string;
  /** Owner group name (informational). */
  gname: string;
  /** Extended attributes from `SCHILY.xattr.<name>` PAX records, raw byte values. */
  xattrs: Map<string, Uint8Array>;
  /** All PAX records of the entry, raw byte values. */
  pax: Map<string, Uint8Array>;
}

/**
 * One archive member. `body` yields the entry's data and is valid only until the reader is
 * advanced; data not read by then is skipped.
 */
export interface TarEntry {
  /** The entry's header. */
  header: TarHeader;
  /** The entry's data, streamed in the chunks the source delivered. */
  body: AsyncIterable<Uint8Array>;
}

const textDecoder = new TextDecoder("utf-8", { fatal: true });
const lossyDecoder = new TextDecoder("utf-8");
const textEncoder = new TextEncoder();

function truncated(what: string): InvalidArgumentError {
  return new InvalidArgumentError(`tar archive is truncated: ${what}`);
}

/** Pull-based byte buffer over an async chunk source. Chunks are used in place, not copied. */
class ByteReader {
  readonly #it: AsyncIterator<Uint8Array>;
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;
  #eof = false;
  /** Bytes handed out so far; used to report offsets. */
  offset = 0;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#it = source[Symbol.asyncIterator]();
  }

  async #pull(): Promise<boolean> {
    if (this.#eof) return false;
    const r = await this.#it.next();
    if (r.done) {
      this.#eof = true;
      return false;
    }
    if (r.value.length > 0) {
      this.#chunks.push(r.value);
      this.#buffered += r.value.length;
    }
    return true;
  }

  /** Read exactly `n` bytes, or fewer only at end of input. Returns a fresh copy. */
  async read(n: number): Promise<Uint8Array> {
    while (this.#buffered < n && await this.#pull());
    const len = Math.min(n, this.#buffered);
    const first = this.#chunks[0];
    if (first !== undefined && first.length >= len) {
      const out = first.slice(0, len);
      this.#consume(len);
      return out;
    }
    const out = new Uint8Array(len);
    let filled = 0;
    while (filled < len) {
      const chunk = this.#chunks[0]!;
      const take = Math.min(chunk.length, len - filled);
      out.set(chunk.subarray(0, take), filled);
      filled += take;
      this.#consume(take);
    }
    return out;
  }

  /** Up to `max` bytes as a view of the current chunk; null at end of input. */
  async next(max: number): Promise<Uint8Array | null> {
    while (this.#buffered === 0) {
      if (!await this.#pull()) return null;
    }
    const chunk = this.#chunks[0]!;
    const take = Math.min(chunk.length, max);
    const out = chunk.subarray(0, take);
    this.#consume(take);
    return out;
  }

  /** Skip `n` bytes; returns how many were actually skipped (fewer at end of input). */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      const chunk = await this.next(left);
      if (chunk === null) break;
      left -= chunk.length;
    }
    return n - left;
  }

  #consume(n: number): void {
    this.#buffered -= n;
    this.offset += n;
    while (n > 0) {
      const chunk = this.#chunks[0]!;
      if (chunk.length <= n) {
        this.#chunks.shift();
        n -= chunk.length;
      } else {
        this.#chunks[0] = chunk.subarray(n);
        n = 0;
      }
    }
  }

  async close(): Promise<void> {
    if (!this.#eof) {
      this.#eof = true;
      await this.#it.return?.();
    }
  }
}

function isZeroBlock(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** Bytes of a NUL-terminated field. */
function fieldBytes(b: Uint8Array, off: number, len: number): Uint8Array {
  const f = b.subarray(off, off + len);
  const nul = f.indexOf(0);
  return nul < 0 ? f : f.subarray(0, nul);
}

function decodeName(bytes: Uint8Array, what: string): string {
  try {
    return textDecoder.decode(bytes);
  } catch {
    throw new InvalidArgumentError(
      `tar ${what} ${JSON.stringify(lossyDecoder.decode(bytes))} is not valid UTF-8`,
    );
  }
}

/** Parse a numeric header field: octal text or GNU base-256. */
function parseNumeric(b: Uint8Array, off: number, len: number, what: string): number {
  const f = b.subarray(off, off + len);
  if (f.length > 0 && (f[0]! & 0x80) !== 0) {
    // Base-256: big-endian two's complement after the 0x80 marker bit. A negative value is
    // read as the inverted bytes' magnitude, using -a-1 == ~a.
    const inv = (f[0]! & 0x40) !== 0 ? 0xff : 0;
    let v = 0n;
    for (let i = 0; i < f.length; i++) {
      let byte = f[i]! ^ inv;
      if (i === 0) byte &= 0x7f;
      v = (v << 8n) | BigInt(byte);
    }
    if (inv !== 0) v = -v - 1n;
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new InvalidArgumentError(`tar header field ${what} is out of range`);
    }
    return Number(v);
  }
  let start = 0;
  let end = f.length;
  while (start < end && (f[start] === 0x20 || f[start] === 0)) start++;
  while (end > start && (f[end - 1] === 0x20 || f[end - 1] === 0)) end--;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = f[i]!;
    if (c < 0x30 || c > 0x37) {
      throw new InvalidArgumentError(
        `tar header field ${what} is not an octal number: ${
          JSON.stringify(lossyDecoder.decode(f))
        }`,
      );
    }
    v = v * 8 + (c - 0x30);
  }
  if (v > Number.MAX_SAFE_INTEGER) {
    throw new InvalidArgumentError(`tar header field ${what} is out of range`);
  }
  return v;
}

/** Parse a decimal PAX number. */
function parsePaxInt(v: Uint8Array, key: string): number {
  const s = lossyDecoder.decode(v);
  if (!/^[0-9]{1,16}$/.test(s) || Number(s) > Number.MAX_SAFE_INTEGER) {
    throw new InvalidArgumentError(`tar PAX record ${key}=${JSON.stringify(s)} is invalid`);
  }
  return Number(s);
}

/** Parse a PAX time `[-]sec[.frac]`. */
function parsePaxTime(v: Uint8Array, key: string): TarTime {
  const s = lossyDecoder.decode(v);
  const m = /^(-?)([0-9]{1,16})(?:\.([0-9]*))?$/.exec(s);
  if (m === null) {
    throw new InvalidArgumentError(`tar PAX record ${key}=${JSON.stringify(s)} is invalid`);
  }
  const sec = Number(m[2]);
  const nsec = Number(((m[3] ?? "") + "000000000").slice(0, 9));
  if (m[1] === "-") {
    return nsec === 0 ? { sec: -sec, nsec: 0 } : { sec: -sec - 1, nsec: 1e9 - nsec };
  }
  return { sec, nsec };
}

/** Parse the records of a PAX extended header: `"%d %s=%s\n"`, length counting itself. */
export function parsePaxRecords(data: Uint8Array): Map<string, Uint8Array> {
  const records = new Map<string, Uint8Array>();
  let off = 0;
  while (off < data.length) {
    // Some writers pad the data with NULs.
    if (data[off] === 0) break;
    const sp = data.indexOf(0x20, off);
    const lenText = sp < 0 ? "" : lossyDecoder.decode(data.subarray(off, sp));
    const len = /^[0-9]{1,7}$/.test(lenText) ? Number(lenText) : NaN;
    if (!(len > 0) || off + len > data.length || sp >= off + len || data[off + len - 1] !== 0x0a) {
      throw new InvalidArgumentError(`tar PAX header is malformed at byte ${off}`);
    }
    const rec = data.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new InvalidArgumentError(`tar PAX record at byte ${off} has no key`);
    const key = lossyDecoder.decode(rec.subarray(0, eq));
    records.set(key, rec.slice(eq + 1));
    off += len;
  }
  return records;
}

function typeOf(flag: string, name: string): TarEntryType {
  switch (flag) {
    case "0":
    case "7": // contiguous file: a regular file everywhere that matters
      return "file";
    case "\0":
      return name.endsWith("/") ? "dir" : "file";
    case "1":
      return "link";
    case "2":
      return "symlink";
    case "3":
      return "char";
    case "4":
      return "block";
    case "5":
      return "dir";
    case "6":
      return "fifo";
    default:
      return "unsupported";
  }
}

/** Types whose header carries no data blocks whatever the size field says (as Go's reader). */
function isHeaderOnly(t: TarEntryType): boolean {
  return t === "link" || t === "symlink" || t === "char" || t === "block" || t === "dir" ||
    t === "fifo";
}

function padding(size: number): number {
  return (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;
}

function checksumOk(block: Uint8Array): boolean {
  let stored: number;
  try {
    stored = parseNumeric(block, 148, 8, "chksum");
  } catch {
    return false;
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === unsigned || stored === signed;
}

function matches(b: Uint8Array, off: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (b[off + i] !== text.charCodeAt(i)) return false;
  return true;
}

interface Pending {
  pax: Map<string, Uint8Array> | null;
  longName: string | null;
  longLink: string | null;
}

function buildHeader(block: Uint8Array, pending: Pending): TarHeader {
  if (!checksumOk(block)) {
    throw new InvalidArgumentError("tar header checksum mismatch (not a tar archive?)");
  }
  const typeflag = String.fromCharCode(block[156]!);
  const ustar = matches(block, 257, "ustar\0") && matches(block, 263, "00");
  const gnu = matches(block, 257, "ustar ") && matches(block, 263, " \0");
  let name = decodeName(fieldBytes(block, 0, 100), "entry name");
  if (ustar) {
    // star archives keep atime/ctime after a 131-byte prefix and mark that with "tar\0".
    const star = matches(block, 508, "tar\0");
    const prefix = decodeName(fieldBytes(block, 345, star ? 131 : 155), "entry name prefix");
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  let linkname = decodeName(fieldBytes(block, 157, 100), "link name");
  let size = parseNumeric(block, 124, 12, "size");
  let uid = parseNumeric(block, 108, 8, "uid");
  let gid = parseNumeric(block, 116, 8, "gid");
  let mtime: TarTime = { sec: parseNumeric(block, 136, 12, "mtime"), nsec: 0 };
  let atime: TarTime | undefined;
  if (gnu && block[345] !== 0) {
    atime = { sec: parseNumeric(block, 345, 12, "atime"), nsec: 0 };
  }
  const hasUstarFields = ustar || gnu;
  let uname = hasUstarFields ? lossyDecoder.decode(fieldBytes(block, 265, 32)) : "";
  let gname = hasUstarFields ? lossyDecoder.decode(fieldBytes(block, 297, 32)) : "";
  const devmajor = hasUstarFields ? parseNumeric(block, 329, 8, "devmajor") : 0;
  const devminor = hasUstarFields ? parseNumeric(block, 337, 8, "devminor") : 0;

  if (pending.longName !== null) name = pending.longName;
  if (pending.longLink !== null) linkname = pending.longLink;
  const pax = pending.pax ?? new Map<string, Uint8Array>();
  const xattrs = new Map<string, Uint8Array>();
  for (const [key, value] of pax) {
    if (key.startsWith("GNU.sparse.")) {
      throw new NotImplementedError(
        `tar entry ${JSON.stringify(name)}: sparse files are not supported`,
      );
    }
    if (key.startsWith("SCHILY.xattr.")) {
      const attr = key.slice("SCHILY.xattr.".length);
      if (attr === "" || attr.includes("\0")) {
        throw new InvalidArgumentError(`tar PAX record ${JSON.stringify(key)} is invalid`);
      }
      xattrs.set(attr, value);
      continue;
    }
    // An empty value deletes the record: the header field stands.
    if (value.length === 0) continue;
    switch (key) {
      case "path":
      case "linkpath": {
        if (value.includes(0)) {
          throw new InvalidArgumentError(`tar PAX record ${key} contains a NUL byte`);
        }
        const text = decodeName(value, key === "path" ? "entry name" : "link name");
        if (key === "path") name = text;
        else linkname = text;
        break;
      }
      case "size":
        size = parsePaxInt(value, key);
        break;
      case "uid":
        uid = parsePaxInt(value, key);
        break;
      case "gid":
        gid = parsePaxInt(value, key);
        break;
      case "mtime":
        mtime = parsePaxTime(value, key);
        break;
      case "atime":
        atime = parsePaxTime(value, key);
        break;
      case "uname":
        uname = lossyDecoder.decode(value);
        break;
      case "gname":
        gname = lossyDecoder.decode(value);
        break;
    }
  }
  const type = typeOf(typeflag, name);
  if (typeflag === "S") {
    throw new NotImplementedError(
      `tar entry ${JSON.stringify(name)}: sparse files are not supported`,
    );
  }
  return {
    name,
    type,
    typeflag,
    mode: parseNumeric(block, 100, 8, "mode") & 0o7777,
    uid,
    gid,
    size: isHeaderOnly(type) ? 0 : size,
    mtime,
    atime,
    linkname,
    devmajor,
    devminor,
    uname,
    gname,
    xattrs,
    pax,
  };
}

/**
 * Read a tar archive entry by entry. Consumes `source` to its end (also past the
 * end-of-archive marker) and closes it when done or when the caller stops early.
 *
 * Throws InvalidArgumentError for a malformed or truncated archive and NotImplementedError
 * for sparse files. Errors thrown by `source` pass through unchanged.
 */
export async function* readTar(
  source: AsyncIterable<Uint8Array>,
): AsyncGenerator<TarEntry, void, undefined> {
  const r = new ByteReader(source);
  try {
    const pending: Pending = { pax: null, longName: null, longLink: null };
    for (;;) {
      const headerOffset = r.offset;
      const block = await r.read(BLOCK_SIZE);
      if (block.length === 0) {
        // A completely empty stream is an empty archive; anything else must end properly.
        if (headerOffset === 0) return;
        throw truncated(`no end-of-archive marker after ${headerOffset} bytes`);
      }
      if (block.length < BLOCK_SIZE) throw truncated(`partial header at byte ${headerOffset}`);
      if (isZeroBlock(block)) {
        const second = await r.read(BLOCK_SIZE);
        if (second.length > 0 && second.length < BLOCK_SIZE) {
          throw truncated(`partial end-of-archive marker at byte ${headerOffset + BLOCK_SIZE}`);
        }
        if (second.length === BLOCK_SIZE && !isZeroBlock(second)) {
          throw new InvalidArgumentError(
            `tar archive has a zero block followed by data at byte ${headerOffset}`,
          );
        }
        break;
      }
      let header: TarHeader;
      try {
        header = buildHeader(block, pending);
      } catch (err) {
        if (err instanceof InvalidArgumentError) {
          throw new InvalidArgumentError(`${err.message} (header at byte ${headerOffset})`);
        }
        throw err;
      }
      const flag = header.typeflag;
      if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
        if (header.size > MAX_SPECIAL_SIZE) {
          throw new InvalidArgumentError(
            `tar extended header at byte ${headerOffset} is too large (${header.size} bytes)`,
          );
        }
        const data = await r.read(header.size);
        if (data.length < header.size) throw truncated(`extended header at byte ${headerOffset}`);
        if (await r.skip(padding(header.size)) < padding(header.size)) {
          throw truncated(`extended header at byte ${headerOffset}`);
        }
        if (flag === "x") pending.pax = parsePaxRecords(data);
        else if (flag === "g") parsePaxRecords(data); // validated, then ignored like containerd
        else {
          const text = decodeName(fieldBytes(data, 0, data.length), "long name");
          if (flag === "L") pending.longName = text;
          else pending.longLink = text;
        }
        continue;
      }
      pending.pax = null;
      pending.longName = null;
      pending.longLink = null;

      let remaining = header.size;
      const entryName = header.name;
      const body = {
        async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined> {
          while (remaining > 0) {
            const chunk = await r.next(remaining);
            if (chunk === null) throw truncated(`data of entry ${JSON.stringify(entryName)}`);
            remaining -= chunk.length;
            yield chunk;
          }
        },
      };
      yield { header, body };
      if (remaining > 0) {
        const want = remaining;
        remaining = 0;
        if (await r.skip(want) < want) {
          throw truncated(`data of entry ${JSON.stringify(entryName)}`);
        }
      }
      const pad = padding(header.size);
      if (await r.skip(pad) < pad) throw truncated(`data of entry ${JSON.stringify(entryName)}`);
    }
    // Read what follows the marker so the whole stream is consumed (and digested).
    while (await r.next(Number.MAX_SAFE_INTEGER) !== null);
  } finally {
    await r.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

/** What `encodeHeader` needs to describe an entry; omitted fields take the listed defaults. */
export interface TarWriteHeader {
  /** Entry name, written verbatim (no cleaning): a PAX `path` record when ustar can't hold it. */
  name: string;
  /** Entry kind (default `file`); ignored when `typeflag` is given. */
  type?: Exclude<TarEntryType, "unsupported">;
  /** Raw type flag character, for types `type` does not name. */
  typeflag?: string;
  /** Permission bits (default 0o644, or 0o755 for directories). */
  mode?: number;
  /** Owner uid (default 0). */
  uid?: number;
  /** Owner gid (default 0). */
  gid?: number;
  /** Data size (default 0); must equal the bytes written after the header. */
  size?: number;
  /** Modification time in seconds since the epoch, fractions allowed (default 0). */
  mtime?: number;
  /** Link target of `link` / `symlink` entries. */
  linkname?: string;
  /** Device major number. */
  devmajor?: number;
  /** Device minor number. */
  devminor?: number;
  /** Owner user name. */
  uname?: string;
  /** Owner group name. */
  gname?: string;
  /** Extended attributes, written as `SCHILY.xattr.<name>` PAX records. */
  xattrs?: Record<string, string | Uint8Array>;
  /** Extra PAX records, written as given. */
  pax?: Record<string, string | Uint8Array>;
}

const TYPEFLAGS: Record<Exclude<TarEntryType, "unsupported">, string> = {
  file: "0",
  link: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
};

function toBytes(v: string | Uint8Array): Uint8Array {
  return typeof v === "string" ? textEncoder.encode(v) : v;
}

function writeOctal(b: Uint8Array, off: number, len: number, v: number): boolean {
  const text = Math.trunc(v).toString(8);
  if (v < 0 || text.length > len - 1) return false;
  const padded = text.padStart(len - 1, "0");
  for (let i = 0; i < padded.length; i++) b[off + i] = padded.charCodeAt(i);
  b[off + len - 1] = 0;
  return true;
}

function writeBase256(b: Uint8Array, off: number, len: number, v: number): void {
  let x = BigInt(Math.trunc(v));
  for (let i = len - 1; i >= 1; i--) {
    b[off + i] = Number(x & 0xffn);
    x >>= 8n;
  }
  b[off] = 0x80;
}

function writeBytes(b: Uint8Array, off: number, len: number, v: Uint8Array): void {
  b.set(v.subarray(0, len), off);
}

function paxRecord(key: string, value: Uint8Array): Uint8Array {
  const keyBytes = textEncoder.encode(key);
  const rest = keyBytes.length + value.length + 3; // " " "=" "\n"
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) len = rest + String(len).length;
  const out = new Uint8Array(len);
  const head = textEncoder.encode(`${len} `);
  out.set(head, 0);
  out.set(keyBytes, head.length);
  out[head.length + keyBytes.length] = 0x3d;
  out.set(value, head.length + keyBytes.length + 1);
  out[len - 1] = 0x0a;
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function ustarBlock(h: {
  name: Uint8Array;
  prefix: Uint8Array;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: Uint8Array;
  uname: Uint8Array;
  gname: Uint8Array;
  devmajor: number;
  devminor: number;
}): Uint8Array {
  const b = new Uint8Array(BLOCK_SIZE);
  writeBytes(b, 0, 100, h.name);
  writeOctal(b, 100, 8, h.mode);
  if (!writeOctal(b, 108, 8, h.uid)) writeBase256(b, 108, 8, h.uid);
  if (!writeOctal(b, 116, 8, h.gid)) writeBase256(b, 116, 8, h.gid);
  if (!writeOctal(b, 124, 12, h.size)) writeBase256(b, 124, 12, h.size);
  if (!writeOctal(b, 136, 12, Math.max(0, h.mtime))) writeBase256(b, 136, 12, h.mtime);
  b[156] = h.typeflag.charCodeAt(0);
  writeBytes(b, 157, 100, h.linkname);
  writeBytes(b, 257, 8, textEncoder.encode("ustar\x0000"));
  writeBytes(b, 265, 32, h.uname);
  writeBytes(b, 297, 32, h.gname);
  if (!writeOctal(b, 329, 8, h.devmajor)) writeBase256(b, 329, 8, h.devmajor);
  if (!writeOctal(b, 337, 8, h.devminor)) writeBase256(b, 337, 8, h.devminor);
  writeBytes(b, 345, 155, h.prefix);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) sum += b[i]!;
  writeOctal(b, 148, 7, sum);
  b[155] = 0x20;
  return b;
}

/** Split a long name into ustar prefix and name, or null when it does not fit. */
function splitUstarName(name: Uint8Array): [Uint8Array, Uint8Array] | null {
  if (name.length <= 100) return [new Uint8Array(0), name];
  for (let i = Math.min(name.length - 1, 155); i > 0; i--) {
    if (name[i] === 0x2f && name.length - i - 1 <= 100 && name.length - i - 1 > 0) {
      return [name.subarray(0, i), name.subarray(i + 1)];
    }
  }
  return null;
}

/**
 * Encode the header block(s) of one entry: a ustar block, preceded by a PAX extended header
 * when a field does not fit ustar (long names or links, large ids or sizes, fractional mtime,
 * xattrs, extra records). Follow it with `size` data bytes and `padBlock(size)`.
 */
export function encodeHeader(h: TarWriteHeader): Uint8Array {
  const type = h.type ?? "file";
  const typeflag = h.typeflag ?? TYPEFLAGS[type];
  const nameBytes = textEncoder.encode(h.name);
  const linkBytes = textEncoder.encode(h.linkname ?? "");
  const size = h.size ?? 0;
  const uid = h.uid ?? 0;
  const gid = h.gid ?? 0;
  const mtime = h.mtime ?? 0;
  const records: Uint8Array[] = [];
  const split = splitUstarName(nameBytes);
  if (split === null) records.push(paxRecord("path", nameBytes));
  if (linkBytes.length > 100) records.push(paxRecord("linkpath", linkBytes));
  if (uid > 0o7777777) records.push(paxRecord("uid", textEncoder.encode(String(uid))));
  if (gid > 0o7777777) records.push(paxRecord("gid", textEncoder.encode(String(gid))));
  if (size > 0o77777777777) records.push(paxRecord("size", textEncoder.encode(String(size))));
  if (!Number.isInteger(mtime) || mtime < 0) {
    const sec = Math.floor(mtime);
    const nsec = Math.round((mtime - sec) * 1e9);
    const text = nsec === 0 ? String(sec) : `${sec}.${String(nsec).padStart(9, "0")}`;
    records.push(paxRecord("mtime", textEncoder.encode(text)));
  }
  for (const [k, v] of Object.entries(h.xattrs ?? {})) {
    records.push(paxRecord(`SCHILY.xattr.${k}`, toBytes(v)));
  }
  for (const [k, v] of Object.entries(h.pax ?? {})) records.push(paxRecord(k, toBytes(v)));

  const main = ustarBlock({
    name: split?.[1] ?? nameBytes.subarray(0, 100),
    prefix: split?.[0] ?? new Uint8Array(0),
    typeflag,
    mode: h.mode ?? (type === "dir" ? 0o755 : 0o644),
    uid,
    gid,
    size,
    mtime: Math.floor(mtime),
    linkname: linkBytes.subarray(0, 100),
    uname: textEncoder.encode(h.uname ?? ""),
    gname: textEncoder.encode(h.gname ?? ""),
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
  });
  if (records.length === 0) return main;
  const paxData = concat(records);
  const base = h.name.replace(/\/+$/, "").split("/").pop() ?? "";
  const paxHeader = ustarBlock({
    name: textEncoder.encode(`PaxHeaders/${base}`).subarray(0, 100),
    prefix: new Uint8Array(0),
    typeflag: "x",
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: paxData.length,
    mtime: 0,
    linkname: new Uint8Array(0),
    uname: new Uint8Array(0),
    gname: new Uint8Array(0),
    devmajor: 0,
    devminor: 0,
  });
  return concat([paxHeader, paxData, padBlock(paxData.length), main]);
}

/** Zero bytes that pad `size` bytes of data to a whole block. */
export function padBlock(size: number): Uint8Array {
  return new Uint8Array(padding(size));
}

/** The end-of-archive marker: two zero blocks. */
export function endOfArchive(): Uint8Array {
  return new Uint8Array(2 * BLOCK_SIZE);
}

/** One member for `tarArchive`. */
export interface TarWriteEntry {
  /** The header; `size` defaults to the data's length. */
  header: TarWriteHeader;
  /** Entry data, for `file` entries. */
  data?: string | Uint8Array;
}

/** Build a whole archive in memory (for small archives and tests), end marker included. */
export function tarArchive(entries: TarWriteEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? new Uint8Array(0) : toBytes(e.data);
    parts.push(encodeHeader({ ...e.header, size: e.header.size ?? data.length }));
    parts.push(data, padBlock(data.length));
  }
  parts.push(endOfArchive());
  return concat(parts);
}
