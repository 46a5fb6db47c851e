/**
 * The metadata store every local snapshotter keeps beside its snapshot directories:
 * containerd's `snapshots/storage` package on node:sqlite. It records, per snapshot key, a
 * numeric id (which names the snapshot's directory), the kind, the parent, labels, created
 * and updated times and, once committed, the usage measured at commit.
 *
 * The file is `<snapshotter root>/metadata.db`, opened with WAL journaling and
 * synchronous=FULL. node:sqlite is synchronous, so a transaction is a synchronous function:
 * {@link MetaStore.update} runs BEGIN IMMEDIATE, the function, COMMIT — or ROLLBACK when it
 * throws — and nothing else can run in between. A kill -9 at any instant leaves either the
 * whole change or none of it. Snapshotters do their slow disk work (copying a parent, measuring
 * usage, removing trees) outside transactions and re-check the records inside the one that
 * publishes the result.
 *
 * Ids come from an AUTOINCREMENT column, so an id is never handed out twice once committed:
 * a directory named after an id that is not in the store is garbage (a crash between creating
 * the directory and committing, or a removal whose directory is not deleted yet) and
 * `cleanup` may delete it.
 *
 * @example
 * ```ts
 * import { MetaStore } from "./storage.ts";
 * import { Kind } from "./api.ts";
 * const ms = MetaStore.open(":memory:");
 * const s = ms.update((tx) => tx.createSnapshot(Kind.ACTIVE, "a", ""));
 * ms.update((tx) => tx.commitActive("a", "base", { size: 0, inodes: 1 }));
 * ms.view((tx) => tx.getInfo("base")).info.kind; // Kind.COMMITTED
 * ms.close();
 * ```
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../../server/errdefs.ts";
import { type Adaptor, parseAll } from "../../server/filters.ts";
import type { Logger } from "../../server/log.ts";
import { Kind, kindName, type SnapshotInfo, type SnapshotUpdate, type Usage } from "./api.ts";

/** The schema version this code writes (PRAGMA user_version). */
export const STORAGE_SCHEMA_VERSION = 1;

/** An active snapshot or view as the snapshotters need it to build mounts. */
export interface StoredSnapshot {
  /** The snapshot's id: the name of its directory under `snapshots/`. */
  id: string;
  /** Active or view. */
  kind: Kind;
  /** Ids of the parent chain, nearest parent first; empty without a parent. */
  parentIds: string[];
}

/** A snapshot's record: its id, its info and the usage recorded at commit (zero before). */
export interface StoredInfo {
  /** The snapshot's id (its directory name). */
  id: string;
  /** What `stat` reports. */
  info: SnapshotInfo;
  /** The usage recorded at commit; zero for active snapshots and views. */
  usage: Usage;
}

