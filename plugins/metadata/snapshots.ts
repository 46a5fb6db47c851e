/**
 * The metadata snapshotter: containerd's metadata/snapshot.go over SQLite. It puts
 * namespaces, labels, leases and the GC's references in front of a namespace-free
 * {@link Snapshotter} (native, overlayfs): a snapshot `key` of namespace `ns` is stored in the
 * backend under the key `<ns>/<sequence>/<key>`, so namespaces never see each other's
 * snapshots and a name can be reused after a removal without meeting the old backend
 * snapshot. Parents are resolved in the caller's namespace and handed to the backend by
 * their backend keys.
 *
 * Rows live in the `snapshots` and `snapshot_labels` tables; the GC's snapshot provider
 * (gc.ts) roots `containerd.io/gc.root` snapshots, follows parents and
 * `containerd.io/gc.ref.*` labels, and deletes unreachable rows. {@link
 * MetadataSnapshotter.collect} is the backend half, registered as the metadata store's
 * backend cleanup for `snapshotter/<name>`: it removes backend snapshots that no row of any
 * namespace names (children before parents), then lets the backend free their directories.
 *
 * Ordering, as containerd 2's createSnapshot: a first transaction checks the request and
 * reserves a backend key, the backend creates the snapshot (an async call cannot run inside a
 * node:sqlite transaction), a second transaction inserts the row — or the backend snapshot is
 * removed again when that fails. A readers–writer lock keeps the backend sweep out while any
 * of this runs, so a backend snapshot is never swept between its creation and its row.
 *
 * Error texts follow containerd 1.6: `snapshot K does not exist` (not found), `snapshot "K"`
 * (already exists), `parent snapshot P does not exist` (not found), `cannot remove snapshot
 * with child` (failed precondition), `cannot update "f" field on snapshot "K"` (invalid
 * argument). Backend errors keep their kind; backend keys in their text are replaced by the
 * caller's names.
 *
 * @example
 * ```ts
 * import { MetadataSnapshotter } from "./snapshots.ts";
 * const sn = new MetadataSnapshotter(metadata, "native", nativeSnapshotter);
 * const scope = { namespace: "default" };
 * const mounts = await sn.prepare(scope, "extract-1 sha256:…", "", {});
 * await sn.commit(scope, "sha256:…", "extract-1 sha256:…");
 * ```
 * @module
 */
import {
  AlreadyExistsError,
  Code,
  codeOf,
  ErrdefsError,
  FailedPreconditionError,
  fromCode,
  InvalidArgumentError,
  isAlreadyExists,
  isNotFound,
  NotFoundError,
} from "../../server/errdefs.ts";
import { type Adaptor, parseAll } from "../../server/filters.ts";
import { type Logger, silentLogger } from "../../server/log.ts";
import {
  kindName,
  type Mount,
  type SnapshotInfo,
  type Snapshotter,
  type Usage,
  type WalkFn,
} from "../snapshots/api.ts";
import type { Labels, MetadataStore, Scope, Tx } from "./api.ts";
import { readLabels, withoutEmpty, writeLabels } from "./labels.ts";
import { addToLease, removeFromLease, RESOURCE_SNAPSHOTS } from "./leases.ts";
import { RWLock } from "./rwlock.ts";
import { validateIdentifier, validateLabels } from "./validate.ts";

/** Label naming the committed snapshot a prepare aims at (remote snapshotters, unpackers). */
export const LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref";
/** Labels with this prefix are handed to the backend snapshotter too (containerd's rule). */
export const INHERITED_LABEL_PREFIX = "containerd.io/snapshot/";
/** The backend store name the GC marks dirty for a snapshotter (see gc.ts). */
export function snapshotterStore(name: string): string {
  return `snapshotter/${name}`;
}

/** The labels a backend snapshotter is given: `containerd.io/snapshot/*` and the ref label. */
export function inheritedLabels(labels: Readonly<Labels>): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels)) {
    if (k.startsWith(INHERITED_LABEL_PREFIX) || k === LABEL_SNAPSHOT_REF) out[k] = v;
  }
  return out;
}

/** The backend key of a namespace's snapshot (containerd's createKey). */
export function backendKey(namespace: string, sequence: number, key: string): string {
  return `${namespace}/${sequence}/${key}`;
}

