/**
 * The local content store: blobs by digest and resumable ingests by ref, on one directory,
 * crash-safe. containerd's content/local store is the behavioural reference.
 *
 * Layout under the store's root:
 *
 * ```
 * blobs/sha256/<hex>          committed blobs, read-only (0444), named by their digest
 * ingest/<sha256 hex of ref>/ one ingest: data, ref, startedat, updatedat[, total][, expected]
 * ```
 *
 * Why it is safe:
 * - Paths never contain request text: a digest's hex is validated (64 lowercase hex) before it
 *   names a file, and a ref only ever appears hashed, so `../../etc` is just another name.
 * - A blob only appears under blobs/ through one rename of a complete, fsynced, verified data
 *   file, and the directory is fsynced before commit returns; a kill -9 or a power cut at any
 *   instant leaves either no blob or the whole blob. Partial bytes live only in ingest/.
 * - An ingest counts once its `ref` file exists, and `ref` is written last (small files go
 *   through temp + rename), so a dir cut off mid-creation is garbage, swept at open.
 * - Resuming never trusts a saved hash state: the running sha256 is recomputed by streaming
 *   the data file, and the data file's length is the offset.
 *
 * One writer per ref at a time, enforced in-process (a second writer gets UnavailableError,
 * as containerd's clients expect: they retry). Open one store instance per root: like
 * containerd's, the ref locks are not shared across processes or store instances.
 *
 * @example
 * ```ts
 * import { LocalContentStore } from "./local.ts";
 * const store = await LocalContentStore.open(await Deno.makeTempDir());
 * const w = await store.writer("my-ref");
 * await w.write(new TextEncoder().encode("hello"), 0);
 * const blob = await w.commit();
 * for await (const chunk of store.read(blob.digest)) console.log(chunk.length); // 5
 * ```
 * @module
 */
import { join, resolve } from "node:path";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  UnavailableError,
} from "../../server/errdefs.ts";
import { parseDigest, Sha256, sha256Hex } from "../../server/digest.ts";
import { type Logger, silentLogger } from "../../server/log.ts";
import { type HeapTrimmer, NO_HEAP_TRIM } from "../../server/heap_trim.ts";
import type {
  BlobInfo,
  CommitOptions,
  ContentStore,
  ContentWriter,
  IngestStatus,
  WriterOptions,
} from "./api.ts";

/** Default size of the chunks `read` yields (1 MiB, as containerd's copy buffers). */
export const DEFAULT_READ_CHUNK_SIZE: number = 1 << 20;

/**
 * Reads of at most this many bytes run as synchronous syscalls (see {@link LocalContentStore.read}):
 * from the page cache they take microseconds, so the event loop is barely held.
 */
export const SYNC_READ_MAX: number = 128 << 10;

/** How long an unleased ingest may sit untouched before GC may remove it (24 h, as containerd). */
export const INGEST_MAX_AGE_MS: number = 24 * 60 * 60 * 1000;

/** Default minimum interval between rewrites of an ingest's `updatedat` file while writing. */
export const DEFAULT_UPDATED_AT_INTERVAL_MS = 1000;

/** Options of {@link LocalContentStore.open}. */
export interface LocalContentStoreOptions {
  /** Where the store reports swept garbage and unresumable ingests. Default: silent. */
  log?: Logger;
  /** Size of the chunks `read` yields when the caller gives none. Default 1 MiB. */
  readChunkSize?: number;
  /**
   * Minimum interval (ms) between rewrites of `updatedat` during writes; it is always
   * rewritten at close, and status also takes the data file's mtime. Default 1000.
   */
  updatedAtIntervalMs?: number;
  /** Clock, for tests. Default `() => new Date()`. */
  now?: () => Date;
  /**
   * Told the bytes every read and write moves, to give freed memory back after bursts (the
   * content plugin passes the daemon's; see server/heap_trim.ts). Default: none.
   */
  heapTrimmer?: HeapTrimmer;
}

