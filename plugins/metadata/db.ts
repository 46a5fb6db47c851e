/**
 * The SQLite file under the metadata store: opening it crash-safe (WAL, synchronous=FULL,
 * foreign keys on), bringing its schema up to date, and running transactions.
 *
 * node:sqlite is synchronous, so a transaction is a synchronous function: nothing else runs
 * between BEGIN and COMMIT, which is what makes the GC's mark and sweep atomic without a
 * lock. Every write goes through {@link SqliteDb.update}: BEGIN IMMEDIATE, the function,
 * COMMIT — or ROLLBACK when it throws — so a crash or an error never leaves half a change.
 *
 * @example
 * ```ts
 * import { SqliteDb } from "./db.ts";
 * import { MIGRATIONS } from "./migrations.ts";
 * const db = SqliteDb.open(":memory:");
 * db.migrate(MIGRATIONS);
 * db.update((tx) => tx.run("INSERT INTO namespaces(name, created_at) VALUES (?, ?)", "default", Date.now()));
 * db.close();
 * ```
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { SqlValue, Tx } from "./api.ts";
import type { Migration } from "./migrations.ts";

/** What a committed write transaction reported through `tx.dirty`. */
export interface CommitReport {
  /** Number of `tx.dirty()` calls (deletions) in the transaction. */
  deletions: number;
  /** Backing stores named by `tx.dirty(store)`. */
  stores: ReadonlySet<string>;
}

/** Options of {@link SqliteDb.open}. */
export interface SqliteDbOptions {
  /** Called after every committed write transaction (not after rollbacks, not for views). */
  onCommit?: (report: CommitReport) => void;
}

/** The schema is newer than this daemon knows, or the migration list itself is malformed. */
export class SchemaError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SchemaError";
  }
}

/** Result of {@link SqliteDb.migrate}. */
export interface MigrationResult {
  /** The version found (0 for a new database). */
  from: number;
  /** The version after the migration. */
  to: number;
}

interface Pending {
  deletions: number;
  stores: Set<string>;
}

/** One open database file. Not shareable between processes (one daemon per root). */
export class SqliteDb {
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  /** Statements that return rows as arrays (Tx.values), cached apart from the others. */
  readonly #arrayStatements = new Map<string, StatementSync>();
  readonly #onCommit: ((report: CommitReport) => void) | undefined;
  /** Set while a transaction runs; nested calls join it. */
  #pending: Pending | undefined;
  #closed = false;
  #writeGeneration = 0;

  private constructor(db: DatabaseSync, options: SqliteDbOptions) {
    this.#db = db;
    this.#onCommit = options.onCommit;
  }

  /**
   * Open (creating when missing) the database at `path` with WAL journaling and
   * synchronous=FULL, so a committed transaction survives a crash or power loss.
   */
  static open(path: string, options: SqliteDbOptions = {}): SqliteDb {
    const db = new DatabaseSync(path, { enableForeignKeyConstraints: true });
    try {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      db.exec("PRAGMA foreign_keys = ON");
      db.exec("PRAGMA busy_timeout = 5000");
    } catch (err) {
      db.close();
      throw err;
    }
    return new SqliteDb(db, options);
  }

  /** The value of a pragma (tests check the durability settings). */
  pragma(name: string): SqlValue | undefined {
    if (!/^[a-z_]+$/.test(name)) throw new TypeError(`invalid pragma name ${name}`);
    const row = this.#db.prepare(`PRAGMA ${name}`).get() as Record<string, SqlValue> | undefined;
    return row ? Object.values(row)[0] : undefined;
  }

  /**
   * Bring the schema to the last migration's version in one transaction. Idempotent: an
   * up-to-date database is left untouched. Throws SchemaError when the database is newer.
   */
  migrate(migrations: readonly Migration[]): MigrationResult {
    checkMigrations(migrations);
    const latest = migrations.at(-1)?.version ?? 0;
    return this.update((tx) => {
      tx.run(
        `CREATE TABLE IF NOT EXISTS schema_version (
          id INTEGER PRIMARY KEY CHECK (id = 1),
          version INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        ) STRICT`,
      );
      const row = tx.get<{ version: number }>("SELECT version FROM schema_version WHERE id = 1");
      const from = row?.version ?? 0;
      if (from > latest) {
        throw new SchemaError(
          `metadata database schema version ${from} is newer than this daemon supports (${latest}); refusing to downgrade`,
        );
      }
      for (const migration of migrations) {
        if (migration.version <= from) continue;
        try {
          migration.up(tx);
        } catch (err) {
          throw new SchemaError(
            `metadata migration to version ${migration.version} (${migration.description}) failed: ${
              err instanceof Error ? err.message : String(err)
            }`,
            { cause: err },
          );
        }
      }
      if (from !== latest) {
        tx.run(
          `INSERT INTO schema_version(id, version, updated_at) VALUES (1, ?, ?)
           ON CONFLICT(id) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at`,
          latest,
          Date.now(),
        );
      }
      return { from, to: Math.max(from, latest) };
    });
  }