/** A snapshot's filter adaptor over `kind`, `name`, `parent` and `labels.<k>` (containerd's). */
export function snapshotAdaptor(info: SnapshotInfo): Adaptor {
  return (fieldpath) => {
    const [head, ...rest] = fieldpath;
    switch (head) {
      case "kind": {
        const name = kindName(info.kind);
        return name === "unknown" ? { value: "", present: false } : { value: name, present: true };
      }
      case "name":
        return { value: info.name, present: true };
      case "parent":
        return { value: info.parent, present: true };
      case "labels": {
        const key = rest.join(".");
        if (rest.length === 0 || !Object.hasOwn(info.labels, key)) {
          return { value: "", present: false };
        }
        return { value: info.labels[key] ?? "", present: true };
      }
      default:
        return { value: "", present: false };
    }
  };
}

interface SnapshotRow {
  key: string;
  backend_key: string;
  parent: string;
  created_at: number;
  updated_at: number;
}

const SELECT_ROW =
  "SELECT key, backend_key, parent, created_at, updated_at FROM snapshots WHERE namespace = ? AND snapshotter = ?";

function doesNotExist(key: string): NotFoundError {
  return new NotFoundError(`snapshot ${key} does not exist`);
}

/** Options of {@link MetadataSnapshotter}. */
export interface MetadataSnapshotterOptions {
  /** Where sweep notes and cleanup failures go. Default: silent. */
  log?: Logger;
}

/**
 * One snapshotter as namespaces see it. Every method takes the request's {@link Scope}
 * (namespace, and the lease that new snapshots join).
 */
export class MetadataSnapshotter {
  /** The snapshotter's name (`native`, `overlayfs`), as requests name it. */
  readonly name: string;
  readonly #md: MetadataStore;
  readonly #backend: Snapshotter;
  readonly #log: Logger;
  /** Shared: a request between its reservation and its row. Exclusive: the backend sweep. */
  readonly #lock = new RWLock();

  /** Wrap `backend`, known to clients as `name`, with the metadata store's rows. */
  constructor(
    md: MetadataStore,
    name: string,
    backend: Snapshotter,
    options: MetadataSnapshotterOptions = {},
  ) {
    this.#md = md;
    this.name = name;
    this.#backend = backend;
    this.#log = options.log ?? silentLogger();
  }

  /** The backend store name the GC marks dirty when it removes this snapshotter's rows. */
  get store(): string {
    return snapshotterStore(this.name);
  }

  /** The lease resource type of this snapshotter's snapshots (`snapshots/<name>`). */
  get resourceType(): string {
    return `${RESOURCE_SNAPSHOTS}/${this.name}`;
  }

