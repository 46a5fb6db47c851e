/**
 * `containerd.services.content.v1.Content`: blobs by digest, written through resumable
 * ingests by ref (`ctr content`). The content store is namespaced; the client's namespace
 * applies, and the client's lease (if any) holds what is written.
 *
 * - {@link ContentClient.write} / {@link ContentClient.writeFile} push a blob through one
 *   bidi `Write` stream: STAT (learn how much of `ref` the daemon already has), WRITE chunks
 *   from there on (resume), COMMIT with the expected size and digest. `onProgress` reports
 *   every acknowledged chunk. An interrupted write keeps its partial ingest in the daemon;
 *   writing the same ref again resumes where it stopped.
 * - {@link ContentClient.read} streams a blob as a `ReadableStream<Uint8Array>`.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const { digest } = await client.content.writeFile("upload-1", "./layer.tar", {
 *   onProgress: (p) => console.error(`${p.offset}/${p.total}`),
 * });
 * const bytes = await new Response(client.content.read(digest)).bytes();
 * ```
 * @module
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  Content,
  type Info,
  type Status,
  WriteAction,
  type WriteContentRequestSchema,
  type WriteContentResponse,
} from "../proto/gen/containerd/services/content/v1/content_pb.ts";
import { AlreadyExistsError, Code, ErrdefsError, InvalidArgumentError } from "../server/errdefs.ts";
import { type CallOptions, defineService, RequestQueue, type Rpc, type ServiceDef } from "./rpc.ts";

/** A committed blob. */
export interface ContentInfo {
  /** `sha256:<hex>`. */
  digest: string;
  size: number;
  createdAt?: Date;
  updatedAt?: Date;
  labels: Record<string, string>;
}

/** An ingest in progress (or cut off), as `ctr content active` shows it. */
export interface IngestStatus {
  ref: string;
  /** Bytes written so far: where a resumed write continues. */
  offset: number;
  /** Expected total size, 0 when unknown. */
  total: number;
  /** Expected digest, "" when unknown. */
  expected: string;
  startedAt?: Date;
  updatedAt?: Date;
}

/** What `onProgress` gets after each step of a write. */
export interface WriteProgress {
  ref: string;
  /** Bytes the daemon holds for this ingest now. */
  offset: number;
  /** Expected total size, 0 when unknown. */
  total: number;
  /** Where this write started: the bytes the daemon had before (0 for a fresh write). */
  resumedFrom: number;
}

/** Options of {@link ContentClient.write}. */
export interface WriteOptions extends CallOptions {
  /**
   * The blob's size; the daemon refuses to commit another size. Default: the source's size
   * when known (bytes, files), else unchecked.
   */
  total?: number;
  /**
   * The blob's digest (`sha256:<hex>`); the daemon refuses to commit other bytes, and a blob
   * that exists already counts as written (`existed: true`).
   */
  expected?: string;
  /** Labels of the committed blob (e.g. `containerd.io/gc.ref.content.*`). */
  labels?: Record<string, string>;
  /** Called after the daemon acknowledges each step; throwing aborts the write. */
  onProgress?: (progress: WriteProgress) => void;
  /** Bytes per WRITE message. Default 1 MiB (ctr's size). */
  chunkSize?: number;
  /**
   * Continue an ingest the daemon already holds for `ref` (default true). The bytes the
   * daemon has are skipped in the source (seeked in a file, read past in a stream). false
   * restarts from 0.
   */
  resume?: boolean;
}

/** What a write produced. */
export interface WriteResult {
  /** The committed blob's digest. */
  digest: string;
  size: number;
  /** The bytes the daemon had before this write (resumed from there), 0 when fresh. */
  resumedFrom: number;
  /** True when the blob existed already (only detected when `expected` was given). */
  existed: boolean;
}

/** A blob's bytes: one array, a stream, or chunks. */
export type WriteSource =
  | Uint8Array
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>
  | Iterable<Uint8Array>;

/** Options of {@link ContentClient.read}. */
export interface ReadOptions extends CallOptions {
  /** Start here. Default 0. */
  offset?: number;
  /** Read at most this many bytes. Default: to the end. */
  size?: number;
}

/** Options of {@link ContentClient.update}. */
export interface UpdateContentOptions extends CallOptions {
  /**
   * Which labels change, as `labels.<key>` paths (an empty value removes that label).
   * Default: none named, i.e. the blob's labels are replaced by `labels` as a whole.
   */
  fields?: string[];
}

const MiB = 1 << 20;
/** WRITE messages sent ahead of the daemon's acknowledgements. */
const WINDOW = 4;