/** The metadata database is unreadable, newer than this code, or closed. */
export class StorageError extends Error {
  /** `message` names the database and the cause. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StorageError";
  }
}

/**
 * A snapshot's directory is missing, unreadable or could not be made (a parent copy failed,
 * usage could not be measured). The record exists, so this is damage on disk, not a bad request.
 */
export class SnapshotDirError extends Error {
  /** `message` names the snapshot, the directory and the cause. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SnapshotDirError";
  }
}

interface Row {
  id: number;
  key: string;
  parent_id: number | null;
  parent_key: string | null;
  kind: number;
  created_at: number;
  updated_at: number;
  labels: string;
  size: number;
  inodes: number;
}

const SELECT_ROW = `SELECT s.id, s.key, s.parent_id, p.key AS parent_key, s.kind, s.created_at,
  s.updated_at, s.labels, s.size, s.inodes
  FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id`;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,
  parent_id INTEGER REFERENCES snapshots(id),
  kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  size INTEGER NOT NULL DEFAULT 0,
  inodes INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
`;

function notFound(key: string): NotFoundError {
  return new NotFoundError(`snapshot ${key} does not exist: not found`);
}

function checkKey(what: string, key: string): void {
  if (typeof key !== "string" || key === "") {
    throw new InvalidArgumentError(`${what} must not be empty: invalid argument`);
  }
}

/** Labels without empty values (containerd never stores an empty label), as a fresh object. */
function cleanLabels(labels: ReadonlyMap<string, string>): Record<string, string> {
  return Object.fromEntries([...labels].filter(([, v]) => v !== ""));
}

function labelMap(labels: Readonly<Record<string, string>> | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!labels) return out;
  for (const [k, v] of Object.entries(labels)) {
    if (typeof v !== "string") {
      throw new InvalidArgumentError(
        `label ${JSON.stringify(k)} must be a string: invalid argument`,
      );
    }
    out.set(k, v);
  }
  return out;
}

function parseLabels(text: string, key: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new StorageError(`labels of snapshot ${key} are corrupt: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new StorageError(`labels of snapshot ${key} are corrupt: not an object`);
  }
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(parsed)) if (typeof v === "string") out.set(k, v);
  return Object.fromEntries(out);
}

function toInfo(row: Row): SnapshotInfo {
  return {
    name: row.key,
    parent: row.parent_key ?? "",
    kind: row.kind as Kind,
    created: new Date(row.created_at),
    updated: new Date(row.updated_at),
    labels: parseLabels(row.labels, row.key),
  };
}

/** The filter adaptor of a snapshot: `name`, `parent`, `kind`, `labels.<k>`, as containerd's. */
export function adaptSnapshot(info: SnapshotInfo): Adaptor {
  return (path) => {
    const [head] = path;
    switch (head) {
      case "name":
        return { value: info.name, present: info.name !== "" };
      case "parent":
        return { value: info.parent, present: true };
      case "kind": {
        const name = kindName(info.kind);
        return name === "unknown" ? { value: "", present: false } : { value: name, present: true };
      }
      case "labels": {
        const key = path.slice(1).join(".");
        if (path.length < 2 || !Object.hasOwn(info.labels, key)) {
          return { value: "", present: false };
        }
        return { value: info.labels[key] ?? "", present: true };
      }
      default:
        return { value: "", present: false };
    }
  };
}

/** The operations of one transaction (containerd's storage functions). */
export class MetaTx {
  readonly #store: MetaStore;
  /** False in a `view` transaction: the write methods refuse to run. */
  readonly writable: boolean;

  /** Made by {@link MetaStore.view} and {@link MetaStore.update} only. */
  constructor(store: MetaStore, writable: boolean, token: symbol) {
    if (token !== TX_TOKEN) throw new TypeError("MetaTx is made by MetaStore transactions");
    this.#store = store;
    this.writable = writable;
  }

  #stmt(sql: string): StatementSync {
    return this.#store[STATEMENT](sql);
  }

  #row(key: string): Row | undefined {
    return this.#stmt(`${SELECT_ROW} WHERE s.key = ?`).get(key) as Row | undefined;
  }

  #mustRow(key: string): Row {
    const row = this.#row(key);
    if (!row) throw notFound(key);
    return row;
  }

  #checkWritable(op: string): void {
    if (!this.writable) {
      throw new StorageError(`${op} needs a write transaction (called in a read transaction)`);
    }
  }

  /** Ids of `id` and its ancestors, `id` first. */
  #chain(id: number): string[] {
    const ids: string[] = [];
    const seen = new Set<number>();
    let next: number | null = id;
    while (next !== null) {
      if (seen.has(next)) throw new StorageError(`snapshot parent chain loops at id ${next}`);
      seen.add(next);
      ids.push(String(next));
      const row = this.#stmt("SELECT parent_id FROM snapshots WHERE id = ?").get(next) as
        | { parent_id: number | null }
        | undefined;
      if (!row) {
        throw new StorageError(`snapshot id ${next} is missing from its child's parent chain`);
      }
      next = row.parent_id;
    }
    return ids;
  }

  /** The record of `key`, or undefined when there is none. */
  lookup(key: string): StoredInfo | undefined {
    const row = this.#row(key);
    if (!row) return undefined;
    return { id: String(row.id), info: toInfo(row), usage: { size: row.size, inodes: row.inodes } };
  }

  /** The record of `key`; NotFoundError `snapshot <key> does not exist` when there is none. */
  getInfo(key: string): StoredInfo {
    const found = this.lookup(key);
    if (!found) throw notFound(key);
    return found;
  }

  /**
   * An active snapshot or view with its parent chain (what its mounts are made of);
   * FailedPreconditionError for a committed one.
   */
  getSnapshot(key: string): StoredSnapshot {
    const row = this.#mustRow(key);
    if (row.kind !== Kind.ACTIVE && row.kind !== Kind.VIEW) {
      throw new FailedPreconditionError(
        `snapshot ${key} is ${kindName(row.kind as Kind)}, not active or view: failed precondition`,
      );
    }
    return {
      id: String(row.id),
      kind: row.kind as Kind,
      parentIds: row.parent_id === null ? [] : this.#chain(row.parent_id),
    };
  }

  /**
   * Check that `key` could be created on `parent` now (the checks of createSnapshot, without
   * writing); returns the parent's chain of ids, nearest first.
   */
  checkCreate(kind: Kind, key: string, parent: string): string[] {
    if (kind !== Kind.ACTIVE && kind !== Kind.VIEW) {
      throw new InvalidArgumentError(
        `snapshot kind ${kind} is invalid; only active snapshots and views can be created: invalid argument`,
      );
    }
    checkKey("snapshot key", key);
    let chain: string[] = [];
    if (parent !== "") {
      const prow = this.#row(parent);
      if (!prow) throw new NotFoundError(`parent snapshot ${parent} does not exist: not found`);
      if (prow.kind !== Kind.COMMITTED) {
        throw new FailedPreconditionError(
          `parent snapshot ${parent} is ${
            kindName(prow.kind as Kind)
          }, not committed: failed precondition`,
        );
      }
      chain = this.#chain(prow.id);
    }
    if (this.#row(key)) throw new AlreadyExistsError(`snapshot ${key}: already exists`);
    return chain;
  }

  /**
   * Record a new active snapshot or view. NotFoundError for a missing parent,
   * FailedPreconditionError for a parent that is not committed, AlreadyExistsError when the
   * key is taken.
   */
  createSnapshot(
    kind: Kind,
    key: string,
    parent: string,
    labels?: Readonly<Record<string, string>>,
  ): StoredSnapshot {
    this.#checkWritable("createSnapshot");
    const parentIds = this.checkCreate(kind, key, parent);
    const now = Date.now();
    const result = this.#stmt(
      `INSERT INTO snapshots(key, parent_id, kind, created_at, updated_at, labels)
       VALUES (?, ?, ?, ?, ?, ?)`,
    ).run(
      key,
      parentIds[0] === undefined ? null : Number(parentIds[0]),
      kind,
      now,
      now,
      JSON.stringify(cleanLabels(labelMap(labels))),
    );
    return { id: String(result.lastInsertRowid), kind, parentIds };
  }

  /**
   * Turn the active snapshot `key` into the committed snapshot `name`, keeping its id and
   * parent; created and updated become now, labels become `labels`, `usage` is recorded.
   * Returns the id.
   */
  commitActive(
    key: string,
    name: string,
    usage: Usage,
    labels?: Readonly<Record<string, string>>,
  ): string {
    this.#checkWritable("commitActive");
    checkKey("committed snapshot name", name);
    checkKey("snapshot key", key);
    if (this.#row(name)) throw new AlreadyExistsError(`snapshot ${name}: already exists`);
    const row = this.#mustRow(key);
    if (row.kind !== Kind.ACTIVE) {
      throw new FailedPreconditionError(
        `snapshot ${key} is ${
          kindName(row.kind as Kind)
        }, not active; only an active snapshot can be committed: failed precondition`,
      );
    }
    const now = Date.now();
    this.#stmt(
      `UPDATE snapshots SET key = ?, kind = ?, created_at = ?, updated_at = ?, labels = ?,
       size = ?, inodes = ? WHERE id = ?`,
    ).run(
      name,
      Kind.COMMITTED,
      now,
      now,
      JSON.stringify(cleanLabels(labelMap(labels))),
      Math.trunc(usage.size),
      Math.trunc(usage.inodes),
      row.id,
    );
    return String(row.id);
  }

  /**
   * Delete the record of `key`; NotFoundError when there is none, FailedPreconditionError
   * when a snapshot names it as parent. Returns its id and kind.
   */
  remove(key: string): { id: string; kind: Kind } {
    this.#checkWritable("remove");
    const row = this.#mustRow(key);
    const child = this.#stmt("SELECT key FROM snapshots WHERE parent_id = ? LIMIT 1").get(row.id) as
      | { key: string }
      | undefined;
    if (child) {
      throw new FailedPreconditionError(
        `cannot remove snapshot with child: snapshot ${key} is the parent of ${child.key}: failed precondition`,
      );
    }
    this.#stmt("DELETE FROM snapshots WHERE id = ?").run(row.id);
    return { id: String(row.id), kind: row.kind as Kind };
  }

  /**
   * Change the labels of `info.name` as containerd's UpdateInfo: `labels.<k>` paths set one
   * label from `info.labels` (an absent or empty value deletes it), `labels` or no paths
   * replace them all, other paths are InvalidArgumentError. Returns the new info.
   */
  updateInfo(info: SnapshotUpdate, fieldpaths: readonly string[] = []): SnapshotInfo {
    this.#checkWritable("updateInfo");
    checkKey("snapshot name", info.name);
    const row = this.#mustRow(info.name);
    const given = labelMap(info.labels);
    let labels = new Map(Object.entries(parseLabels(row.labels, row.key)));
    if (fieldpaths.length === 0) {
      labels = given;
    } else {
      for (const path of fieldpaths) {
        if (path.startsWith("labels.")) {
          const key = path.slice("labels.".length);
          labels.set(key, given.get(key) ?? "");
        } else if (path === "labels") {
          labels = new Map(given);
        } else {
          throw new InvalidArgumentError(
            `cannot update ${JSON.stringify(path)} field on snapshot ${
              JSON.stringify(info.name)
            }: invalid argument`,
          );
        }
      }
    }
    const updated = Math.max(Date.now(), row.created_at);
    const stored = cleanLabels(labels);
    this.#stmt("UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?").run(
      JSON.stringify(stored),
      updated,
      row.id,
    );
    return { ...toInfo(row), labels: stored, updated: new Date(updated) };
  }

  /**
   * Every snapshot matching `filters` (OR of containerd filter strings; none = all), in id
   * order. InvalidArgumentError for a malformed filter.
   */
  walkInfo(filters: readonly string[] = []): SnapshotInfo[] {
    const filter = parseAll(filters);
    const rows = this.#stmt(`${SELECT_ROW} ORDER BY s.id`).all() as unknown as Row[];
    return rows.map(toInfo).filter((info) => filter.match(adaptSnapshot(info)));
  }

  /** Map of id → key of every snapshot (the directories that must be kept). */
  idMap(): Map<string, string> {
    const rows = this.#stmt("SELECT id, key FROM snapshots").all() as unknown as {
      id: number;
      key: string;
    }[];
    return new Map(rows.map((r) => [String(r.id), r.key]));
  }
}