/** Options of {@link ingestExpired}. */
export interface IngestExpiryOptions {
  /** The time to judge at. Default: now. */
  now?: Date;
  /** Maximum idle time in ms. Default {@link INGEST_MAX_AGE_MS} (24 h). */
  maxAgeMs?: number;
}

/**
 * True when an ingest has not been written to for longer than the maximum age, so a garbage
 * collector may abort it when no lease holds it (containerd keeps such ingests 24 h so a cut-off
 * transfer can resume). `updatedAt` is kept accurate by the store (see IngestStatus).
 */
export function ingestExpired(status: IngestStatus, options: IngestExpiryOptions = {}): boolean {
  const now = options.now ?? new Date();
  const maxAge = options.maxAgeMs ?? INGEST_MAX_AGE_MS;
  return now.getTime() - status.updatedAt.getTime() > maxAge;
}

const HEX64_RE = /^[a-f0-9]{64}$/;
const FILE_MODE = 0o644;
const DIR_MODE = 0o755;
const BLOB_MODE = 0o444;
// Hashing buffer when re-reading an ingest's data on resume.
const REHASH_CHUNK = 1 << 20;

function isFsNotFound(err: unknown): boolean {
  return err instanceof Deno.errors.NotFound;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (isFsNotFound(err)) return false;
    throw err;
  }
}

/** Write a small file through temp + rename, so a crash leaves the old or the new content. */
async function writeSmallFile(dir: string, name: string, text: string): Promise<void> {
  const tmp = join(dir, `${name}.tmp`);
  await Deno.writeTextFile(tmp, text, { mode: FILE_MODE });
  await Deno.rename(tmp, join(dir, name));
}

async function readSmallFile(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (isFsNotFound(err)) return undefined;
    throw err;
  }
}

async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (err) {
    if (!isFsNotFound(err)) throw err;
  }
}

/** fsync a directory, making the renames and creations inside it durable. */
async function syncDir(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}

function parseTime(text: string | undefined): Date | undefined {
  if (text === undefined) return undefined;
  const date = new Date(text.trim());
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function parseTotal(text: string | undefined): number {
  if (text === undefined) return 0;
  const total = Number(text.trim());
  // A corrupt total file means "unknown", as containerd reads it.
  return Number.isSafeInteger(total) && total > 0 ? total : 0;
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.byteLength) written += await file.write(data.subarray(written));
}

/** Hash the first `limit` bytes (all when undefined) of `file` from offset 0; returns the count. */
async function hashFile(file: Deno.FsFile, hash: Sha256, limit?: number): Promise<number> {
  await file.seek(0, Deno.SeekMode.Start);
  const buffer = new Uint8Array(REHASH_CHUNK);
  let total = 0;
  while (limit === undefined || total < limit) {
    const want = limit === undefined ? buffer.length : Math.min(buffer.length, limit - total);
    const n = await file.read(buffer.subarray(0, want));
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
    total += n;
  }
  return total;
}

function checkOffset(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(
      `${what} ${value} must be a non-negative integer: invalid argument`,
    );
  }
}

/** What a writer needs from its store; keeps the store's internals out of the writer. */
interface WriterHost {
  readonly blobDir: string;
  readonly log: Logger;
  readonly updatedAtIntervalMs: number;
  now(): Date;
  unlock(ref: string): void;
  /** Bytes written just now (for the heap trimmer). */
  noteTraffic(bytes: number): void;
}

/** The state a writer starts from (fresh or resumed). */
interface WriterInit {
  host: WriterHost;
  ref: string;
  dir: string;
  file: Deno.FsFile;
  hash: Sha256;
  offset: number;
  total: number;
  expected: string;
  startedAt: Date;
  updatedAt: Date;
}

/**
 * The directory-backed content store (see the module doc for layout and guarantees). Open it
 * with {@link LocalContentStore.open}; the content plugin does so on its plugin root.
 */
