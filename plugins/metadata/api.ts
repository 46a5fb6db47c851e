/**
 * The metadata store's contract (io.containerd.metadata.v1): namespaces, namespaced content
 * metadata over the shared disk store, leases, and the garbage collector's graph. Services
 * and other plugins (gc, leases, images, containers, snapshots) reach the store through the
 * plugin set (`ctx.get(MetadataPlugin)`) and code against these interfaces only, never
 * against the SQLite implementation.
 *
 * A request's {@link Scope} (namespace from the `containerd-namespace` header, lease from
 * `containerd-lease`) is passed explicitly, where containerd threads it through a Go context.
 *
 * @module
 */
import type { IngestStatus } from "../content/api.ts";

/** Where a request acts: its namespace and, when the client sent one, its lease. */
export interface Scope {
  /** A valid namespace name (validated again by the store). */
  readonly namespace: string;
  /** The lease new objects join; the lease must exist in the namespace. */
  readonly lease?: string | undefined;
}

/** A label map; keys and values are arbitrary strings within the 4096-byte limit. */
export type Labels = Record<string, string>;

/** A namespace and its labels, as Namespaces/Get returns it. */
export interface NamespaceInfo {
  name: string;
  labels: Labels;
}

/** A blob as one namespace sees it: the shared bytes plus this namespace's metadata. */
export interface ContentInfo {
  digest: string;
  size: number;
  createdAt: Date;
  updatedAt: Date;
  labels: Labels;
}

/** A lease: a named hold on resources, expiring through `containerd.io/gc.expire`. */
export interface Lease {
  id: string;
  createdAt: Date;
  labels: Labels;
}

/**
 * A resource held by a lease. `type` is `content` (id = digest), `ingests` (id = ingest ref)
 * or `snapshots/<snapshotter>` (id = snapshot key), as containerd's Leases API spells them.
 */
export interface LeaseResource {
  id: string;
  type: string;
}

/** The namespaces table: what the Namespaces service needs. */
export interface NamespaceStore {
  /**
   * Create a namespace. InvalidArgumentError for a bad name or label, AlreadyExistsError
   * `namespace "x": already exists` when it exists (also when created implicitly).
   */
  create(name: string, labels?: Labels): NamespaceInfo;
  /** True when the namespace exists. */
  exists(name: string): boolean;
  /** The namespace's labels; empty for a namespace that does not exist (as containerd). */
  labels(name: string): Labels;
  /** Every namespace with its labels, sorted by name (one read, however many there are). */
  list(): NamespaceInfo[];
  /**
   * Set labels by field paths (`labels.<key>`, `labels`; none = replace all). An empty value
   * removes the label. Creates the namespace when missing, as containerd's SetLabel does.
   */
  update(name: string, labels: Labels, paths: readonly string[]): NamespaceInfo;
  /**
   * Delete an empty namespace (its leases and ingests go with it). FailedPreconditionError
   * naming what it still holds; NotFoundError when it does not exist.
   */
  delete(name: string): void;
}

/** Options of {@link ScopedContentStore.writer}. */
export interface MetadataWriterOptions {
  /** Expected total size (0 = unknown). */
  total?: number;
  /** Expected digest ("" = unknown). When this namespace has it: AlreadyExistsError. */
  expected?: string;
}

/** Options of {@link MetadataContentWriter.commit}. */
export interface MetadataCommitOptions {
  /** Expected size (0 = do not check). */
  size?: number;
  /** Expected digest ("" = do not check). */
  expected?: string;
  /** Labels of the new content row. */
  labels?: Labels;
}

/**
 * A namespaced ingest. Holding it holds the ref's lock on disk; `close()` keeps the partial
 * data for a resume; `commit()` moves the blob to disk first, then adds the row.
 */
export interface MetadataContentWriter {
  /** The ref as the client named it (without the namespace prefix used on disk). */
  readonly ref: string;
  /** Current status (offset = bytes written so far). */
  status(): IngestStatus;
  /** Write at `offset` (= current offset to append, 0 to restart). Returns bytes written. */
  write(data: Uint8Array, offset: number): Promise<number>;
  /** Digest of the bytes written so far. */
  digest(): string;
  /**
   * Commit. Returns the new row. When the namespace already has the digest the ingest is
   * still cleaned up and the lease still gains the content, then AlreadyExistsError is thrown
   * (clients treat it as success).
   */
  commit(options?: MetadataCommitOptions): Promise<ContentInfo>;
  /** Release the lock, keep the ingest. */
  close(): Promise<void>;
}

/** The content store as one namespace sees it: containerd's metadata/content.go. */
export interface ScopedContentStore {
  /** NotFoundError `content digest <d>: not found` unless this namespace has the blob. */
  info(digest: string): ContentInfo;
  /** Update labels by field paths (`labels.<k>`, `labels`; none = all mutable fields). */
  update(info: { digest: string; labels: Labels }, paths: readonly string[]): ContentInfo;
  /** The namespace's blobs matching containerd filters (digest, size, labels). */
  list(filters: readonly string[]): ContentInfo[];
  /** Remove the blob from the namespace; the bytes go at the next GC if no one else has them. */
  delete(digest: string): void;
  /** Stream the blob's bytes (the namespace must have it). */
  read(
    digest: string,
    options?: { offset?: number; size?: number; chunkSize?: number },
  ): AsyncIterable<Uint8Array>;
  /** Open or resume the namespace's ingest `ref`. */
  writer(ref: string, options?: MetadataWriterOptions): Promise<MetadataContentWriter>;
  /** Status of the namespace's ingest; NotFoundError `reference <ref>: not found`. */
  status(ref: string): Promise<IngestStatus>;
  /** The namespace's ingests matching filters on `ref`. */
  listStatuses(filters: readonly string[]): Promise<IngestStatus[]>;
  /** Remove the namespace's ingest; NotFoundError when there is none. */
  abort(ref: string): Promise<void>;
}

