/**
 * The metadata schema as an ordered list of migrations. A database records the version it
 * reached in `schema_version`; boot applies the missing ones in one transaction, so a crash
 * mid-migration leaves the previous version intact. Append new migrations at the end, never
 * edit a released one: images, containers and snapshots already have their tables here, so
 * those issues fill rows rather than change the schema, and anything else gets a new entry.
 *
 * Every object table is keyed by namespace first; labels live in one table per object kind
 * whose rows go with the object (ON DELETE CASCADE); object rows go with their namespace.
 * Times are milliseconds since the epoch (UTC).
 *
 * @module
 */
import type { Tx } from "./api.ts";

/** One step of the schema. */
export interface Migration {
  /** The version the database has after this step (1, 2, 3 … without gaps). */
  readonly version: number;
  /** What the step does, for logs. */
  readonly description: string;
  /** Apply the step; runs inside the migration transaction. */
  up(tx: Tx): void;
}

const V1_TABLES = `
CREATE TABLE namespaces (
  name TEXT NOT NULL PRIMARY KEY,
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE namespace_labels (
  namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (namespace, key)
) STRICT, WITHOUT ROWID;

CREATE TABLE content (
  namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  digest TEXT NOT NULL,
  size INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, digest)
) STRICT, WITHOUT ROWID;
CREATE INDEX content_by_digest ON content(digest);

CREATE TABLE content_labels (
  namespace TEXT NOT NULL,
  digest TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (namespace, digest, key),
  FOREIGN KEY (namespace, digest) REFERENCES content(namespace, digest) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX content_labels_by_key ON content_labels(key);

CREATE TABLE ingests (
  namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  ref TEXT NOT NULL,
  bref TEXT NOT NULL UNIQUE,
  expected TEXT NOT NULL DEFAULT '',
  size INTEGER NOT NULL DEFAULT 0,
  expire_at INTEGER,
  PRIMARY KEY (namespace, ref)
) STRICT;

CREATE TABLE leases (
  namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE lease_labels (
  namespace TEXT NOT NULL,
  lease TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (namespace, lease, key),
  FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE lease_resources (
  namespace TEXT NOT NULL,
  lease TEXT NOT NULL,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  PRIMARY KEY (namespace, lease, type, id),
  FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE images (
  namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  name TEXT NOT NULL,
  target_media_type TEXT NOT NULL DEFAULT '',
  target_digest TEXT NOT NULL DEFAULT '',
  target_size INTEGER NOT NULL DEFAULT 0,
  target_annotations TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE image_labels (
  namespace TEXT NOT NULL,
  image TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (namespace, image, key),
  FOREIGN KEY (namespace, image) REFERENCES images(namespace, name) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE containers (
  namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  id TEXT NOT NULL,
  image TEXT NOT NULL DEFAULT '',
  runtime_name TEXT NOT NULL DEFAULT '',
  runtime_options BLOB,
  spec BLOB,
  snapshotter TEXT NOT NULL DEFAULT '',
  snapshot_key TEXT NOT NULL DEFAULT '',
  sandbox_id TEXT NOT NULL DEFAULT '',
  extensions BLOB,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE container_labels (
  namespace TEXT NOT NULL,
  container TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (namespace, container, key),
  FOREIGN KEY (namespace, container) REFERENCES containers(namespace, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE snapshots (
  namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
  snapshotter TEXT NOT NULL,
  key TEXT NOT NULL,
  backend_key TEXT NOT NULL,
  parent TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (namespace, snapshotter, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX snapshots_by_backend_key ON snapshots(snapshotter, backend_key);

CREATE TABLE snapshot_labels (
  namespace TEXT NOT NULL,
  snapshotter TEXT NOT NULL,
  snapshot TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (namespace, snapshotter, snapshot, key),
  FOREIGN KEY (namespace, snapshotter, snapshot)
    REFERENCES snapshots(namespace, snapshotter, key) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE counters (
  name TEXT NOT NULL PRIMARY KEY,
  value INTEGER NOT NULL
) STRICT;
`;

/**
 * Every migration, in order. The daemon refuses a database whose version is newer than the
 * last entry (a downgrade would misread it).
 */
export const MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    version: 1,
    description:
      "namespaces, content, ingests, leases, images, containers, snapshots and their labels",
    up(tx: Tx) {
      for (const statement of splitStatements(V1_TABLES)) tx.run(statement);
    },
  },
]);

/** Split a script of `;`-terminated statements (no `;` inside literals in ours). */
export function splitStatements(script: string): string[] {
  return script.split(";").map((s) => s.trim()).filter((s) => s.length > 0);
}