export class LocalContentStore implements ContentStore {
  /** The store's root (absolute); holds blobs/ and ingest/. */
  readonly root: string;
  readonly #blobDir: string;
  readonly #ingestDir: string;
  readonly #log: Logger;
  readonly #readChunkSize: number;
  readonly #updatedAtIntervalMs: number;
  readonly #now: () => Date;
  readonly #heapTrimmer: HeapTrimmer;
  /** Refs with an open writer (or an abort in progress), and since when. */
  readonly #locks = new Map<string, Date>();

  private constructor(root: string, options: LocalContentStoreOptions) {
    this.root = root;
    this.#blobDir = join(root, "blobs", "sha256");
    this.#ingestDir = join(root, "ingest");
    this.#log = options.log ?? silentLogger();
    this.#readChunkSize = options.readChunkSize ?? DEFAULT_READ_CHUNK_SIZE;
    this.#updatedAtIntervalMs = options.updatedAtIntervalMs ?? DEFAULT_UPDATED_AT_INTERVAL_MS;
    this.#now = options.now ?? (() => new Date());
    this.#heapTrimmer = options.heapTrimmer ?? NO_HEAP_TRIM;
  }

  /**
   * Open (creating when needed) the store at `root`, and sweep what a crash may have left in
   * ingest/: dirs cut off before their `ref` or `data` existed, stray temp files, foreign
   * entries. Cut-off ingests with data are kept, to be resumed or aborted.
   */
  static async open(
    root: string,
    options: LocalContentStoreOptions = {},
  ): Promise<LocalContentStore> {
    const chunk = options.readChunkSize;
    if (chunk !== undefined && (!Number.isSafeInteger(chunk) || chunk <= 0)) {
      throw new InvalidArgumentError(
        `read chunk size ${chunk} must be a positive integer: invalid argument`,
      );
    }
    const store = new LocalContentStore(resolve(root), options);
    await Deno.mkdir(store.#blobDir, { recursive: true, mode: DIR_MODE });
    await Deno.mkdir(store.#ingestDir, { recursive: true, mode: DIR_MODE });
    // Make the dirs themselves durable, so the first commit's fsync of blobs/sha256 suffices.
    await syncDir(join(store.root, "blobs"));
    await syncDir(store.root);
    await store.#sweep();
    return store;
  }

  /**
   * The blob's size and commit time. NotFoundError `content digest <d>: not found` when absent;
   * InvalidArgumentError for a malformed digest.
   */
  async info(digest: string): Promise<BlobInfo> {
    const path = this.#blobPath(digest);
    try {
      const stat = await Deno.stat(path);
      return { digest, size: stat.size, createdAt: stat.mtime ?? new Date(0) };
    } catch (err) {
      if (isFsNotFound(err)) throw this.#blobNotFound(digest);
      throw err;
    }
  }

  /**
   * Stream `size` bytes (to the end when size <= 0 or absent; clamped at the end) from `offset`,
   * in fresh chunks of `chunkSize` (default 1 MiB) read by seek, so memory stays at one chunk
   * whatever the blob's size. An offset past the end is OutOfRangeError.
   */
  async *read(
    digest: string,
    options: { offset?: number; size?: number; chunkSize?: number } = {},
  ): AsyncIterable<Uint8Array> {
    const path = this.#blobPath(digest);
    const offset = options.offset ?? 0;
    checkOffset(offset, "read offset");
    const chunkSize = options.chunkSize ?? this.#readChunkSize;
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
      throw new InvalidArgumentError(
        `read chunk size ${chunkSize} must be a positive integer: invalid argument`,
      );
    }
    const wanted = options.size ?? 0;
    if (wanted > 0 && wanted <= SYNC_READ_MAX) {
      // A small positioned read (ctr reads 32 KiB per Read call): synchronous syscalls on a
      // fresh descriptor cost microseconds, where each async op costs a thread-pool round trip.
      const chunk = this.#readSmall(digest, path, offset, wanted);
      this.#heapTrimmer.note(chunk.length);
      for (let at = 0; at < chunk.length; at += chunkSize) {
        yield chunk.subarray(at, Math.min(at + chunkSize, chunk.length));
      }
      return;
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (err) {
      if (isFsNotFound(err)) throw this.#blobNotFound(digest);
      throw err;
    }
    try {
      const { size: blobSize } = await file.stat();
      if (offset > blobSize) {
        throw new OutOfRangeError(
          `read past object length ${blobSize} bytes (offset ${offset}, content ${digest})`,
        );
      }
      let remaining = wanted > 0 ? Math.min(wanted, blobSize - offset) : blobSize - offset;
      if (offset > 0) await file.seek(offset, Deno.SeekMode.Start);
      while (remaining > 0) {
        // A fresh buffer per chunk: the consumer may keep it.
        const chunk = new Uint8Array(Math.min(chunkSize, remaining));
        let filled = 0;
        while (filled < chunk.length) {
          const n = await file.read(chunk.subarray(filled));
          if (n === null) break;
          filled += n;
        }
        if (filled === 0) break;
        remaining -= filled;
        this.#heapTrimmer.note(filled);
        yield filled === chunk.length ? chunk : chunk.subarray(0, filled);
        if (filled < chunk.length) break;
      }
    } finally {
      file.close();
    }
  }

  /**
   * Read up to `wanted` bytes at `offset` with synchronous syscalls (open, seek, read, close):
   * the bytes at that offset, cut at the blob's end.
   */
  #readSmall(digest: string, path: string, offset: number, wanted: number): Uint8Array {
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true });
    } catch (err) {
      if (isFsNotFound(err)) throw this.#blobNotFound(digest);
      throw err;
    }
    try {
      // No fstat: a short read means the end of the blob; only an empty one needs the size,
      // to tell an offset at the end (nothing to read) from one past it (OutOfRange).
      const chunk = new Uint8Array(wanted);
      if (offset > 0) file.seekSync(offset, Deno.SeekMode.Start);
      let filled = 0;
      while (filled < chunk.length) {
        const n = file.readSync(chunk.subarray(filled));
        if (n === null || n === 0) break;
        filled += n;
      }
      if (filled === 0 && offset > 0) {
        const { size: blobSize } = file.statSync();
        if (offset > blobSize) {
          throw new OutOfRangeError(
            `read past object length ${blobSize} bytes (offset ${offset}, content ${digest})`,
          );
        }
      }
      return filled === chunk.length ? chunk : chunk.subarray(0, filled);
    } finally {
      file.close();
    }
  }

  /** Remove a blob from disk; NotFoundError `content digest <d>: not found` when absent. */
  async delete(digest: string): Promise<void> {
    const path = this.#blobPath(digest);
    try {
      await Deno.remove(path);
    } catch (err) {
      if (isFsNotFound(err)) throw this.#blobNotFound(digest);
      throw err;
    }
  }

  /** Every blob under blobs/sha256; entries that are not 64-hex files are skipped and logged. */
  async *walk(): AsyncIterable<BlobInfo> {
    for await (const entry of Deno.readDir(this.#blobDir)) {
      if (!entry.isFile || !HEX64_RE.test(entry.name)) {
        this.#log.warn("ignoring unexpected entry in content blobs", {
          path: join(this.#blobDir, entry.name),
        });
        continue;
      }
      let stat: Deno.FileInfo;
      try {
        stat = await Deno.stat(join(this.#blobDir, entry.name));
      } catch (err) {
        if (isFsNotFound(err)) continue; // deleted while walking
        throw err;
      }
      yield {
        digest: `sha256:${entry.name}`,
        size: stat.size,
        createdAt: stat.mtime ?? new Date(0),
      };
    }
  }

  /**
   * Open the ingest for `ref`, resuming it when one exists: the offset is the data file's
   * length and the running digest is recomputed by streaming it. A resume whose recorded
   * ref, total or expected digest disagrees with the request starts over (as containerd).
   * UnavailableError `ref <ref> locked ...` while another writer holds the ref;
   * AlreadyExistsError when `expected` is given and that blob exists already.
   */
  async writer(ref: string, options: WriterOptions = {}): Promise<ContentWriter> {
    if (ref === "") throw new InvalidArgumentError("ref must not be empty: invalid argument");
    const total = options.total ?? 0;
    checkOffset(total, "expected total");
    const expected = options.expected ?? "";
    if (expected !== "") parseDigest(expected);
    this.#lock(ref);
    try {
      if (expected !== "" && await exists(this.#blobPath(expected))) {
        throw new AlreadyExistsError(`content ${expected}: already exists`);
      }
      return await this.#openWriter(ref, total, expected);
    } catch (err) {
      this.#unlock(ref);
      throw err;
    }
  }

  /** Status of the ingest for `ref`; NotFoundError `ingest ref "<ref>": not found` if none. */
  async status(ref: string): Promise<IngestStatus> {
    const status = await this.#readStatus(this.#ingestPath(ref));
    if (status === undefined || status.ref !== ref) throw this.#ingestNotFound(ref);
    return status;
  }

  /** Every ingest on disk (sorted by ref); half-made or corrupt ingest dirs are skipped. */
  async listStatuses(): Promise<IngestStatus[]> {
    const out: IngestStatus[] = [];
    for await (const entry of Deno.readDir(this.#ingestDir)) {
      if (!entry.isDirectory || !HEX64_RE.test(entry.name)) continue;
      let status: IngestStatus | undefined;
      try {
        status = await this.#readStatus(join(this.#ingestDir, entry.name));
      } catch (err) {
        this.#log.warn("skipping unreadable ingest", {
          path: join(this.#ingestDir, entry.name),
          error: err,
        });
        continue;
      }
      // A ref file that does not hash to its dir could never be aborted by ref: not listed.
      if (status !== undefined && sha256Hex(status.ref) === entry.name) out.push(status);
    }
    return out.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  }

  /**
   * Remove the ingest for `ref`; NotFoundError when there is none, UnavailableError while a
   * writer holds it (close the writer first, as containerd's clients do).
   */
  async abort(ref: string): Promise<void> {
    if (ref === "") throw new InvalidArgumentError("ref must not be empty: invalid argument");
    this.#lock(ref);
    try {
      const dir = this.#ingestPath(ref);
      if (!(await exists(dir))) throw this.#ingestNotFound(ref);
      await Deno.remove(dir, { recursive: true });
    } finally {
      this.#unlock(ref);
    }
  }

  #blobPath(digest: string): string {
    return join(this.#blobDir, parseDigest(digest).hex);
  }

  #ingestPath(ref: string): string {
    // Hashed: constant length, and no request text ever reaches the file system.
    return join(this.#ingestDir, sha256Hex(ref));
  }

  #blobNotFound(digest: string): NotFoundError {
    return new NotFoundError(`content digest ${digest}: not found`);
  }

  #ingestNotFound(ref: string): NotFoundError {
    return new NotFoundError(`ingest ref ${JSON.stringify(ref)}: not found`);
  }

  #lock(ref: string): void {
    const since = this.#locks.get(ref);
    if (since !== undefined) {
      const held = Math.max(0, this.#now().getTime() - since.getTime());
      throw new UnavailableError(
        `ref ${ref} locked for ${held}ms (since ${since.toISOString()}): unavailable`,
      );
    }
    this.#locks.set(ref, this.#now());
  }

  #unlock(ref: string): void {
    this.#locks.delete(ref);
  }

  async #openWriter(ref: string, total: number, expected: string): Promise<ContentWriter> {
    const dir = this.#ingestPath(ref);
    let fresh = true;
    try {
      await Deno.mkdir(dir, { mode: DIR_MODE });
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      fresh = false;
    }
    if (!fresh) {
      // A crash between commit's chmod and its rename leaves a read-only data file behind.
      await Deno.chmod(join(dir, "data"), FILE_MODE).catch((err) => {
        if (!isFsNotFound(err)) throw err;
      });
    }
    const file = await Deno.open(join(dir, "data"), {
      read: true,
      write: true,
      create: true,
      mode: FILE_MODE,
    });
    try {
      const hash = new Sha256();
      if (!fresh) {
        const resumed = await this.#resume(dir, file, hash, { ref, total, expected });
        if (resumed !== undefined) {
          return new LocalWriter({ host: this.#host(), ref, dir, file, hash, ...resumed });
        }
        hash.reset();
      }
      await file.truncate(0);
      await file.seek(0, Deno.SeekMode.Start);
      const now = this.#now();
      const stamp = now.toISOString();
      await writeSmallFile(dir, "startedat", stamp);
      await writeSmallFile(dir, "updatedat", stamp);
      if (total > 0) await writeSmallFile(dir, "total", String(total));
      else await removeIfExists(join(dir, "total"));
      if (expected !== "") await writeSmallFile(dir, "expected", expected);
      else await removeIfExists(join(dir, "expected"));
      // Last: from here on the dir is an ingest (see the module doc).
      await writeSmallFile(dir, "ref", ref);
      return new LocalWriter({
        host: this.#host(),
        ref,
        dir,
        file,
        hash,
        offset: 0,
        total,
        expected,
        startedAt: now,
        updatedAt: now,
      });
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /**
   * Pick up an existing ingest dir, hashing its data through `file`. Undefined (start over)
   * when it is not a usable ingest for this request.
   */
  async #resume(
    dir: string,
    file: Deno.FsFile,
    hash: Sha256,
    want: { ref: string; total: number; expected: string },
  ): Promise<
    | { offset: number; total: number; expected: string; startedAt: Date; updatedAt: Date }
    | undefined
  > {
    const startOver = (reason: string) => {
      this.#log.info("cannot resume ingest, starting over", { ref: want.ref, reason });
      return undefined;
    };
    const storedRef = await readSmallFile(join(dir, "ref"));
    if (storedRef === undefined) return startOver("no ref file");
    if (storedRef !== want.ref) return startOver("ref file does not match");
    const storedTotal = parseTotal(await readSmallFile(join(dir, "total")));
    if (want.total > 0 && storedTotal > 0 && want.total !== storedTotal) {
      return startOver(`total ${want.total} differs from recorded ${storedTotal}`);
    }
    const storedExpected = (await readSmallFile(join(dir, "expected")))?.trim() ?? "";
    if (want.expected !== "" && storedExpected !== "" && want.expected !== storedExpected) {
      return startOver(`expected ${want.expected} differs from recorded ${storedExpected}`);
    }
    const stat = await file.stat();
    const startedAt = parseTime(await readSmallFile(join(dir, "startedat"))) ??
      stat.birthtime ?? stat.mtime ?? this.#now();
    let updatedAt = parseTime(await readSmallFile(join(dir, "updatedat"))) ?? startedAt;
    if (stat.mtime && stat.mtime > updatedAt) updatedAt = stat.mtime;
    // Never a saved hash state: the bytes on disk are the truth.
    const offset = await hashFile(file, hash);
    const total = want.total > 0 ? want.total : storedTotal;
    const expected = want.expected !== "" ? want.expected : storedExpected;
    if (total !== storedTotal) await writeSmallFile(dir, "total", String(total));
    if (expected !== storedExpected) await writeSmallFile(dir, "expected", expected);
    return { offset, total, expected, startedAt, updatedAt };
  }

  /** The status recorded in an ingest dir; undefined when it is not (or no longer) an ingest. */
  async #readStatus(dir: string): Promise<IngestStatus | undefined> {
    let stat: Deno.FileInfo;
    try {
      stat = await Deno.stat(join(dir, "data"));
    } catch (err) {
      if (isFsNotFound(err)) return undefined;
      throw err;
    }
    const ref = await readSmallFile(join(dir, "ref"));
    if (ref === undefined) return undefined;
    const startedAt = parseTime(await readSmallFile(join(dir, "startedat"))) ??
      stat.birthtime ?? stat.mtime ?? new Date(0);
    let updatedAt = parseTime(await readSmallFile(join(dir, "updatedat"))) ?? startedAt;
    // updatedat is rewritten at most once a second; the data's mtime may be newer.
    if (stat.mtime && stat.mtime > updatedAt) updatedAt = stat.mtime;
    return {
      ref,
      offset: stat.size,
      total: parseTotal(await readSmallFile(join(dir, "total"))),
      expected: (await readSmallFile(join(dir, "expected")))?.trim() ?? "",
      startedAt,
      updatedAt,
    };
  }

  /** Remove from ingest/ what no ingest can be: see {@link LocalContentStore.open}. */
  async #sweep(): Promise<void> {
    for await (const entry of Deno.readDir(this.#ingestDir)) {
      const path = join(this.#ingestDir, entry.name);
      try {
        if (!entry.isDirectory || !HEX64_RE.test(entry.name)) {
          this.#log.warn("removing unexpected entry in content ingest dir", { path });
          await removeIfExists(path);
          continue;
        }
        const ref = await readSmallFile(join(path, "ref"));
        if (
          ref === undefined || sha256Hex(ref) !== entry.name || !(await exists(join(path, "data")))
        ) {
          this.#log.info("removing incomplete ingest", { path });
          await removeIfExists(path);
          continue;
        }
        for await (const inner of Deno.readDir(path)) {
          if (inner.name.endsWith(".tmp")) await removeIfExists(join(path, inner.name));
        }
      } catch (err) {
        this.#log.warn("cannot sweep ingest entry", { path, error: err });
      }
    }
  }

  #host(): WriterHost {
    return {
      blobDir: this.#blobDir,
      log: this.#log,
      updatedAtIntervalMs: this.#updatedAtIntervalMs,
      now: this.#now,
      unlock: (ref) => this.#unlock(ref),
      noteTraffic: (bytes) => this.#heapTrimmer.note(bytes),
    };
  }
}