/** Options of {@link LeaseStore.create}. */
export interface CreateLeaseOptions {
  id: string;
  labels?: Labels;
}

/** The leases table: containerd's metadata/leases.go. */
export interface LeaseStore {
  /** AlreadyExistsError `lease "x": already exists`; creates the namespace implicitly. */
  create(namespace: string, options: CreateLeaseOptions): Lease;
  /** NotFoundError `lease "x": not found`. Its resources become collectable. */
  delete(namespace: string, id: string): void;
  /** Leases matching containerd filters (id, labels). */
  list(namespace: string, filters?: readonly string[]): Lease[];
  /** Hold a resource; NotFoundError for a missing lease, InvalidArgument/NotImplemented for a bad type. */
  addResource(namespace: string, id: string, resource: LeaseResource): void;
  /** Release a resource (no error when it was not held). */
  deleteResource(namespace: string, id: string, resource: LeaseResource): void;
  /** Resources held by the lease. */
  listResources(namespace: string, id: string): LeaseResource[];
}

/**
 * A node of the GC graph. `type` is `content` (key = digest), `snapshot` (key =
 * `<snapshotter>/<key>`), `lease`, `ingest` (key = ref), `image`, `container`, or a type a
 * later provider adds. `flat` marks a node reached through a `containerd.io/gc.flat` lease:
 * its labels are not followed.
 */
export interface GCNode {
  readonly type: string;
  readonly namespace: string;
  readonly key: string;
  readonly flat?: boolean;
}

/** Statements usable inside a transaction (a thin, typed face of node:sqlite). */
export interface Tx {
  /** Run a statement; returns the number of changed rows. */
  run(sql: string, ...params: SqlValue[]): number;
  /** First row or undefined. */
  get<T = Record<string, SqlValue>>(sql: string, ...params: SqlValue[]): T | undefined;
  /** All rows. */
  all<T = Record<string, SqlValue>>(sql: string, ...params: SqlValue[]): T[];
  /**
   * All rows as arrays of column values, in SELECT order: for large reads, where building an
   * object per row costs more than the query (20k label rows: 24 ms as objects, 10 ms so).
   */
  values(sql: string, ...params: SqlValue[]): SqlValue[][];
  /**
   * Record that something was deleted, so the scheduler collects soon. `store` names the
   * backing store whose bytes may now be unreferenced (`content` or `snapshotter/<name>`).
   */
  dirty(store?: string): void;
}

/** A value SQLite binds or returns. */
export type SqlValue = string | number | bigint | null | Uint8Array;

/**
 * One part of the GC graph, owned by whoever owns the rows (images, containers, snapshots
 * register theirs when they land). All methods run inside the collector's one transaction.
 */
export interface GCProvider {
  /** A name for logs. */
  readonly name: string;
  /** Emit the nodes that are live by themselves (roots). */
  roots?(tx: Tx, now: Date, emit: (node: GCNode) => void): void;
  /** Emit the nodes `node` references, for the node types this provider owns. */
  references?(tx: Tx, node: GCNode, emit: (node: GCNode) => void): void;
  /** Emit every collectable node this provider owns (the sweep's candidates). */
  all?(tx: Tx, emit: (node: GCNode) => void): void;
  /** Remove an unreachable node (and mark its backing store dirty through `tx.dirty`). */
  remove?(tx: Tx, node: GCNode): void;
}

/** What one collection did. */
export interface GCStats {
  /** Milliseconds spent marking and sweeping metadata. */
  metaMs: number;
  /** Milliseconds spent removing unreferenced bytes from the disk stores. */
  backendMs: number;
  /** Metadata rows removed, by node type. */
  removed: Record<string, number>;
  /** Blobs removed from disk. */
  blobsRemoved: number;
  /** Disk ingests removed. */
  ingestsRemoved: number;
}

/** A mutation notice for the GC scheduler: `dirty` when deletions happened since the last GC. */
export type MutationListener = (dirty: boolean) => void;

/**
 * A backing store's cleanup (e.g. a snapshotter removing snapshots no namespace holds),
 * run after a collection marked it dirty.
 */
export type BackendCleanup = () => Promise<void>;

/** The metadata plugin's instance. */
export interface MetadataStore {
  readonly namespaces: NamespaceStore;
  readonly leases: LeaseStore;
  /** The content store as `scope.namespace` sees it, holding new objects in `scope.lease`. */
  content(scope: Scope): ScopedContentStore;
  /** Run `fn` in a read transaction (a consistent snapshot). `fn` must be synchronous. */
  view<T>(fn: (tx: Tx) => T): T;
  /**
   * Run `fn` in a write transaction (BEGIN IMMEDIATE … COMMIT; ROLLBACK when it throws).
   * `fn` must be synchronous. Mutation listeners run after the commit.
   */
  update<T>(fn: (tx: Tx) => T): T;
  /** Create `namespace` if it does not exist (any write does this implicitly). */
  ensureNamespace(tx: Tx, namespace: string): void;
  /** Be told after each committed write (the GC scheduler). Returns an unsubscribe. */
  onMutation(listener: MutationListener): () => void;
  /** Add a part of the GC graph (images, containers, snapshots add theirs). */
  registerGCProvider(provider: GCProvider): void;
  /** Add a backing store's cleanup, run when a collection marked `store` dirty. */
  registerBackendCleanup(store: string, cleanup: BackendCleanup): void;
  /** Mark, sweep metadata, then remove unreferenced bytes from the backing stores. */
  garbageCollect(): Promise<GCStats>;
  /** Close the database. */
  close(): Promise<void>;
}
