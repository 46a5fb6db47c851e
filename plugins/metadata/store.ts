/**
 * The metadata store (io.containerd.metadata.v1.sqlite): one SQLite database holding every
 * namespace's objects, in front of the namespace-free disk stores. It implements
 * {@link MetadataStore}: namespaces, namespaced content, leases, and the garbage collector
 * (mark and sweep of rows, then removal of bytes no namespace references).
 *
 * @example
 * ```ts
 * import { SqliteMetadataStore } from "./store.ts";
 * const md = SqliteMetadataStore.open({ path: `${root}/meta.db`, content: localStore });
 * const cs = md.content({ namespace: "default" });
 * const w = await cs.writer("my-ref");
 * await w.write(new TextEncoder().encode("hello"), 0);
 * await w.commit();
 * await md.garbageCollect(); // nothing holds the blob: it is gone
 * ```
 * @module
 */
import { isNotFound } from "../../server/errdefs.ts";
import { type Logger, silentLogger } from "../../server/log.ts";
import type { ContentStore } from "../content/api.ts";
import type {
  BackendCleanup,
  GCProvider,
  GCStats,
  LeaseStore,
  MetadataStore,
  MutationListener,
  NamespaceStore,
  Scope,
  ScopedContentStore,
  Tx,
} from "./api.ts";
import { type ContentBackend, NamespacedContentStore } from "./content.ts";
import { type CommitReport, type MigrationResult, SqliteDb } from "./db.ts";
import { coreProviders, markAndSweep } from "./gc.ts";
import { SqlLeaseStore } from "./leases.ts";
import { MIGRATIONS } from "./migrations.ts";
import { ensureNamespace, SqlNamespaceStore } from "./namespaces.ts";
import { RWLock } from "./rwlock.ts";

/** The backing store name the content sweep answers to. */
export const CONTENT_STORE = "content";

/** Options of {@link SqliteMetadataStore.open}. */
export interface OpenMetadataOptions {
  /** The database file (`<root>/meta.db`), or `:memory:` in tests. */
  path: string;
  /** The local disk store the namespaced content store wraps. */
  content: ContentStore;
  /** Where GC and migration notes go. Default: silent. */
  log?: Logger;
  /** Let namespaces share blobs already on disk without rewriting them. Default true. */
  sharedContent?: boolean;
}

/** See the module doc. */
export class SqliteMetadataStore implements MetadataStore {
  readonly namespaces: NamespaceStore;
  readonly leases: LeaseStore;
  /** How the schema was brought up to date at open. */
  readonly migration: MigrationResult;
  readonly #db: SqliteDb;
  readonly #backend: ContentBackend;
  readonly #log: Logger;
  readonly #listeners = new Set<MutationListener>();
  readonly #providers: GCProvider[] = coreProviders();
  readonly #cleanups = new Map<string, BackendCleanup>();
  /** Deletions since the last collection (containerd's `dirty`). */
  #deletions = 0;
  /**
   * Backing stores that may hold unreferenced bytes. Starts with content so the first
   * collection after boot removes blobs a crash left without a row.
   */
  #dirtyStores = new Set<string>([CONTENT_STORE]);
  #collecting: Promise<GCStats> | undefined;
  #inSweep = false;