type WriteRequest = MessageInitShape<typeof WriteContentRequestSchema>;

function toInfo(info: Info | undefined): ContentInfo {
  const out: ContentInfo = {
    digest: info?.digest ?? "",
    size: Number(info?.size ?? 0n),
    labels: { ...info?.labels },
  };
  if (info?.createdAt !== undefined) out.createdAt = timestampDate(info.createdAt);
  if (info?.updatedAt !== undefined) out.updatedAt = timestampDate(info.updatedAt);
  return out;
}

function toStatus(status: Status | undefined): IngestStatus {
  const out: IngestStatus = {
    ref: status?.ref ?? "",
    offset: Number(status?.offset ?? 0n),
    total: Number(status?.total ?? 0n),
    expected: status?.expected ?? "",
  };
  if (status?.startedAt !== undefined) out.startedAt = timestampDate(status.startedAt);
  if (status?.updatedAt !== undefined) out.updatedAt = timestampDate(status.updatedAt);
  return out;
}

/** The bytes of a source from `offset` on: bytes are sliced, streams read past. */
async function* fromOffset(source: WriteSource, offset: number): AsyncGenerator<Uint8Array> {
  if (source instanceof Uint8Array) {
    if (offset < source.length) yield source.subarray(offset);
    return;
  }
  let skip = offset;
  const iterable: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = source;
  for await (const chunk of iterable) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    yield skip > 0 ? chunk.subarray(skip) : chunk;
    skip = 0;
  }
  if (skip > 0) {
    throw new InvalidArgumentError(
      `source is ${offset - skip} bytes, shorter than the ${offset} bytes already written`,
    );
  }
}

