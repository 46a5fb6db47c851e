/**
 * The leases tables: containerd's metadata/leases.go over SQLite. A lease holds content,
 * ingests and snapshots against GC until it is deleted or its `containerd.io/gc.expire`
 * passes; objects written with a `containerd-lease` header join it.
 *
 * @module
 */
import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
} from "../../server/errdefs.ts";
import { adaptRecord, parseAll } from "../../server/filters.ts";
import type { CreateLeaseOptions, Lease, LeaseResource, LeaseStore, Scope, Tx } from "./api.ts";
import type { SqliteDb } from "./db.ts";
import { readLabels, writeLabels } from "./labels.ts";
import { ensureNamespace } from "./namespaces.ts";
import { isDigest, validateLabels } from "./validate.ts";

/** Resource type of content held by a lease. */
export const RESOURCE_CONTENT = "content";
/** Resource type of ingests held by a lease. */
export const RESOURCE_INGESTS = "ingests";
/** Prefix of snapshot resource types (`snapshots/<snapshotter>`). */
export const RESOURCE_SNAPSHOTS = "snapshots";

/**
 * Check and normalise a resource as containerd's parseLeaseResource does, so AddResource
 * and DeleteResource accept exactly what containerd accepts.
 *
 * @throws {InvalidArgumentError} for a malformed type or a content id that is not a digest.
 * @throws {NotImplementedError} for a type containerd does not know.
 */
export function parseLeaseResource(resource: LeaseResource): LeaseResource {
  const parts = resource.type.split("/");
  const kind = parts[0] ?? "";
  switch (kind) {
    case RESOURCE_CONTENT:
    case RESOURCE_INGESTS:
      if (parts.length !== 1) {
        throw new InvalidArgumentError(`invalid resource type ${resource.type}: invalid argument`);
      }
      if (kind === RESOURCE_CONTENT && !isDigest(resource.id)) {
        throw new InvalidArgumentError(
          `invalid content resource id ${resource.id}: invalid digest: invalid argument`,
        );
      }
      return { id: resource.id, type: kind };
    case RESOURCE_SNAPSHOTS:
      if (parts.length !== 2 || !parts[1]) {
        throw new InvalidArgumentError(
          `invalid snapshot resource type ${resource.type}: invalid argument`,
        );
      }
      return { id: resource.id, type: resource.type };
    default:
      throw new NotImplementedError(
        `resource type ${resource.type} not supported yet: not implemented`,
      );
  }
}

function leaseExists(tx: Tx, namespace: string, id: string): boolean {
  return tx.get("SELECT 1 AS found FROM leases WHERE namespace = ? AND id = ?", namespace, id) !==
    undefined;
}

/**
 * Hold `resource` in the request's lease, if it has one; inside the caller's transaction.
 * Returns false when the request carries no lease.
 *
 * @throws {NotFoundError} `lease does not exist` when the lease is unknown.
 */
export function addToLease(tx: Tx, scope: Scope, resource: LeaseResource): boolean {
  const lease = scope.lease;
  if (lease === undefined || lease === "") return false;
  if (!leaseExists(tx, scope.namespace, lease)) {
    throw new NotFoundError(`lease ${JSON.stringify(lease)}: lease does not exist: not found`);
  }
  tx.run(
    `INSERT INTO lease_resources(namespace, lease, type, id) VALUES (?, ?, ?, ?)
     ON CONFLICT DO NOTHING`,
    scope.namespace,
    lease,
    resource.type,
    resource.id,
  );
  return true;
}

/** Release `resource` from the request's lease, if it has one (no error when not held). */
export function removeFromLease(tx: Tx, scope: Scope, resource: LeaseResource): void {
  const lease = scope.lease;
  if (lease === undefined || lease === "") return;
  tx.run(
    "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?",
    scope.namespace,
    lease,
    resource.type,
    resource.id,
  );
}

interface LeaseRow {
  id: string;
  created_at: number;
}

function toLease(tx: Tx, namespace: string, row: LeaseRow): Lease {
  return {
    id: row.id,
    createdAt: new Date(row.created_at),
    labels: readLabels(tx, "lease", [namespace, row.id]),
  };
}

/** {@link LeaseStore} over the metadata database. */
export class SqlLeaseStore implements LeaseStore {
  readonly #db: SqliteDb;

  /** Wrap the open metadata database. */
  constructor(db: SqliteDb) {
    this.#db = db;
  }

  create(namespace: string, options: CreateLeaseOptions): Lease {
    const { id } = options;
    const labels = options.labels ?? {};
    if (id === "") throw new InvalidArgumentError("lease id must be provided: invalid argument");
    validateLabels(labels, "lease.Labels");
    return this.#db.update((tx) => {
      ensureNamespace(tx, namespace);
      if (leaseExists(tx, namespace, id)) {
        throw new AlreadyExistsError(`lease ${JSON.stringify(id)}: already exists`);
      }
      const createdAt = Date.now();
      tx.run(
        "INSERT INTO leases(namespace, id, created_at) VALUES (?, ?, ?)",
        namespace,
        id,
        createdAt,
      );
      writeLabels(tx, "lease", [namespace, id], labels);
      return toLease(tx, namespace, { id, created_at: createdAt });
    });
  }

  delete(namespace: string, id: string): void {
    this.#db.update((tx) => {
      const removed = tx.run("DELETE FROM leases WHERE namespace = ? AND id = ?", namespace, id);
      if (removed === 0) throw new NotFoundError(`lease ${JSON.stringify(id)}: not found`);
      tx.dirty();
    });
  }

  list(namespace: string, filters: readonly string[] = []): Lease[] {
    const filter = parseAll(filters);
    return this.#db.view((tx) =>
      tx.all<LeaseRow>(
        "SELECT id, created_at FROM leases WHERE namespace = ? ORDER BY id",
        namespace,
      )
        .map((row) => toLease(tx, namespace, row))
        .filter((lease) => filter.match(adaptRecord({ id: lease.id }, { labels: lease.labels })))
    );
  }

  addResource(namespace: string, id: string, resource: LeaseResource): void {
    const parsed = parseLeaseResource(resource);
    this.#db.update((tx) => {
      if (!leaseExists(tx, namespace, id)) {
        throw new NotFoundError(`lease ${JSON.stringify(id)}: not found`);
      }
      addToLease(tx, { namespace, lease: id }, parsed);
    });
  }

  deleteResource(namespace: string, id: string, resource: LeaseResource): void {
    const parsed = parseLeaseResource(resource);
    this.#db.update((tx) => {
      if (!leaseExists(tx, namespace, id)) {
        throw new NotFoundError(`lease ${JSON.stringify(id)}: not found`);
      }
      removeFromLease(tx, { namespace, lease: id }, parsed);
      tx.dirty();
    });
  }

  listResources(namespace: string, id: string): LeaseResource[] {
    return this.#db.view((tx) => {
      if (!leaseExists(tx, namespace, id)) {
        throw new NotFoundError(`lease ${JSON.stringify(id)}: not found`);
      }
      const rows = tx.all<LeaseResource>(
        "SELECT id, type FROM lease_resources WHERE namespace = ? AND lease = ?",
        namespace,
        id,
      );
      // containerd lists content, then ingests, then snapshots per snapshotter.
      const rank = (type: string) =>
        type === RESOURCE_CONTENT ? 0 : type === RESOURCE_INGESTS ? 1 : 2;
      return rows
        .map((r) => ({ id: r.id, type: r.type }))
        .sort((a, b) =>
          rank(a.type) - rank(b.type) || a.type.localeCompare(b.type) || a.id.localeCompare(b.id)
        );
    });
  }
}