  private constructor(
    db: SqliteDb,
    options: OpenMetadataOptions,
    log: Logger,
    migration: MigrationResult,
  ) {
    this.#db = db;
    this.#log = log;
    this.migration = migration;
    this.#backend = {
      db,
      store: options.content,
      lock: new RWLock(),
      shared: options.sharedContent ?? true,
      lastRead: { namespace: "", digest: "", generation: -1 },
    };
    this.namespaces = new SqlNamespaceStore(db);
    this.leases = new SqlLeaseStore(db);
  }

  /** Open the database (WAL, synchronous=FULL) and migrate its schema. */
  static open(options: OpenMetadataOptions): SqliteMetadataStore {
    const log = options.log ?? silentLogger();
    let store: SqliteMetadataStore | undefined;
    const db = SqliteDb.open(options.path, {
      onCommit: (report) => {
        if (store) store.#committed(report);
      },
    });
    try {
      const migration = db.migrate(MIGRATIONS);
      if (migration.from !== migration.to) {
        log.info("metadata schema migrated", { from: migration.from, to: migration.to });
      }
      store = new SqliteMetadataStore(db, options, log, migration);
      return store;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  content(scope: Scope): ScopedContentStore {
    return new NamespacedContentStore(this.#backend, scope);
  }

  view<T>(fn: (tx: Tx) => T): T {
    return this.#db.view(fn);
  }

  update<T>(fn: (tx: Tx) => T): T {
    return this.#db.update(fn);
  }

  ensureNamespace(tx: Tx, namespace: string): void {
    ensureNamespace(tx, namespace);
  }

  onMutation(listener: MutationListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  registerGCProvider(provider: GCProvider): void {
    if (this.#providers.some((p) => p.name === provider.name)) {
      throw new Error(`gc provider ${JSON.stringify(provider.name)} is registered already`);
    }
    this.#providers.push(provider);
  }

  registerBackendCleanup(store: string, cleanup: BackendCleanup): void {
    if (this.#cleanups.has(store)) {
      throw new Error(`backend cleanup for ${JSON.stringify(store)} is registered already`);
    }
    this.#cleanups.set(store, cleanup);
  }

  /** Deletions since the last collection (the scheduler's view of "dirty"). */
  get dirty(): number {
    return this.#deletions;
  }

  garbageCollect(): Promise<GCStats> {
    // One collection at a time; a caller arriving mid-run gets a fresh run after it, so a
    // deletion it just made is seen by the mark.
    const previous = this.#collecting;
    const run = (async () => {
      if (previous) await previous.catch(() => {});
      return await this.#collect();
    })();
    this.#collecting = run;
    run.finally(() => {
      if (this.#collecting === run) this.#collecting = undefined;
    }).catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    await this.#collecting?.catch(() => {});
    this.#listeners.clear();
    this.#db.close();
  }

  #committed(report: CommitReport): void {
    for (const store of report.stores) this.#dirtyStores.add(store);
    if (this.#inSweep) return;
    this.#deletions += report.deletions;
    const dirty = this.#deletions > 0;
    for (const listener of [...this.#listeners]) {
      try {
        listener(dirty);
      } catch (err) {
        this.#log.warn("mutation listener failed", { error: err });
      }
    }
  }

  async #collect(): Promise<GCStats> {
    const started = performance.now();
    this.#inSweep = true;
    let removed;
    try {
      removed = this.#db.update((tx) => markAndSweep(tx, this.#providers, new Date())).removed;
    } finally {
      this.#inSweep = false;
    }
    this.#deletions = 0;
    const stores = this.#dirtyStores;
    this.#dirtyStores = new Set();
    const metaMs = performance.now() - started;
    const stats: GCStats = {
      metaMs,
      backendMs: 0,
      removed: {},
      blobsRemoved: 0,
      ingestsRemoved: 0,
    };
    for (const node of removed) stats.removed[node.type] = (stats.removed[node.type] ?? 0) + 1;
    const backendStarted = performance.now();
    for (const store of stores) {
      try {
        if (store === CONTENT_STORE) {
          const swept = await this.#sweepContent();
          stats.blobsRemoved += swept.blobs;
          stats.ingestsRemoved += swept.ingests;
        } else {
          const cleanup = this.#cleanups.get(store);
          if (cleanup) await cleanup();
        }
      } catch (err) {
        // Try again at the next collection.
        this.#dirtyStores.add(store);
        this.#log.warn("backend garbage collection failed", { store, error: err });
      }
    }
    stats.backendMs = performance.now() - backendStarted;
    if (removed.length > 0 || stats.blobsRemoved > 0 || stats.ingestsRemoved > 0) {
      this.#log.debug("removed unreferenced objects", {
        removed: stats.removed,
        blobs: stats.blobsRemoved,
        ingests: stats.ingestsRemoved,
        ms: Math.round(metaMs + stats.backendMs),
      });
    }
    return stats;
  }

  /**
   * Remove blobs no namespace has a row for (nor a shared ingest expects) and disk ingests
   * no namespace's ingest row names, holding the content lock exclusively.
   */
  #sweepContent(): Promise<{ blobs: number; ingests: number }> {
    const { db, store, lock } = this.#backend;
    return lock.exclusive(async () => {
      const { blobs, ingests } = db.view((tx) => ({
        blobs: new Set(
          tx.all<{ digest: string }>(
            `SELECT digest FROM content
             UNION SELECT expected AS digest FROM ingests WHERE expected != ''`,
          ).map((r) => r.digest),
        ),
        ingests: new Set(tx.all<{ bref: string }>("SELECT bref FROM ingests").map((r) => r.bref)),
      }));
      const doomed: string[] = [];
      for await (const blob of store.walk()) if (!blobs.has(blob.digest)) doomed.push(blob.digest);
      let removedBlobs = 0;
      for (const digest of doomed) {
        try {
          await store.delete(digest);
          removedBlobs++;
          this.#log.debug("removed content", { digest });
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }
      let removedIngests = 0;
      let retry = false;
      for (const status of await store.listStatuses()) {
        if (ingests.has(status.ref)) continue;
        try {
          await store.abort(status.ref);
          removedIngests++;
          this.#log.debug("cleanup aborting ingest", { ref: status.ref });
        } catch (err) {
          if (isNotFound(err)) continue;
          // A writer still holds it (Unavailable): the next collection tries again.
          retry = true;
          this.#log.debug("ingest cleanup skipped", { ref: status.ref, error: err });
        }
      }
      if (retry) this.#dirtyStores.add(CONTENT_STORE);
      return { blobs: removedBlobs, ingests: removedIngests };
    });
  }
}
