/**
 * The namespaces table: containerd's metadata/namespaces.go over SQLite. Namespaces are not
 * themselves namespaced; every other row hangs off one. A write in any service creates its
 * namespace implicitly ({@link ensureNamespace}); reads never do.
 *
 * @module
 */
import {
  AlreadyExistsError,
  FailedPreconditionError,
  NotFoundError,
} from "../../server/errdefs.ts";
import type { Labels, NamespaceInfo, NamespaceStore, Tx } from "./api.ts";
import type { SqliteDb } from "./db.ts";
import { applyLabelPaths, readLabels, writeLabels } from "./labels.ts";
import { validateIdentifier, validateLabels } from "./validate.ts";

/**
 * Create `name` unless it exists, inside the caller's transaction: how every write makes its
 * namespace exist, as containerd's bucket creation does.
 *
 * @throws {InvalidArgumentError} when `name` is not a valid identifier.
 */
export function ensureNamespace(tx: Tx, name: string): void {
  validateIdentifier(name);
  tx.run(
    "INSERT INTO namespaces(name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
    name,
    Date.now(),
  );
}

/** True when the namespace has a row. */
export function namespaceExists(tx: Tx, name: string): boolean {
  return tx.get("SELECT 1 AS found FROM namespaces WHERE name = ?", name) !== undefined;
}

/**
 * What a namespace still holds that blocks its deletion, in containerd's words and order:
 * `images`, `blobs`, `containers`, `snapshots on "<sn>" snapshotter`.
 */
export function namespaceContents(tx: Tx, name: string): string[] {
  const out: string[] = [];
  const any = (table: string) =>
    tx.get(`SELECT 1 AS found FROM ${table} WHERE namespace = ? LIMIT 1`, name) !== undefined;
  if (any("images")) out.push("images");
  if (any("content")) out.push("blobs");
  if (any("containers")) out.push("containers");
  const snapshotters = tx.all<{ snapshotter: string }>(
    "SELECT DISTINCT snapshotter FROM snapshots WHERE namespace = ? ORDER BY snapshotter",
    name,
  );
  for (const { snapshotter } of snapshotters) {
    out.push(`snapshots on ${JSON.stringify(snapshotter)} snapshotter`);
  }
  return out;
}

/** {@link NamespaceStore} over the metadata database. */
export class SqlNamespaceStore implements NamespaceStore {
  readonly #db: SqliteDb;

  /** Wrap the open metadata database. */
  constructor(db: SqliteDb) {
    this.#db = db;
  }

  create(name: string, labels: Labels = {}): NamespaceInfo {
    validateIdentifier(name);
    validateLabels(labels, "namespace.Labels");
    return this.#db.update((tx) => {
      if (namespaceExists(tx, name)) {
        throw new AlreadyExistsError(`namespace ${JSON.stringify(name)}: already exists`);
      }
      tx.run("INSERT INTO namespaces(name, created_at) VALUES (?, ?)", name, Date.now());
      writeLabels(tx, "namespace", [name], labels);
      return { name, labels: readLabels(tx, "namespace", [name]) };
    });
  }

  exists(name: string): boolean {
    return this.#db.view((tx) => namespaceExists(tx, name));
  }

  labels(name: string): Labels {
    return this.#db.view((tx) => readLabels(tx, "namespace", [name]));
  }

  list(): NamespaceInfo[] {
    // One statement, so one consistent read without BEGIN/COMMIT around two (the pair cost
    // ~4% of a List call at concurrency 1): each namespace with its labels in key order, a
    // namespace without labels as one row of NULLs.
    const rows = this.#db.readValues(
      "SELECT n.name, l.key, l.value FROM namespaces n " +
        "LEFT JOIN namespace_labels l ON l.namespace = n.name ORDER BY n.name, l.key",
    ) as [string, string | null, string | null][];
    const out: NamespaceInfo[] = [];
    let current: NamespaceInfo | undefined;
    for (const [name, key, value] of rows) {
      if (current?.name !== name) out.push(current = { name, labels: {} });
      if (key !== null) current.labels[key] = value ?? "";
    }
    return out;
  }

  update(name: string, labels: Labels, paths: readonly string[]): NamespaceInfo {
    validateIdentifier(name);
    validateLabels(labels, "namespace.Labels");
    return this.#db.update((tx) => {
      ensureNamespace(tx, name);
      const current = readLabels(tx, "namespace", [name]);
      const next = applyLabelPaths(
        current,
        labels,
        paths,
        (path) =>
          `cannot update ${JSON.stringify(path)} field on namespace ${
            JSON.stringify(name)
          }: invalid argument`,
      );
      writeLabels(tx, "namespace", [name], next);
      return { name, labels: next };
    });
  }

  delete(name: string): void {
    this.#db.update((tx) => {
      const holds = namespaceContents(tx, name);
      if (holds.length > 0) {
        throw new FailedPreconditionError(
          `namespace ${JSON.stringify(name)} must be empty, but it still has ${
            holds.join(", ")
          }: failed precondition`,
        );
      }
      if (!namespaceExists(tx, name)) {
        throw new NotFoundError(`namespace ${JSON.stringify(name)}: not found`);
      }
      // Leases and ingests go with the namespace (cascade); their bytes become collectable.
      const ingests = tx.get<{ n: number }>(
        "SELECT count(*) AS n FROM ingests WHERE namespace = ?",
        name,
      );
      const leases = tx.get<{ n: number }>(
        "SELECT count(*) AS n FROM leases WHERE namespace = ?",
        name,
      );
      tx.run("DELETE FROM namespaces WHERE name = ?", name);
      if ((ingests?.n ?? 0) > 0) tx.dirty("content");
      else if ((leases?.n ?? 0) > 0) tx.dirty();
    });
  }
}