/** A file's bytes from `offset` on, seeking rather than reading past. */
async function* fileFrom(path: string | URL, offset: number, chunkSize: number) {
  using file = await Deno.open(path, { read: true });
  await file.seek(offset, Deno.SeekMode.Start);
  for (;;) {
    const buf = new Uint8Array(chunkSize);
    let filled = 0;
    while (filled < buf.length) {
      const n = await file.read(buf.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    if (filled > 0) yield buf.subarray(0, filled);
    if (filled < buf.length) return;
  }
}

/** Regroup chunks into pieces of exactly `size` bytes (the last one shorter). */
async function* rechunk(
  source: AsyncIterable<Uint8Array>,
  size: number,
): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  const take = (): Uint8Array => {
    const out = new Uint8Array(size);
    let filled = 0;
    while (filled < size) {
      const head = pending[0]!;
      const n = Math.min(head.length, size - filled);
      out.set(head.subarray(0, n), filled);
      filled += n;
      if (n === head.length) pending.shift();
      else pending[0] = head.subarray(n);
    }
    pendingBytes -= size;
    return out;
  };
  for await (const chunk of source) {
    if (chunk.length === 0) continue;
    if (pendingBytes === 0 && chunk.length === size) {
      yield chunk;
      continue;
    }
    pending.push(chunk);
    pendingBytes += chunk.length;
    while (pendingBytes >= size) yield take();
  }
  if (pendingBytes > 0) {
    const out = new Uint8Array(pendingBytes);
    let at = 0;
    for (const piece of pending) {
      out.set(piece, at);
      at += piece.length;
    }
    pending = [];
    yield out;
  }
}

/**
 * The Content service.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const info = await client.content.info("sha256:...");
 * console.log(info.size, info.labels);
 * ```
 */
export class ContentClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.content`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * A committed blob's info; NotFoundError `content digest <d>: not found` when absent.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const digest = "sha256:" + "0".repeat(64);
   * const { size } = await client.content.info(digest);
   * ```
   */
  async info(digest: string, options: CallOptions = {}): Promise<ContentInfo> {
    const res = await this.#rpc.unary(Content.method.info, { digest }, options);
    return toInfo(res.info);
  }

  /**
   * Every committed blob of the namespace matching any of `filters` (fields `digest`,
   * `size`, `labels`).
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * for (const blob of await client.content.list()) console.log(blob.digest, blob.size);
   * ```
   */
  async list(options: CallOptions & { filters?: string[] } = {}): Promise<ContentInfo[]> {
    const out: ContentInfo[] = [];
    const stream = this.#rpc.serverStream(
      Content.method.list,
      { filters: options.filters ?? [] },
      options,
    );
    for await (const res of stream) for (const info of res.info) out.push(toInfo(info));
    return out;
  }

  /**
   * Change a blob's labels; see {@link UpdateContentOptions.fields}.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const digest = "sha256:" + "0".repeat(64);
   * await client.content.update(digest, { "containerd.io/gc.root": "x" }, {
   *   fields: ["labels.containerd.io/gc.root"],
   * });
   * ```
   */
  async update(
    digest: string,
    labels: Record<string, string>,
    options: UpdateContentOptions = {},
  ): Promise<ContentInfo> {
    const res = await this.#rpc.unary(
      Content.method.update,
      {
        info: { digest, labels },
        ...(options.fields ? { updateMask: { paths: options.fields } } : {}),
      },
      options,
    );
    return toInfo(res.info);
  }

  /**
   * Remove a blob from the namespace; NotFoundError when absent.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const digest = "sha256:" + "0".repeat(64);
   * await client.content.delete(digest);
   * ```
   */
  async delete(digest: string, options: CallOptions = {}): Promise<void> {
    await this.#rpc.unary(Content.method.delete, { digest }, options);
  }

  /**
   * A blob's bytes as a stream. The call starts at the first read; cancelling the stream
   * cancels the call; errors (NotFoundError, ...) error the stream.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const digest = "sha256:" + "0".repeat(64);
   * await client.content.read(digest).pipeTo((await Deno.create("out.bin")).writable);
   * ```
   */
  read(digest: string, options: ReadOptions = {}): ReadableStream<Uint8Array> {
    const cancel = new AbortController();
    const callOptions: CallOptions = {
      signal: options.signal ? AbortSignal.any([options.signal, cancel.signal]) : cancel.signal,
    };
    if (options.timeoutMs !== undefined) callOptions.timeoutMs = options.timeoutMs;
    const request = {
      digest,
      offset: BigInt(options.offset ?? 0),
      size: BigInt(options.size ?? 0),
    };
    let responses: AsyncGenerator<{ data: Uint8Array }, void, undefined> | undefined;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        responses ??= this.#rpc.serverStream(Content.method.read, request, callOptions);
        for (;;) {
          const next = await responses.next();
          if (next.done) return controller.close();
          if (next.value.data.length === 0) continue;
          return controller.enqueue(next.value.data);
        }
      },
      cancel: async () => {
        cancel.abort();
        await responses?.return().catch(() => {});
      },
    }, { highWaterMark: 0 });
  }

  /**
   * One ingest's status; NotFoundError when there is none for `ref`.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { offset } = await client.content.status("upload-1");
   * ```
   */
  async status(ref: string, options: CallOptions = {}): Promise<IngestStatus> {
    const res = await this.#rpc.unary(Content.method.status, { ref }, options);
    return toStatus(res.status);
  }

  /**
   * The namespace's ingests matching any of `filters` (field `ref`; default: all).
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * for (const s of await client.content.listStatuses()) console.log(s.ref, s.offset);
   * ```
   */
  async listStatuses(options: CallOptions & { filters?: string[] } = {}): Promise<IngestStatus[]> {
    const res = await this.#rpc.unary(
      Content.method.listStatuses,
      { filters: options.filters ?? [""] },
      options,
    );
    return res.statuses.map(toStatus);
  }

  /**
   * Drop an ingest and its partial data; NotFoundError when there is none.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.content.abort("upload-1");
   * ```
   */
  async abort(ref: string, options: CallOptions = {}): Promise<void> {
    await this.#rpc.unary(Content.method.abort, { ref }, options);
  }

  /**
   * Write a blob through ingest `ref`, resuming what the daemon already holds for it; see
   * {@link WriteOptions}. Rejects with the daemon's typed error: FailedPreconditionError
   * for a size or digest mismatch, UnavailableError when another writer holds `ref`.
   * If the source fails, the bytes sent so far stay in the ingest for a later resume.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const data = new TextEncoder().encode("hello");
   * const { digest } = await client.content.write("greeting", data, {
   *   onProgress: ({ offset, total }) => console.error(`${offset}/${total}`),
   * });
   * ```
   */
  write(ref: string, source: WriteSource, options: WriteOptions = {}): Promise<WriteResult> {
    const total = options.total ?? (source instanceof Uint8Array ? source.length : undefined);
    return this.#ingest({
      ref,
      open: (offset) => fromOffset(source, offset),
      options: { ...options, ...(total === undefined ? {} : { total }) },
      unused: () => {
        if (source instanceof ReadableStream && !source.locked) source.cancel().catch(() => {});
      },
    });
  }

  /**
   * Write a file as a blob through ingest `ref`; the size is checked against the file's, and
   * a resumed write seeks past what the daemon already holds.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { digest, resumedFrom } = await client.content.writeFile("rootfs", "./rootfs.tar");
   * ```
   */
  async writeFile(
    ref: string,
    path: string | URL,
    options: WriteOptions = {},
  ): Promise<WriteResult> {
    const size = (await Deno.stat(path)).size;
    const chunkSize = options.chunkSize ?? MiB;
    return await this.#ingest({
      ref,
      open: (offset) => fileFrom(path, offset, chunkSize),
      options: { ...options, total: options.total ?? size },
      unused: () => {},
    });
  }

  /**
   * The Write stream: `open(offset)` yields the source from where the daemon stands;
   * `unused` releases a source that was never read.
   */
  async #ingest({ ref, open, options, unused }: {
    ref: string;
    open: (offset: number) => AsyncIterable<Uint8Array>;
    options: WriteOptions;
    unused: () => void;
  }): Promise<WriteResult> {
    const chunkSize = options.chunkSize ?? MiB;
    if (!(chunkSize > 0)) {
      throw new InvalidArgumentError(`chunk size must be positive, got ${chunkSize}`);
    }
    const expected = options.expected ?? "";
    const total = options.total;
    const requests = new RequestQueue<WriteRequest>();
    const callOptions: CallOptions = {};
    if (options.signal) callOptions.signal = options.signal;
    if (options.timeoutMs !== undefined) callOptions.timeoutMs = options.timeoutMs;
    const responses = this.#rpc.bidiStream(Content.method.write, requests, callOptions);
    const receive = async (what: string): Promise<WriteContentResponse> => {
      const next = await responses.next();
      if (next.done) {
        throw new ErrdefsError(
          Code.Unknown,
          `content write ${ref}: daemon ended the stream before answering ${what}`,
        );
      }
      return next.value;
    };
    let resumedFrom = 0;
    let started = false;
    const progress = (offset: number) =>
      options.onProgress?.({ ref, offset, total: total ?? 0, resumedFrom });
    try {
      requests.push({
        action: WriteAction.STAT,
        ref,
        total: BigInt(total ?? 0),
        expected,
      });
      const stat = await receive("status");
      let offset = Number(stat.offset);
      if (options.resume === false || (total !== undefined && offset > total)) offset = 0;
      resumedFrom = offset;
      progress(offset);
      started = true;
      let inFlight = 0;
      let sourceError: { error: unknown } | undefined;
      const chunks = rechunk(open(offset), chunkSize);
      try {
        for (;;) {
          let next: IteratorResult<Uint8Array>;
          try {
            next = await chunks.next();
          } catch (err) {
            sourceError = { error: err };
            break;
          }
          if (next.done) break;
          const data = next.value;
          requests.push({ action: WriteAction.WRITE, ref, offset: BigInt(offset), data });
          offset += data.length;
          inFlight++;
          while (inFlight >= WINDOW) {
            inFlight--;
            progress(Number((await receive("a write")).offset));
          }
        }
      } finally {
        // Close the file or cancel the stream when the daemon failed first.
        await chunks.return(undefined).catch(() => {});
      }
      if (sourceError) {
        // Let the daemon keep what it received: end the stream without COMMIT and wait for
        // its acknowledgements, so a later write of the same ref resumes from there.
        requests.close();
        try {
          while (!(await responses.next()).done);
        } catch {
          // The daemon's side of a broken write; the source's error is the one to report.
        }
        throw sourceError.error;
      }
      while (inFlight > 0) {
        inFlight--;
        progress(Number((await receive("a write")).offset));
      }
      requests.push({
        action: WriteAction.COMMIT,
        ref,
        total: BigInt(total ?? offset),
        offset: BigInt(offset),
        expected,
        labels: options.labels ?? {},
      });
      const committed = await receive("commit");
      progress(offset);
      requests.close();
      while (!(await responses.next()).done);
      return { digest: committed.digest, size: offset, resumedFrom, existed: false };
    } catch (err) {
      requests.close();
      await responses.return().catch(() => {});
      if (!started) unused();
      if (err instanceof AlreadyExistsError && expected !== "") {
        const info = await this.info(expected, callOptions);
        return { digest: info.digest, size: info.size, resumedFrom, existed: true };
      }
      throw err;
    }
  }
}

/**
 * The definition `client.use()` builds {@link ContentClient} from.
 *
 * @example
 * ```ts
 * import { connect, contentService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const content = client.use(contentService); // same as client.content
 * ```
 */
export const contentService: ServiceDef<ContentClient> = defineService(
  "content",
  (rpc) => new ContentClient(rpc),
);
