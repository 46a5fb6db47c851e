/**
 * The content store as one namespace sees it — containerd's metadata/content.go over SQLite.
 *
 * Bytes live once in the local, namespace-free store; a namespace sees a blob only when it
 * has a row for it. Ingests are namespaced too: the client's ref maps to a disk ref
 * `<namespace>/<sequence>/<ref>`, so two namespaces may use the same ref without touching
 * each other. A write whose expected digest is already on disk (committed by another
 * namespace) is "shared": no bytes are copied and commit only adds the row.
 *
 * Crash order: a blob is committed to disk (fsync, rename) before its row is inserted; a
 * crash in between leaves an unreferenced blob that the next GC removes, never a row without
 * a blob. Commits and shared opens hold the store's lock shared; the GC's disk sweep holds it
 * exclusive, so a blob cannot vanish between its disk commit and its row.
 *
 * @module
 */
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  isAlreadyExists,
  isNotFound,
  NotFoundError,
} from "../../server/errdefs.ts";
import { adaptRecord, parseAll } from "../../server/filters.ts";
import type { BlobInfo, ContentStore, ContentWriter, IngestStatus } from "../content/api.ts";
import type {
  ContentInfo,
  Labels,
  MetadataCommitOptions,
  MetadataContentWriter,
  MetadataWriterOptions,
  Scope,
  ScopedContentStore,
  Tx,
} from "./api.ts";
import type { SqliteDb } from "./db.ts";
import { applyLabelPaths, readLabels, writeLabels } from "./labels.ts";
import { addToLease, removeFromLease, RESOURCE_CONTENT, RESOURCE_INGESTS } from "./leases.ts";
import { ensureNamespace } from "./namespaces.ts";
import type { RWLock } from "./rwlock.ts";
import { validateDigest, validateIdentifier, validateLabels } from "./validate.ts";

/** How long an ingest not held by a lease is kept (containerd: 24 h). */
export const INGEST_EXPIRY_MS = 24 * 60 * 60 * 1000;

interface ContentRow {
  digest: string;
  size: number;
  created_at: number;
  updated_at: number;
}

interface IngestRow {
  ref: string;
  bref: string;
  expected: string;
  size: number;
}

function toInfo(tx: Tx, namespace: string, row: ContentRow): ContentInfo {
  return {
    digest: row.digest,
    size: row.size,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    labels: readLabels(tx, "content", [namespace, row.digest]),
  };
}

function contentRow(tx: Tx, namespace: string, digest: string): ContentRow | undefined {
  return tx.get<ContentRow>(
    "SELECT digest, size, created_at, updated_at FROM content WHERE namespace = ? AND digest = ?",
    namespace,
    digest,
  );
}

function ingestRow(tx: Tx, namespace: string, ref: string): IngestRow | undefined {
  return tx.get<IngestRow>(
    "SELECT ref, bref, expected, size FROM ingests WHERE namespace = ? AND ref = ?",
    namespace,
    ref,
  );
}

function notFound(digest: string): NotFoundError {
  return new NotFoundError(`content digest ${digest}: not found`);
}

/** The disk ref of a namespace's ingest: namespaced and unique per (re)creation. */
export function backendRef(namespace: string, sequence: number, ref: string): string {
  return `${namespace}/${sequence}/${ref}`;
}

/** Everything a scoped store shares with the others: the database, the disk, the GC lock. */
export interface ContentBackend {
  readonly db: SqliteDb;
  readonly store: ContentStore;
  readonly lock: RWLock;
  /**
   * containerd's content_sharing_policy: true ("shared") lets a write whose expected digest
   * is on disk skip the bytes; false ("isolated") makes every namespace write them.
   */
  readonly shared: boolean;
  /**
   * The last blob a Read found in its namespace, and the database's write generation then:
   * while no write transaction ran since, the next Read of it skips the lookup.
   */
  readonly lastRead: { namespace: string; digest: string; generation: number };
}

/** {@link ScopedContentStore} for one request's scope. */
export class NamespacedContentStore implements ScopedContentStore {
  readonly #backend: ContentBackend;
  readonly #scope: Scope;

  /** Bind the shared backend to a scope; validates the namespace name. */
  constructor(backend: ContentBackend, scope: Scope) {
    validateIdentifier(scope.namespace);
    this.#backend = backend;
    this.#scope = scope;
  }