  #row(tx: Tx, namespace: string, key: string): SnapshotRow | undefined {
    return tx.get<SnapshotRow>(`${SELECT_ROW} AND key = ?`, namespace, this.name, key);
  }

  #mustRow(tx: Tx, namespace: string, key: string): SnapshotRow {
    const row = this.#row(tx, namespace, key);
    if (!row) throw doesNotExist(key);
    return row;
  }

  #nextSequence(tx: Tx): number {
    return tx.get<{ value: number }>(
      `INSERT INTO counters(name, value) VALUES (?, 1)
       ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value`,
      `snapshot/${this.name}`,
    )?.value ?? 1;
  }

  /** Map a backend error's text from backend keys to the caller's names. */
  #translate(err: unknown, names: ReadonlyMap<string, string>): unknown {
    if (!(err instanceof Error)) return err;
    let message = err.message;
    for (const [bkey, key] of names) {
      if (bkey !== "") message = message.split(bkey).join(key);
    }
    if (message === err.message) return err;
    if (err instanceof ErrdefsError) {
      const typed = fromCode(err.code, message);
      typed.cause = err;
      return typed;
    }
    return new Error(message, { cause: err });
  }

  /** The merged info of a row: names and times from the row, kind and labels from the backend. */
  #merge(row: SnapshotRow, labels: Labels, backend: SnapshotInfo): SnapshotInfo {
    return {
      name: row.key,
      parent: row.parent,
      kind: backend.kind,
      created: new Date(row.created_at),
      updated: new Date(row.updated_at),
      labels: { ...backend.labels, ...labels },
    };
  }

  async #backendStat(key: string, bkey: string): Promise<SnapshotInfo> {
    try {
      return await this.#backend.stat(bkey);
    } catch (err) {
      if (isNotFound(err)) throw doesNotExist(key);
      throw this.#translate(err, new Map([[bkey, key]]));
    }
  }

  /** Info of the namespace's snapshot `key`. */
  async stat(scope: Scope, key: string): Promise<SnapshotInfo> {
    const { row, labels } = this.#md.view((tx) => {
      const row = this.#mustRow(tx, scope.namespace, key);
      return { row, labels: readLabels(tx, "snapshot", [scope.namespace, this.name, key]) };
    });
    return this.#merge(row, labels, await this.#backendStat(key, row.backend_key));
  }

  /**
   * Change labels: `labels.<k>` sets (or with an absent/empty value removes) one label,
   * `labels` or no paths replace them all.
   */
  async update(
    scope: Scope,
    info: { name: string; labels?: Labels },
    paths: readonly string[] = [],
  ): Promise<SnapshotInfo> {
    if (info.name === "") throw new InvalidArgumentError("snapshot name must not be empty");
    const incoming = info.labels ?? {};
    const { row, labels } = this.#md.update((tx) => {
      const row = this.#mustRow(tx, scope.namespace, info.name);
      let labels: Labels = readLabels(tx, "snapshot", [scope.namespace, this.name, info.name]);
      if (paths.length === 0) labels = { ...incoming };
      for (const path of paths) {
        if (path.startsWith("labels.")) {
          const k = path.slice("labels.".length);
          labels[k] = Object.hasOwn(incoming, k) ? incoming[k] ?? "" : "";
        } else if (path === "labels") {
          labels = { ...incoming };
        } else {
          throw new InvalidArgumentError(
            `cannot update ${JSON.stringify(path)} field on snapshot ${JSON.stringify(info.name)}`,
          );
        }
      }
      labels = withoutEmpty(labels);
      validateLabels(labels, "info.Labels");
      const now = Math.max(Date.now(), row.created_at);
      tx.run(
        "UPDATE snapshots SET updated_at = ? WHERE namespace = ? AND snapshotter = ? AND key = ?",
        now,
        scope.namespace,
        this.name,
        info.name,
      );
      writeLabels(tx, "snapshot", [scope.namespace, this.name, info.name], labels);
      return { row: { ...row, updated_at: now }, labels };
    });
    let backend: SnapshotInfo;
    const touchesBackend = paths.length === 0 ||
      paths.some((p) =>
        p === "labels" || p.startsWith(`labels.${INHERITED_LABEL_PREFIX}`) ||
        p === `labels.${LABEL_SNAPSHOT_REF}`
      );
    if (touchesBackend) {
      const inherited = inheritedLabels(labels);
      try {
        backend = await this.#backend.update(
          { name: row.backend_key, labels: inherited },
          paths.length === 0 ? [] : ["labels"],
        );
      } catch (err) {
        if (isNotFound(err)) throw doesNotExist(info.name);
        throw this.#translate(err, new Map([[row.backend_key, info.name]]));
      }
    } else {
      backend = await this.#backendStat(info.name, row.backend_key);
    }
    return this.#merge(row, labels, backend);
  }

  /** Disk use of the snapshot's own layer, as the backend measures it. */
  async usage(scope: Scope, key: string): Promise<Usage> {
    const bkey = this.#md.view((tx) => this.#mustRow(tx, scope.namespace, key).backend_key);
    try {
      return await this.#backend.usage(bkey);
    } catch (err) {
      if (isNotFound(err)) throw doesNotExist(key);
      throw this.#translate(err, new Map([[bkey, key]]));
    }
  }

  /** The mounts of an active snapshot or view. */
  async mounts(scope: Scope, key: string): Promise<Mount[]> {
    const bkey = this.#md.view((tx) => this.#mustRow(tx, scope.namespace, key).backend_key);
    try {
      return await this.#backend.mounts(bkey);
    } catch (err) {
      if (isNotFound(err)) throw doesNotExist(key);
      throw this.#translate(err, new Map([[bkey, key]]));
    }
  }

  /** Create the active snapshot `key` on the committed `parent` ("" for none). */
  prepare(scope: Scope, key: string, parent = "", labels: Labels = {}): Promise<Mount[]> {
    return this.#create(scope, key, parent, labels, false);
  }

  /** Create the read-only view `key` of the committed `parent` ("" for an empty one). */
  view(scope: Scope, key: string, parent = "", labels: Labels = {}): Promise<Mount[]> {
    return this.#create(scope, key, parent, labels, true);
  }

  async #create(
    scope: Scope,
    key: string,
    parent: string,
    rawLabels: Labels,
    readonly: boolean,
  ): Promise<Mount[]> {
    const namespace = scope.namespace;
    validateIdentifier(namespace);
    if (key === "") throw new InvalidArgumentError("snapshot key must not be empty");
    const labels = withoutEmpty(rawLabels);
    validateLabels(labels, "info.Labels");
    const target = labels[LABEL_SNAPSHOT_REF] ?? "";
    return await this.#lock.shared(async () => {
      const reserved = this.#md.update((tx) => {
        this.#md.ensureNamespace(tx, namespace);
        if (target !== "" && this.#row(tx, namespace, target)) {
          addToLease(tx, scope, { type: this.resourceType, id: target });
          return { exists: `target snapshot ${JSON.stringify(target)}` } as const;
        }
        if (this.#row(tx, namespace, key)) {
          addToLease(tx, scope, { type: this.resourceType, id: key });
          return { exists: `snapshot ${JSON.stringify(key)}` } as const;
        }
        let bparent = "";
        if (parent !== "") {
          const prow = this.#row(tx, namespace, parent);
          if (!prow) throw new NotFoundError(`parent snapshot ${parent} does not exist`);
          bparent = prow.backend_key;
        }
        return { bkey: backendKey(namespace, this.#nextSequence(tx), key), bparent } as const;
      });
      // The already-exists answer is given after the lease was taken (committed above).
      if ("exists" in reserved) throw new AlreadyExistsError(reserved.exists);
      const { bkey, bparent } = reserved;
      const names = new Map([[bkey, key], [bparent, parent]]);
      let mounts: Mount[];
      try {
        mounts = readonly
          ? await this.#backend.view(bkey, bparent, inheritedLabels(labels))
          : await this.#backend.prepare(bkey, bparent, inheritedLabels(labels));
      } catch (err) {
        if (isAlreadyExists(err)) {
          // The backend key is new by construction; an exists answer is the backend's bug.
          throw new Error(
            `unexpected error from snapshotter ${this.name} preparing ${JSON.stringify(key)}: ${
              (err as Error).message
            }`,
            { cause: err },
          );
        }
        throw this.#translate(err, names);
      }
      try {
        this.#md.update((tx) => {
          if (this.#row(tx, namespace, key)) {
            throw new AlreadyExistsError(`snapshot ${JSON.stringify(key)}`);
          }
          if (parent !== "") {
            const prow = this.#row(tx, namespace, parent);
            if (!prow) throw new NotFoundError(`parent snapshot ${parent} does not exist`);
            if (prow.backend_key !== bparent) {
              throw new InvalidArgumentError(
                `parent snapshot ${parent} was replaced while ${JSON.stringify(key)} was prepared`,
              );
            }
          }
          addToLease(tx, scope, { type: this.resourceType, id: key });
          const now = Date.now();
          tx.run(
            `INSERT INTO snapshots(namespace, snapshotter, key, backend_key, parent, created_at,
               updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
            namespace,
            this.name,
            key,
            bkey,
            parent,
            now,
            now,
          );
          writeLabels(tx, "snapshot", [namespace, this.name, key], labels);
        });
      } catch (err) {
        await this.#backend.remove(bkey).catch((cleanup) =>
          this.#log.warn("failed to remove unreferenced snapshot", {
            snapshotter: this.name,
            key: bkey,
            error: cleanup,
          })
        );
        throw err;
      }
      return mounts;
    });
  }

  /**
   * Commit the active snapshot `key` as `name` (labels replaced by `labels`); `key` is gone
   * afterwards. Returns nothing, as containerd's Commit.
   */
  async commit(scope: Scope, name: string, key: string, rawLabels: Labels = {}): Promise<void> {
    const namespace = scope.namespace;
    validateIdentifier(namespace);
    if (name === "") throw new InvalidArgumentError("snapshot name must not be empty");
    const labels = withoutEmpty(rawLabels);
    validateLabels(labels, "info.Labels");
    await this.#lock.shared(async () => {
      const { bkey, nameKey } = this.#md.update((tx) => {
        if (this.#row(tx, namespace, name)) {
          throw new AlreadyExistsError(`snapshot ${JSON.stringify(name)}`);
        }
        const row = this.#mustRow(tx, namespace, key);
        return {
          bkey: row.backend_key,
          nameKey: backendKey(namespace, this.#nextSequence(tx), name),
        };
      });
      try {
        await this.#backend.commit(nameKey, bkey, inheritedLabels(labels));
      } catch (err) {
        if (isNotFound(err)) throw doesNotExist(key);
        throw this.#translate(err, new Map([[bkey, key], [nameKey, name]]));
      }
      try {
        this.#md.update((tx) => {
          if (this.#row(tx, namespace, name)) {
            throw new AlreadyExistsError(`snapshot ${JSON.stringify(name)}`);
          }
          const row = this.#mustRow(tx, namespace, key);
          if (row.backend_key !== bkey) {
            throw new FailedPreconditionError(
              `snapshot ${key} was replaced while it was committed`,
            );
          }
          addToLease(tx, scope, { type: this.resourceType, id: name });
          const now = Date.now();
          tx.run(
            `INSERT INTO snapshots(namespace, snapshotter, key, backend_key, parent, created_at,
               updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
            namespace,
            this.name,
            name,
            nameKey,
            row.parent,
            now,
            now,
          );
          writeLabels(tx, "snapshot", [namespace, this.name, name], labels);
          tx.run(
            "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
            namespace,
            this.name,
            key,
          );
          removeFromLease(tx, scope, { type: this.resourceType, id: key });
        });
      } catch (err) {
        // The backend committed `nameKey` but no row names it: the next sweep removes it.
        this.#md.update((tx) => tx.dirty(this.store));
        this.#log.warn("snapshot committed in the backend but not recorded", {
          snapshotter: this.name,
          key,
          name,
          error: err,
        });
        throw err;
      }
    });
  }

  /**
   * Remove the namespace's snapshot `key` (it must have no children). The backend snapshot
   * goes at the next garbage collection, as in containerd.
   */
  // deno-lint-ignore require-await
  async remove(scope: Scope, key: string): Promise<void> {
    const namespace = scope.namespace;
    this.#md.update((tx) => {
      this.#mustRow(tx, namespace, key);
      const child = tx.get(
        "SELECT key FROM snapshots WHERE namespace = ? AND snapshotter = ? AND parent = ? LIMIT 1",
        namespace,
        this.name,
        key,
      );
      if (child) throw new FailedPreconditionError("cannot remove snapshot with child");
      tx.run(
        "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
        namespace,
        this.name,
        key,
      );
      removeFromLease(tx, scope, { type: this.resourceType, id: key });
      tx.dirty(this.store);
    });
  }

  /**
   * Call `fn` for each of the namespace's snapshots matching any of `filters` (kind, name,
   * parent, labels.<k>), by key. Rows are read first, so `fn` may call back in.
   */
  async walk(scope: Scope, fn: WalkFn, filters: readonly string[] = []): Promise<void> {
    const filter = parseAll(filters);
    const rows = this.#md.view((tx) =>
      tx.all<SnapshotRow>(`${SELECT_ROW} ORDER BY key`, scope.namespace, this.name).map((row) => ({
        row,
        labels: readLabels(tx, "snapshot", [scope.namespace, this.name, row.key]),
      }))
    );
    for (const { row, labels } of rows) {
      let backend: SnapshotInfo;
      try {
        backend = await this.#backend.stat(row.backend_key);
      } catch (err) {
        if (isNotFound(err)) continue;
        throw this.#translate(err, new Map([[row.backend_key, row.key]]));
      }
      const info = this.#merge(row, labels, backend);
      if (filter.match(snapshotAdaptor(info))) await fn(info);
    }
  }

  /** Let the backend free space it no longer needs (the Cleanup RPC). */
  cleanup(): Promise<void> {
    return this.#lock.exclusive(() => this.#backend.cleanup());
  }

  /**
   * The backend half of garbage collection: remove every backend snapshot no row of any
   * namespace names — children first, so a parent goes in the same run — then let the
   * backend free the directories. Returns how many snapshots were removed.
   */
  collect(): Promise<number> {
    return this.#lock.exclusive(async () => {
      const seen = new Set(
        this.#md.view((tx) =>
          tx.all<{ backend_key: string }>(
            "SELECT backend_key FROM snapshots WHERE snapshotter = ?",
            this.name,
          ).map((r) => r.backend_key)
        ),
      );
      const infos: SnapshotInfo[] = [];
      await this.#backend.walk((info) => {
        infos.push(info);
      });
      const names = new Set(infos.map((i) => i.name));
      const children = new Map<string, SnapshotInfo[]>();
      const roots: SnapshotInfo[] = [];
      for (const info of infos) {
        if (info.parent === "" || !names.has(info.parent)) roots.push(info);
        else {
          const list = children.get(info.parent) ?? [];
          list.push(info);
          children.set(info.parent, list);
        }
      }
      let removed = 0;
      const prune = async (node: SnapshotInfo): Promise<void> => {
        for (const child of children.get(node.name) ?? []) await prune(child);
        if (seen.has(node.name)) return;
        try {
          await this.#backend.remove(node.name);
          removed++;
          this.#log.debug("removed snapshot", { snapshotter: this.name, key: node.name });
        } catch (err) {
          if (codeOf(err) !== Code.FailedPrecondition && !isNotFound(err)) throw err;
          this.#log.warn("snapshot removal failed", {
            snapshotter: this.name,
            key: node.name,
            error: err,
          });
        }
      };
      for (const root of roots) await prune(root);
      await this.#backend.cleanup();
      return removed;
    });
  }
}
