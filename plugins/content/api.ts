/**
 * The local content store's contract: blobs by digest and resumable ingests by ref, with no
 * notion of namespaces (the metadata layer adds those). The content plugin
 * (io.containerd.content.v1.content) provides it; the metadata plugin and fsck consume it
 * through the plugin set, never through the implementation module.
 *
 * @module
 */

/** A committed blob as the disk knows it. */
export interface BlobInfo {
  /** `sha256:<hex>`. */
  digest: string;
  size: number;
  /** Modification time of the blob file (commit time). */
  createdAt: Date;
}

/** An ingest in progress (or cut off), as `ctr content active` shows it. */
export interface IngestStatus {
  ref: string;
  /** Bytes written so far (the resume offset). */
  offset: number;
  /** Expected total size, 0 when unknown. */
  total: number;
  /** Expected digest, "" when unknown. */
  expected: string;
  startedAt: Date;
  /**
   * Last write: the later of the recorded time (rewritten at most once a second and at close)
   * and the data's mtime, so a GC can expire idle ingests (24 h without a lease).
   */
  updatedAt: Date;
}

/** Options of ContentStore.writer. */
export interface WriterOptions {
  /** Expected total size (0 = unknown). Recorded so a resumed ingest keeps it. */
  total?: number;
  /** Expected digest ("" = unknown). */
  expected?: string;
}

/** Options of ContentWriter.commit. */
export interface CommitOptions {
  /**
   * When set and > 0, the written size must equal it (else FailedPreconditionError
   * `unexpected commit size N, expected M`). 0 means unknown, as on the wire.
   */
  size?: number;
  /**
   * When set, the digest must equal it (else FailedPreconditionError `unexpected commit digest
   * A, expected B`, nothing visible). Defaults to the `expected` given to `writer()`.
   */
  expected?: string;
}

/**
 * One open ingest. Holding it holds the ref's lock: a second `writer(ref)` while this one
 * is open fails with UnavailableError "ref <ref> locked". `close()` releases the lock and keeps
 * the partial data for a later resume; `commit()` or `abort()` remove the ingest.
 */
export interface ContentWriter {
  readonly ref: string;
  /** Current status (offset = bytes written). */
  status(): IngestStatus;
  /**
   * Write `data` at `offset`. `offset` must equal the current offset (resume/append) or be
   * below it (rewind: truncates there and recomputes the digest of the kept bytes; 0
   * restarts). Past the current offset is OutOfRangeError; negative or fractional is
   * InvalidArgumentError. Calls on one writer run one at a time, in call order.
   */
  write(data: Uint8Array, offset: number): Promise<number>;
  /** Digest of what was written so far (`sha256:<hex>`), computed while streaming. */
  digest(): string;
  /**
   * Verify size and digest, fsync the data, rename into blobs/ atomically, fsync the parent dir.
   * Returns the committed blob. If the blob exists already: AlreadyExistsError (ingest removed).
   * As containerd's, the writer is spent and the lock released whatever the outcome (except
   * InvalidArgumentError for a malformed `expected` or `size`); on a size or digest mismatch
   * the ingest stays for the client to resume or abort.
   */
  commit(options?: CommitOptions): Promise<BlobInfo>;
  /** Release the lock, keep the partial ingest. */
  close(): Promise<void>;
}

/** The local, namespace-free content store. */
export interface ContentStore {
  /** The store's root (holds blobs/ and ingest/). */
  readonly root: string;
  /** NotFoundError `content digest <d>: not found` when absent; InvalidArgumentError for a malformed digest. */
  info(digest: string): Promise<BlobInfo>;
  /**
   * Read `size` bytes (or to the end when size <= 0; clamped at the end) from `offset`,
   * streamed in fresh chunks (default 1 MiB). NotFoundError when absent, OutOfRangeError for
   * an offset past the end.
   */
  read(
    digest: string,
    options?: { offset?: number; size?: number; chunkSize?: number },
  ): AsyncIterable<Uint8Array>;
  /** Remove a blob from disk; NotFoundError when absent. */
  delete(digest: string): Promise<void>;
  /** Every blob on disk. */
  walk(): AsyncIterable<BlobInfo>;
  /** Open (or resume) the ingest for `ref`. */
  writer(ref: string, options?: WriterOptions): Promise<ContentWriter>;
  /** Status of an ingest; NotFoundError when there is none. */
  status(ref: string): Promise<IngestStatus>;
  /** Every ingest on disk. */
  listStatuses(): Promise<IngestStatus[]>;
  /** Remove an ingest (and its lock if stale); NotFoundError when there is none; Unavailable when a writer holds it. */
  abort(ref: string): Promise<void>;
}