const TX_TOKEN = Symbol("MetaTx");
const STATEMENT = Symbol("statement");

/** One open metadata.db. Open one instance per snapshotter root (one daemon per root). */
export class MetaStore {
  readonly #db: DatabaseSync;
  readonly #path: string;
  readonly #statements = new Map<string, StatementSync>();
  #tx: MetaTx | undefined;
  #closed = false;

  private constructor(db: DatabaseSync, path: string) {
    this.#db = db;
    this.#path = path;
  }

  /**
   * Open (creating when missing) the store at `path` (`:memory:` for tests), crash-safe:
   * WAL journaling, synchronous=FULL, foreign keys on. Throws StorageError for a database
   * written by a newer schema.
   */
  static open(path: string): MetaStore {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path, { enableForeignKeyConstraints: true });
    } catch (err) {
      throw new StorageError(`open snapshot metadata ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      db.exec("PRAGMA foreign_keys = ON");
      db.exec("PRAGMA busy_timeout = 5000");
      const version = Number(
        (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
      );
      if (version > STORAGE_SCHEMA_VERSION) {
        throw new StorageError(
          `snapshot metadata ${path} has schema version ${version}, newer than this daemon supports (${STORAGE_SCHEMA_VERSION})`,
        );
      }
      if (version < STORAGE_SCHEMA_VERSION) {
        db.exec("BEGIN IMMEDIATE");
        try {
          db.exec(SCHEMA);
          db.exec(`PRAGMA user_version = ${STORAGE_SCHEMA_VERSION}`);
          db.exec("COMMIT");
        } catch (err) {
          db.exec("ROLLBACK");
          throw err;
        }
      }
    } catch (err) {
      db.close();
      if (err instanceof StorageError) throw err;
      throw new StorageError(`open snapshot metadata ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new MetaStore(db, path);
  }

  /** The database file's path. */
  get path(): string {
    return this.#path;
  }

  /** True once {@link close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  /** A cached prepared statement (used by MetaTx). */
  [STATEMENT](sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  #run<T>(fn: (tx: MetaTx) => T, writable: boolean): T {
    if (this.#closed) throw new StorageError(`snapshot metadata ${this.#path} is closed`);
    if (this.#tx) {
      if (writable && !this.#tx.writable) {
        throw new StorageError("a write transaction cannot be nested in a read transaction");
      }
      return fn(this.#tx);
    }
    const tx = new MetaTx(this, writable, TX_TOKEN);
    this.#db.exec(writable ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED");
    this.#tx = tx;
    try {
      const result = fn(tx);
      if (result instanceof Promise) {
        // Swallow the orphaned promise's rejection; the caller gets the TypeError.
        result.catch(() => {});
        throw new TypeError("a snapshot metadata transaction must be synchronous");
      }
      this.#db.exec("COMMIT");
      return result;
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw err;
    } finally {
      this.#tx = undefined;
    }
  }

  /** Run `fn` in a read transaction (a consistent view); `fn` must be synchronous. */
  view<T>(fn: (tx: MetaTx) => T): T {
    return this.#run(fn, false);
  }

  /**
   * Run `fn` in a write transaction: all of it is committed, or — when it throws — none of
   * it. `fn` must be synchronous; nested calls join the running transaction.
   */
  update<T>(fn: (tx: MetaTx) => T): T {
    return this.#run(fn, true);
  }

  /** Close the database; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#statements.clear();
    this.#db.close();
  }
}

// ---------------------------------------------------------------------------------------
// Directory helpers shared by the snapshotters

/**
 * Disk use of the tree at `dir`, as containerd's `fs.DiskUsage`: every distinct inode (by
 * device and inode number, so hard links count once) adds one inode and its allocated
 * blocks × 512 bytes; `dir` itself counts. Symlinks are not followed.
 */
export async function diskUsage(dir: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  let inodes = 0;
  const count = (info: Deno.FileInfo) => {
    const id = `${info.dev}:${info.ino}`;
    if (seen.has(id)) return;
    seen.add(id);
    inodes++;
    size += (info.blocks ?? 0) * 512;
  };
  count(await Deno.lstat(dir));
  const pending = [dir];
  while (pending.length > 0) {
    const current = pending.pop() as string;
    const names: string[] = [];
    for await (const entry of Deno.readDir(current)) names.push(entry.name);
    const infos = await Promise.all(names.map(async (name) => {
      const path = `${current}/${name}`;
      try {
        return { path, info: await Deno.lstat(path) };
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return undefined; // removed meanwhile
        throw err;
      }
    }));
    for (const found of infos) {
      if (!found) continue;
      count(found.info);
      if (found.info.isDirectory) pending.push(found.path);
    }
  }
  return { size, inodes };
}

/** fsync a directory, so renames and creations in it survive a power loss. */
export function syncDir(dir: string): void {
  const file = Deno.openSync(dir, { read: true });
  try {
    file.syncSync();
  } finally {
    file.close();
  }
}

/** Remove a tree; a missing one is fine. */
export async function removeAll(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/**
 * Rename `<root>/snapshots/<name>` to `rm-<name>` (synchronously, so no create can take the
 * name in between) and return the new path; undefined when there was nothing to rename.
 * Both snapshotters remove directories this way: detach first, delete later (or at cleanup).
 */
export function detachSnapshotDir(root: string, name: string, log: Logger): string | undefined {
  const path = `${root}/snapshots/${name}`;
  if (name.startsWith("rm-")) return path;
  const doomed = `${root}/snapshots/rm-${name}`;
  try {
    Deno.renameSync(path, doomed);
    return doomed;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      log.warn("failed to rename snapshot directory for removal", { path, error: err });
    }
    return undefined;
  }
}

/** Delete a detached snapshot dir; a failure is logged and left for the next cleanup. */
export async function deleteSnapshotDir(path: string | undefined, log: Logger): Promise<void> {
  if (path === undefined) return;
  try {
    await removeAll(path);
  } catch (err) {
    log.warn("failed to remove snapshot directory; cleanup will retry", { path, error: err });
  }
}

/** True when `path` exists (without following a final symlink). */
export function existsSync(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