/** One open ingest of a {@link LocalContentStore}; operations run one at a time, in call order. */
class LocalWriter implements ContentWriter {
  readonly ref: string;
  readonly #host: WriterHost;
  readonly #dir: string;
  #file: Deno.FsFile | undefined;
  readonly #hash: Sha256;
  #offset: number;
  readonly #total: number;
  readonly #expected: string;
  readonly #startedAt: Date;
  #updatedAt: Date;
  #persistedAt: number;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(init: WriterInit) {
    this.ref = init.ref;
    this.#host = init.host;
    this.#dir = init.dir;
    this.#file = init.file;
    this.#hash = init.hash;
    this.#offset = init.offset;
    this.#total = init.total;
    this.#expected = init.expected;
    this.#startedAt = init.startedAt;
    this.#updatedAt = init.updatedAt;
    this.#persistedAt = init.host.now().getTime();
  }

  status(): IngestStatus {
    return {
      ref: this.ref,
      offset: this.#offset,
      total: this.#total,
      expected: this.#expected,
      startedAt: this.#startedAt,
      updatedAt: this.#updatedAt,
    };
  }

  digest(): string {
    return this.#hash.digest();
  }

  write(data: Uint8Array, offset: number): Promise<number> {
    return this.#serial(() => this.#write(data, offset));
  }

  commit(options: CommitOptions = {}): Promise<BlobInfo> {
    return this.#serial(() => this.#commit(options));
  }

  close(): Promise<void> {
    return this.#serial(() => this.#close());
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op);
    this.#queue = run.catch(() => {});
    return run;
  }

  #openFile(action: string): Deno.FsFile {
    if (this.#file === undefined) {
      throw new FailedPreconditionError(
        `cannot ${action} closed writer of ref ${JSON.stringify(this.ref)}: failed precondition`,
      );
    }
    return this.#file;
  }

  async #write(data: Uint8Array, offset: number): Promise<number> {
    const file = this.#openFile("write to");
    checkOffset(offset, "write offset");
    if (offset > this.#offset) {
      throw new OutOfRangeError(
        `write offset ${offset} is beyond the end of ingest ${
          JSON.stringify(this.ref)
        } at ${this.#offset}: out of range`,
      );
    }
    if (offset < this.#offset) await this.#rewind(file, offset);
    try {
      await writeAll(file, data);
    } catch (err) {
      // Put the file back where the hash is, so a retry at the same offset stays consistent.
      await file.truncate(this.#offset).then(() => file.seek(this.#offset, Deno.SeekMode.Start))
        .catch(() => {});
      throw err;
    }
    this.#hash.update(data);
    this.#host.noteTraffic(data.byteLength);
    this.#offset += data.byteLength;
    this.#updatedAt = this.#host.now();
    if (this.#updatedAt.getTime() - this.#persistedAt >= this.#host.updatedAtIntervalMs) {
      await this.#persistUpdatedAt();
    }
    return data.byteLength;
  }

  /** Truncate to `offset` (< current) and re-hash the kept prefix from disk. */
  async #rewind(file: Deno.FsFile, offset: number): Promise<void> {
    await file.truncate(offset);
    this.#hash.reset();
    if (offset > 0) await hashFile(file, this.#hash, offset);
    await file.seek(offset, Deno.SeekMode.Start);
    this.#offset = offset;
  }

  async #persistUpdatedAt(): Promise<void> {
    await writeSmallFile(this.#dir, "updatedat", this.#updatedAt.toISOString());
    this.#persistedAt = this.#updatedAt.getTime();
  }

  /**
   * containerd's commit: whatever the outcome the writer is closed and the ref unlocked; on a
   * size or digest mismatch nothing becomes visible and the ingest stays for the client to
   * rewrite (resume) or abort; when the blob exists already the ingest is removed.
   */
  async #commit(options: CommitOptions): Promise<BlobInfo> {
    const file = this.#openFile("commit on");
    // Bad arguments leave the writer as it was: nothing was attempted.
    const size = options.size ?? 0;
    checkOffset(size, "commit size");
    const expected = options.expected ?? this.#expected;
    if (expected !== "") parseDigest(expected);
    this.#file = undefined;
    let closed = false;
    try {
      await file.sync();
      const { size: written } = await file.stat();
      file.close();
      closed = true;
      if (size > 0 && size !== written) {
        throw new FailedPreconditionError(
          `unexpected commit size ${written}, expected ${size}: failed precondition`,
        );
      }
      if (written !== this.#hash.length) {
        throw new FailedPreconditionError(
          `ingest ${
            JSON.stringify(this.ref)
          } changed on disk (${written} bytes, ${this.#hash.length} written): failed precondition`,
        );
      }
      const actual = this.#hash.digest();
      if (expected !== "" && expected !== actual) {
        throw new FailedPreconditionError(
          `unexpected commit digest ${actual}, expected ${expected}: failed precondition`,
        );
      }
      const data = join(this.#dir, "data");
      const target = join(this.#host.blobDir, parseDigest(actual).hex);
      if (await exists(target)) {
        await this.#removeIngest();
        throw new AlreadyExistsError(`content ${actual}: already exists`);
      }
      // Everything about the blob is settled before it becomes visible: after the rename
      // nothing touches it.
      const committedAt = this.#host.now();
      await Deno.chmod(data, BLOB_MODE);
      await Deno.utime(data, committedAt, committedAt);
      await Deno.rename(data, target);
      await syncDir(this.#host.blobDir);
      await this.#removeIngest();
      return { digest: actual, size: written, createdAt: committedAt };
    } finally {
      if (!closed) {
        try {
          file.close();
        } catch {
          // already closed
        }
      }
      this.#host.unlock(this.ref);
    }
  }

  async #removeIngest(): Promise<void> {
    try {
      await removeIfExists(this.#dir);
    } catch (err) {
      // The blob is committed; a leftover dir without data is swept at the next open.
      this.#host.log.error("failed to remove ingest directory", {
        ref: this.ref,
        path: this.#dir,
        error: err,
      });
    }
  }

  async #close(): Promise<void> {
    const file = this.#file;
    if (file === undefined) return;
    this.#file = undefined;
    try {
      await file.sync();
      await this.#persistUpdatedAt();
    } finally {
      file.close();
      this.#host.unlock(this.ref);
    }
  }
}