  /**
   * One row of a single read statement, without BEGIN/COMMIT around it: SQLite runs a lone
   * statement in its own implicit read transaction, so the row is consistent. For lookups on
   * hot paths (content Read checks the blob's record once per 32 KiB call), where the two
   * extra statements cost more than the query.
   */
  readOne<T>(sql: string, ...params: SqlValue[]): T | undefined {
    this.#checkOpen();
    return this.#statement(sql).get(...params) as T | undefined;
  }

  /**
   * Every row of a single read statement, as arrays of column values, without BEGIN/COMMIT
   * around it (see {@link readOne}: a lone statement is its own consistent read). For Lists
   * that one query can answer.
   */
  readValues(sql: string, ...params: SqlValue[]): SqlValue[][] {
    this.#checkOpen();
    return this.#values(sql, params);
  }

  /**
   * Run `fn` in a read transaction. `fn` must be synchronous. Inside a running transaction
   * it simply joins it.
   */
  view<T>(fn: (tx: Tx) => T): T {
    this.#checkOpen();
    if (this.#pending) return this.#call(fn, this.#pending);
    this.#db.exec("BEGIN DEFERRED");
    const pending: Pending = { deletions: 0, stores: new Set() };
    this.#pending = pending;
    try {
      const result = this.#call(fn, pending);
      this.#db.exec("COMMIT");
      return result;
    } catch (err) {
      this.#rollback();
      throw err;
    } finally {
      this.#pending = undefined;
    }
  }

  /**
   * Run `fn` in a write transaction: BEGIN IMMEDIATE, `fn`, COMMIT; ROLLBACK when `fn`
   * throws (the error is rethrown). `fn` must be synchronous. Nested calls join the outer
   * transaction. The commit hook runs after COMMIT.
   */
  update<T>(fn: (tx: Tx) => T): T {
    this.#checkOpen();
    if (this.#pending) return this.#call(fn, this.#pending);
    this.#db.exec("BEGIN IMMEDIATE");
    const pending: Pending = { deletions: 0, stores: new Set() };
    this.#pending = pending;
    let result: T;
    try {
      result = this.#call(fn, pending);
      this.#db.exec("COMMIT");
    } catch (err) {
      this.#rollback();
      throw err;
    } finally {
      this.#pending = undefined;
      // Committed, rolled back or failed half-way: a cached read may no longer hold either way.
      this.#writeGeneration++;
    }
    this.#onCommit?.({ deletions: pending.deletions, stores: pending.stores });
    return result;
  }

  /**
   * Counts write transactions ({@link update}; migrations run in one), finished or failed.
   * While it is unchanged no row has changed, so a caller may reuse what it read before
   * instead of asking SQLite again (content Read's existence check, once per 32 KiB).
   */
  get writeGeneration(): number {
    return this.#writeGeneration;
  }

  /** True while a transaction runs (callers that must not nest check this). */
  get inTransaction(): boolean {
    return this.#pending !== undefined;
  }

  /** Close the file; later calls throw. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#statements.clear();
    this.#arrayStatements.clear();
    this.#db.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error("metadata database is closed");
  }

  #rollback(): void {
    try {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
    } catch {
      // SQLite may have rolled back already (e.g. after a disk error); nothing more to undo.
    }
  }

  #call<T>(fn: (tx: Tx) => T, pending: Pending): T {
    const result = fn(this.#tx(pending));
    if (result instanceof Promise) {
      // Swallow the promise's own outcome; the transaction is rolled back by the caller.
      result.catch(() => {});
      throw new TypeError("a metadata transaction function must be synchronous");
    }
    return result;
  }

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  #values(sql: string, params: SqlValue[]): SqlValue[][] {
    let statement = this.#arrayStatements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      // Present in the pinned runtime's node:sqlite, missing from its type declarations.
      const arrays = statement as StatementSync & { setReturnArrays?: (on: boolean) => void };
      arrays.setReturnArrays?.(true);
      this.#arrayStatements.set(sql, statement);
    }
    const rows = statement.all(...params) as unknown[];
    // Without setReturnArrays the rows are objects with the columns in SELECT order.
    return rows.map((row) =>
      Array.isArray(row) ? row as SqlValue[] : Object.values(row as Record<string, SqlValue>)
    );
  }

  #tx(pending: Pending): Tx {
    return {
      run: (sql, ...params) => Number(this.#statement(sql).run(...params).changes),
      get: <T>(sql: string, ...params: SqlValue[]) =>
        this.#statement(sql).get(...params) as T | undefined,
      all: <T>(sql: string, ...params: SqlValue[]) => this.#statement(sql).all(...params) as T[],
      values: (sql: string, ...params: SqlValue[]) => this.#values(sql, params),
      dirty: (store?: string) => {
        pending.deletions++;
        if (store !== undefined) pending.stores.add(store);
      },
    };
  }
}

function checkMigrations(migrations: readonly Migration[]): void {
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new SchemaError(
        `metadata migration #${index} has version ${migration.version}, expected ${index + 1}`,
      );
    }
  });
}