  get #ns(): string {
    return this.#scope.namespace;
  }

  info(digest: string): ContentInfo {
    return this.#backend.db.view((tx) => {
      const row = contentRow(tx, this.#ns, digest);
      if (!row) throw notFound(digest);
      return toInfo(tx, this.#ns, row);
    });
  }

  update(info: { digest: string; labels: Labels }, paths: readonly string[]): ContentInfo {
    const { digest } = info;
    return this.#backend.db.update((tx) => {
      const row = contentRow(tx, this.#ns, digest);
      if (!row) throw notFound(digest);
      const current = readLabels(tx, "content", [this.#ns, digest]);
      const next = applyLabelPaths(
        current,
        info.labels,
        paths,
        (path) =>
          `cannot update ${JSON.stringify(path)} field on content info ${
            JSON.stringify(digest)
          }: invalid argument`,
      );
      validateLabels(next, "info.Labels");
      const updatedAt = Date.now();
      tx.run(
        "UPDATE content SET updated_at = ? WHERE namespace = ? AND digest = ?",
        updatedAt,
        this.#ns,
        digest,
      );
      writeLabels(tx, "content", [this.#ns, digest], next);
      return toInfo(tx, this.#ns, { ...row, updated_at: updatedAt });
    });
  }

  list(filters: readonly string[]): ContentInfo[] {
    const filter = parseAll(filters);
    return this.#backend.db.view((tx) =>
      tx.all<ContentRow>(
        "SELECT digest, size, created_at, updated_at FROM content WHERE namespace = ? ORDER BY digest",
        this.#ns,
      )
        .map((row) => toInfo(tx, this.#ns, row))
        .filter((info) =>
          filter.match(
            adaptRecord({ digest: info.digest, size: String(info.size) }, { labels: info.labels }),
          )
        )
    );
  }

  delete(digest: string): void {
    this.#backend.db.update((tx) => {
      const removed = tx.run(
        "DELETE FROM content WHERE namespace = ? AND digest = ?",
        this.#ns,
        digest,
      );
      if (removed === 0) throw notFound(digest);
      removeFromLease(tx, this.#scope, { type: RESOURCE_CONTENT, id: digest });
      tx.dirty("content");
    });
  }

  async *read(
    digest: string,
    options: { offset?: number; size?: number; chunkSize?: number } = {},
  ): AsyncIterable<Uint8Array> {
    // Existence only (no labels, no transaction): ctr asks for 32 KiB per Read, so a 64 MiB
    // blob is 2048 of them. The lookup measured ~20 µs in the daemon (of ~300 µs per Read):
    // it is skipped while the same blob is read again and nothing was written meanwhile.
    const { db, lastRead } = this.#backend;
    const generation = db.writeGeneration;
    if (
      lastRead.generation !== generation || lastRead.digest !== digest ||
      lastRead.namespace !== this.#ns
    ) {
      const found = db.readOne<{ found: number }>(
        "SELECT 1 AS found FROM content WHERE namespace = ? AND digest = ?",
        this.#ns,
        digest,
      );
      if (!found) throw notFound(digest);
      lastRead.namespace = this.#ns;
      lastRead.digest = digest;
      lastRead.generation = generation;
    }
    yield* this.#backend.store.read(digest, options);
  }

  async writer(ref: string, options: MetadataWriterOptions = {}): Promise<MetadataContentWriter> {
    if (ref === "") throw new InvalidArgumentError("ref must not be empty: invalid argument");
    let total = options.total ?? 0;
    const expected = options.expected ?? "";
    if (expected !== "") validateDigest(expected);
    const { db, store, lock } = this.#backend;
    return await lock.shared(async () => {
      // The disk is asked before the transaction (node:sqlite transactions are synchronous).
      let onDisk: BlobInfo | undefined;
      if (
        expected !== "" && this.#backend.shared &&
        !db.view((tx) => contentRow(tx, this.#ns, expected))
      ) {
        onDisk = await store.info(expected).catch((err) => {
          if (isNotFound(err)) return undefined;
          throw err;
        });
      }
      let exists = false;
      let shared = false;
      let created = false;
      const bref = db.update((tx) => {
        if (expected !== "") {
          if (contentRow(tx, this.#ns, expected)) {
            // Hold it in the lease anyway, so the caller's lease protects what it will use.
            addToLease(tx, this.#scope, { type: RESOURCE_CONTENT, id: expected });
            exists = true;
            return "";
          }
          if (onDisk && (total === 0 || total === onDisk.size)) {
            shared = true;
            total = onDisk.size;
          }
        }
        ensureNamespace(tx, this.#ns);
        const leased = addToLease(tx, this.#scope, { type: RESOURCE_INGESTS, id: ref });
        let row = ingestRow(tx, this.#ns, ref);
        if (!row) {
          const sequence = tx.get<{ value: number }>(
            `INSERT INTO counters(name, value) VALUES ('ingest', 1)
             ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value`,
          )?.value ?? 1;
          row = { ref, bref: backendRef(this.#ns, sequence, ref), expected: "", size: 0 };
          tx.run(
            "INSERT INTO ingests(namespace, ref, bref) VALUES (?, ?, ?)",
            this.#ns,
            ref,
            row.bref,
          );
          created = true;
        }
        if (!leased) {
          // Not held by a lease: kept for a day so a cut-off ingest can be resumed.
          tx.run(
            "UPDATE ingests SET expire_at = ? WHERE namespace = ? AND ref = ?",
            Date.now() + INGEST_EXPIRY_MS,
            this.#ns,
            ref,
          );
        }
        if (shared) {
          tx.run(
            "UPDATE ingests SET expected = ?, size = ? WHERE namespace = ? AND ref = ?",
            expected,
            total,
            this.#ns,
            ref,
          );
        }
        return row.bref;
      });
      if (exists) throw new AlreadyExistsError(`content ${expected}: already exists`);
      let inner: ContentWriter | undefined;
      if (!shared) {
        try {
          // The expected digest was checked against this namespace; the disk store must not
          // short-cut on it, the bytes have to be written before the namespace sees them.
          inner = await store.writer(bref, total > 0 ? { total } : {});
        } catch (err) {
          if (created) this.#forgetIngest(ref, bref);
          throw err;
        }
      }
      return new NamespacedWriter({
        backend: this.#backend,
        scope: this.#scope,
        ref,
        bref,
        inner,
        total,
        expected: shared ? expected : "",
      });
    });
  }

  async status(ref: string): Promise<IngestStatus> {
    const row = this.#backend.db.view((tx) => ingestRow(tx, this.#ns, ref));
    if (!row) throw new NotFoundError(`reference ${ref}: not found`);
    const status = await this.#backend.store.status(row.bref);
    return { ...status, ref };
  }

  async listStatuses(filters: readonly string[]): Promise<IngestStatus[]> {
    const filter = parseAll(filters);
    const rows = this.#backend.db.view((tx) =>
      tx.all<IngestRow>(
        "SELECT ref, bref, expected, size FROM ingests WHERE namespace = ? ORDER BY ref",
        this.#ns,
      )
    );
    const out: IngestStatus[] = [];
    for (const row of rows) {
      let status: IngestStatus;
      try {
        status = await this.#backend.store.status(row.bref);
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
      const named = { ...status, ref: row.ref };
      if (filter.match(adaptRecord({ ref: named.ref }))) out.push(named);
    }
    return out;
  }

  async abort(ref: string): Promise<void> {
    const { db, store } = this.#backend;
    const row = db.view((tx) => ingestRow(tx, this.#ns, ref));
    if (!row) throw new NotFoundError(`reference ${ref}: not found`);
    if (row.expected === "") {
      // Disk first: if a writer holds the ref this fails (Unavailable) and the row stays.
      await store.abort(row.bref).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
    }
    db.update((tx) => {
      tx.run("DELETE FROM ingests WHERE namespace = ? AND ref = ?", this.#ns, ref);
      removeFromLease(tx, this.#scope, { type: RESOURCE_INGESTS, id: ref });
      tx.dirty("content");
    });
  }

  #forgetIngest(ref: string, bref: string): void {
    try {
      this.#backend.db.update((tx) => {
        tx.run(
          "DELETE FROM ingests WHERE namespace = ? AND ref = ? AND bref = ?",
          this.#ns,
          ref,
          bref,
        );
        removeFromLease(tx, this.#scope, { type: RESOURCE_INGESTS, id: ref });
      });
    } catch {
      // Best effort: a leftover row only expires later.
    }
  }
}

interface WriterInit {
  backend: ContentBackend;
  scope: Scope;
  ref: string;
  bref: string;
  /** The disk writer; undefined while the ingest is shared (no bytes written yet). */
  inner: ContentWriter | undefined;
  total: number;
  /** The shared blob's digest ("" when not shared). */
  expected: string;
}

/** containerd's namespacedWriter. */
class NamespacedWriter implements MetadataContentWriter {
  readonly ref: string;
  readonly #backend: ContentBackend;
  readonly #scope: Scope;
  readonly #bref: string;
  readonly #started = new Date();
  #inner: ContentWriter | undefined;
  #total: number;
  #expected: string;
  #done = false;
  #closed = false;

  constructor(init: WriterInit) {
    this.ref = init.ref;
    this.#backend = init.backend;
    this.#scope = init.scope;
    this.#bref = init.bref;
    this.#inner = init.inner;
    this.#total = init.total;
    this.#expected = init.expected;
  }

  status(): IngestStatus {
    if (this.#inner) return { ...this.#inner.status(), ref: this.ref };
    return {
      ref: this.ref,
      offset: this.#total,
      total: this.#total,
      expected: this.#expected,
      startedAt: this.#started,
      updatedAt: this.#started,
    };
  }

  digest(): string {
    return this.#inner ? this.#inner.digest() : this.#expected;
  }

  async write(data: Uint8Array, offset: number): Promise<number> {
    this.#checkOpen();
    if (!this.#inner) {
      if (data.length === 0 && offset !== 0) return 0;
      // First real write to a shared ingest: unshare it by copying what the caller keeps.
      await this.#unshare(offset === 0 ? 0 : this.#total);
    }
    return await (this.#inner as ContentWriter).write(data, offset);
  }

  async commit(options: MetadataCommitOptions = {}): Promise<ContentInfo> {
    this.#checkOpen();
    const size = options.size ?? 0;
    const expected = options.expected ?? "";
    const labels = options.labels ?? {};
    validateLabels(labels, "info.Labels");
    const { db, lock } = this.#backend;
    const ns = this.#scope.namespace;
    return await lock.shared(async () => {
      let actual: string;
      let finalSize: number;
      const inner = this.#inner;
      if (!inner) {
        if (size !== 0 && size !== this.#total) {
          throw new FailedPreconditionError(
            `${
              JSON.stringify(this.ref)
            } failed size validation: ${this.#total} != ${size}: failed precondition`,
          );
        }
        if (expected !== "" && expected !== this.#expected) {
          throw new FailedPreconditionError(
            `${JSON.stringify(this.ref)} unexpected digest: failed precondition`,
          );
        }
        actual = this.#expected;
        finalSize = this.#total;
      } else {
        const status = inner.status();
        if (size !== 0 && size !== status.offset) {
          throw new FailedPreconditionError(
            `${
              JSON.stringify(this.ref)
            } failed size validation: ${status.offset} != ${size}: failed precondition`,
          );
        }
        finalSize = status.offset;
        actual = inner.digest();
        try {
          // Bytes first: fsync + rename on disk before the row exists.
          await inner.commit({ size: finalSize, ...(expected !== "" ? { expected } : {}) });
        } catch (err) {
          if (!isAlreadyExists(err)) throw err;
        }
      }
      this.#done = true;
      let exists = false;
      const info = db.update((tx) => {
        ensureNamespace(tx, ns);
        let row = contentRow(tx, ns, actual);
        if (row) {
          exists = true;
        } else {
          const now = Date.now();
          row = { digest: actual, size: finalSize, created_at: now, updated_at: now };
          tx.run(
            "INSERT INTO content(namespace, digest, size, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            ns,
            actual,
            finalSize,
            now,
            now,
          );
          writeLabels(tx, "content", [ns, actual], labels);
        }
        tx.run("DELETE FROM ingests WHERE namespace = ? AND ref = ?", ns, this.ref);
        removeFromLease(tx, this.#scope, { type: RESOURCE_INGESTS, id: this.ref });
        addToLease(tx, this.#scope, { type: RESOURCE_CONTENT, id: actual });
        return toInfo(tx, ns, row);
      });
      if (exists) throw new AlreadyExistsError(`content ${actual}: already exists`);
      return info;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#done = true;
    // After a commit the disk writer has nothing left to release; closing is harmless.
    await this.#inner?.close().catch(() => {});
  }

  #checkOpen(): void {
    if (this.#done) {
      throw new FailedPreconditionError(
        `ingest ${JSON.stringify(this.ref)} is already committed or closed: failed precondition`,
      );
    }
  }

  /** Open the disk writer of a shared ingest and copy the first `keep` bytes of the blob. */
  async #unshare(keep: number): Promise<void> {
    const { store, db } = this.#backend;
    const inner = await store.writer(this.#bref, this.#total > 0 ? { total: this.#total } : {});
    try {
      let at = 0;
      if (keep > 0) {
        for await (const chunk of store.read(this.#expected, { size: keep })) {
          at += await inner.write(chunk, at);
        }
      } else if (inner.status().offset > 0) {
        await inner.write(new Uint8Array(0), 0);
      }
    } catch (err) {
      await inner.close().catch(() => {});
      throw err;
    }
    this.#inner = inner;
    this.#expected = "";
    db.update((tx) =>
      tx.run(
        "UPDATE ingests SET expected = '', size = 0 WHERE namespace = ? AND ref = ?",
        this.#scope.namespace,
        this.ref,
      )
    );
  }
}
