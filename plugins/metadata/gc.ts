/**
 * Garbage collection over the metadata graph: containerd's metadata/gc.go and gc/gc.go.
 *
 * Roots: unexpired leases (and what they hold), objects labelled `containerd.io/gc.root`,
 * ingests whose expiry is in the future, image targets and container snapshots. Edges:
 * `containerd.io/gc.ref.content` (alone, or with a `.name` or `/name` suffix) → a digest in
 * the same namespace; `containerd.io/gc.ref.snapshot.<snapshotter>` (optionally `/name`) → a
 * snapshot key; a snapshot → its parent; an ingest → the blob it shares. A lease labelled
 * `containerd.io/gc.flat` holds its objects "flat": their labels are not followed.
 *
 * The root set and the edges come from a list of {@link GCProvider}s, one per kind of row,
 * so images, containers and snapshots plug theirs in without touching the collector. Mark
 * and sweep run in one synchronous transaction: nothing can change the graph in between.
 *
 * @module
 */
import type { GCNode, GCProvider, Labels, Tx } from "./api.ts";
import { RESOURCE_CONTENT, RESOURCE_INGESTS, RESOURCE_SNAPSHOTS } from "./leases.ts";

/** Label making an object a root. */
export const LABEL_GC_ROOT = "containerd.io/gc.root";
/** Label prefix of content references. */
export const LABEL_GC_REF_CONTENT = "containerd.io/gc.ref.content";
/** Label prefix of snapshot references (`…snapshot.<snapshotter>[/name]`). */
export const LABEL_GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot.";
/** Lease label: RFC 3339 time after which the lease no longer holds anything. */
export const LABEL_GC_EXPIRE = "containerd.io/gc.expire";
/** Lease label: hold objects without following their labels. */
export const LABEL_GC_FLAT = "containerd.io/gc.flat";

/** Node types of the core graph. */
export const NODE = Object.freeze({
  content: "content",
  snapshot: "snapshot",
  lease: "lease",
  ingest: "ingest",
  image: "image",
  container: "container",
});

/** A node's identity in the seen set (flat and non-flat are explored separately). */
function seenKey(node: GCNode): string {
  return `${node.flat ? "f" : "n"}\u0000${node.type}\u0000${node.namespace}\u0000${node.key}`;
}

/** A node's identity in the reachable set (flatness stripped, as containerd's type mask). */
export function nodeKey(node: GCNode): string {
  return `${node.type}\u0000${node.namespace}\u0000${node.key}`;
}

/**
 * The nodes the `containerd.io/gc.ref.*` labels of an object point to, in its namespace.
 * Exported for tests and for providers of new kinds of rows.
 */
export function labelReferences(
  namespace: string,
  labels: Readonly<Labels>,
  emit: (node: GCNode) => void,
): void {
  for (const [key, value] of Object.entries(labels)) {
    if (key.startsWith(LABEL_GC_REF_CONTENT)) {
      const rest = key.slice(LABEL_GC_REF_CONTENT.length);
      if (rest === "" || rest.startsWith(".") || rest.startsWith("/")) {
        emit({ type: NODE.content, namespace, key: value });
      }
    } else if (key.startsWith(LABEL_GC_REF_SNAPSHOT)) {
      let snapshotter = key.slice(LABEL_GC_REF_SNAPSHOT.length);
      const slash = snapshotter.indexOf("/");
      if (slash >= 0) snapshotter = snapshotter.slice(0, slash);
      if (snapshotter !== "") {
        emit({ type: NODE.snapshot, namespace, key: `${snapshotter}/${value}` });
      }
    }
  }
}

/** The reference labels of one object from a label table, as a map. */
function refLabels(tx: Tx, sql: string, ...ids: string[]): Labels {
  const labels: Labels = {};
  for (const row of tx.all<{ key: string; value: string }>(sql, ...ids)) {
    labels[row.key] = row.value;
  }
  return labels;
}

// Reference labels sort between "containerd.io/gc.ref." and "containerd.io/gc.ref/".
const REF_RANGE = "key >= 'containerd.io/gc.ref.' AND key < 'containerd.io/gc.ref/'";

/**
 * Tri-colour marking from `roots`, following `references`. Returns the reachable set keyed
 * by {@link nodeKey}. Cycles are fine: every node is explored once per flatness.
 */
export function mark(
  roots: readonly GCNode[],
  references: (node: GCNode, emit: (node: GCNode) => void) => void,
): Map<string, GCNode> {
  const grays: GCNode[] = [];
  const seen = new Set<string>();
  for (const root of roots) {
    const key = seenKey(root);
    if (seen.has(key)) continue;
    seen.add(key);
    grays.push(root);
  }
  const reachable = new Map<string, GCNode>();
  while (grays.length > 0) {
    const node = grays.pop() as GCNode;
    references(node, (target) => {
      const key = seenKey(target);
      if (seen.has(key)) return;
      seen.add(key);
      grays.push(target);
    });
    const strip = nodeKey(node);
    if (!reachable.has(strip)) reachable.set(strip, { ...node, flat: false });
  }
  return reachable;
}

/** What a sweep removed. */
export interface SweepResult {
  removed: GCNode[];
}

/**
 * Mark from every provider's roots and remove every node a provider lists that was not
 * reached. Must run inside one write transaction.
 */
export function markAndSweep(tx: Tx, providers: readonly GCProvider[], now: Date): SweepResult {
  const roots: GCNode[] = [];
  for (const provider of providers) provider.roots?.(tx, now, (node) => roots.push(node));
  const reachable = mark(roots, (node, emit) => {
    for (const provider of providers) provider.references?.(tx, node, emit);
  });
  const removed: GCNode[] = [];
  for (const provider of providers) {
    if (!provider.all || !provider.remove) continue;
    const candidates: GCNode[] = [];
    provider.all(tx, (node) => candidates.push(node));
    for (const node of candidates) {
      if (reachable.has(nodeKey(node))) continue;
      provider.remove(tx, node);
      removed.push(node);
    }
  }
  return { removed };
}

function leaseExpired(labels: Readonly<Labels>, now: Date): boolean {
  const expire = labels[LABEL_GC_EXPIRE];
  if (expire === undefined) return false;
  const at = Date.parse(expire);
  // An unparsable expiry is ignored, as containerd logs and keeps the lease.
  return Number.isFinite(at) && now.getTime() > at;
}

/** Leases: unexpired ones are roots and hold their resources; expired ones are swept. */
export const leaseProvider: GCProvider = Object.freeze<GCProvider>({
  name: "leases",
  roots(tx, now, emit) {
    const leases = tx.all<{ namespace: string; id: string }>(
      "SELECT namespace, id FROM leases ORDER BY namespace, id",
    );
    for (const { namespace, id } of leases) {
      const labels = refLabels(
        tx,
        `SELECT key, value FROM lease_labels WHERE namespace = ? AND lease = ?
         AND key IN ('${LABEL_GC_EXPIRE}', '${LABEL_GC_FLAT}')`,
        namespace,
        id,
      );
      if (leaseExpired(labels, now)) continue;
      const flat = Object.hasOwn(labels, LABEL_GC_FLAT);
      emit({ type: NODE.lease, namespace, key: id });
      const resources = tx.all<{ type: string; id: string }>(
        "SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ?",
        namespace,
        id,
      );
      for (const resource of resources) {
        if (resource.type === RESOURCE_CONTENT) {
          emit({ type: NODE.content, namespace, key: resource.id, flat });
        } else if (resource.type === RESOURCE_INGESTS) {
          emit({ type: NODE.ingest, namespace, key: resource.id });
        } else if (resource.type.startsWith(`${RESOURCE_SNAPSHOTS}/`)) {
          const snapshotter = resource.type.slice(RESOURCE_SNAPSHOTS.length + 1);
          emit({ type: NODE.snapshot, namespace, key: `${snapshotter}/${resource.id}`, flat });
        }
      }
    }
  },
  all(tx, emit) {
    for (
      const row of tx.all<{ namespace: string; id: string }>("SELECT namespace, id FROM leases")
    ) {
      emit({ type: NODE.lease, namespace: row.namespace, key: row.id });
    }
  },
  remove(tx, node) {
    if (node.type !== NODE.lease) return;
    tx.run("DELETE FROM leases WHERE namespace = ? AND id = ?", node.namespace, node.key);
  },
});

/** Content rows: gc.root ones are roots; labels are edges; unreached rows are swept. */
export const contentProvider: GCProvider = Object.freeze<GCProvider>({
  name: "content",
  roots(tx, _now, emit) {
    const rows = tx.all<{ namespace: string; digest: string }>(
      "SELECT namespace, digest FROM content_labels WHERE key = ?",
      LABEL_GC_ROOT,
    );
    for (const row of rows) emit({ type: NODE.content, namespace: row.namespace, key: row.digest });
  },
  references(tx, node, emit) {
    if (node.type !== NODE.content || node.flat) return;
    const labels = refLabels(
      tx,
      `SELECT key, value FROM content_labels WHERE namespace = ? AND digest = ? AND ${REF_RANGE}`,
      node.namespace,
      node.key,
    );
    labelReferences(node.namespace, labels, emit);
  },
  all(tx, emit) {
    for (
      const row of tx.all<{ namespace: string; digest: string }>(
        "SELECT namespace, digest FROM content",
      )
    ) {
      emit({ type: NODE.content, namespace: row.namespace, key: row.digest });
    }
  },
  remove(tx, node) {
    if (node.type !== NODE.content) return;
    tx.run("DELETE FROM content WHERE namespace = ? AND digest = ?", node.namespace, node.key);
    tx.dirty("content");
  },
});

/** Ingests: unexpired ones are roots; a shared ingest holds its blob; the rest are swept. */
export const ingestProvider: GCProvider = Object.freeze<GCProvider>({
  name: "ingests",
  roots(tx, now, emit) {
    const rows = tx.all<{ namespace: string; ref: string }>(
      "SELECT namespace, ref FROM ingests WHERE expire_at IS NOT NULL AND expire_at > ?",
      now.getTime(),
    );
    for (const row of rows) emit({ type: NODE.ingest, namespace: row.namespace, key: row.ref });
  },
  references(tx, node, emit) {
    if (node.type !== NODE.ingest) return;
    const row = tx.get<{ expected: string }>(
      "SELECT expected FROM ingests WHERE namespace = ? AND ref = ?",
      node.namespace,
      node.key,
    );
    if (row && row.expected !== "") {
      emit({ type: NODE.content, namespace: node.namespace, key: row.expected });
    }
  },
  all(tx, emit) {
    for (
      const row of tx.all<{ namespace: string; ref: string }>("SELECT namespace, ref FROM ingests")
    ) {
      emit({ type: NODE.ingest, namespace: row.namespace, key: row.ref });
    }
  },
  remove(tx, node) {
    if (node.type !== NODE.ingest) return;
    tx.run("DELETE FROM ingests WHERE namespace = ? AND ref = ?", node.namespace, node.key);
    tx.dirty("content");
  },
});

/** Images: every image roots its target and what its labels reference. Never swept. */
export const imageProvider: GCProvider = Object.freeze<GCProvider>({
  name: "images",
  roots(tx, _now, emit) {
    const rows = tx.all<{ namespace: string; name: string; target_digest: string }>(
      "SELECT namespace, name, target_digest FROM images",
    );
    for (const row of rows) {
      if (row.target_digest !== "") {
        emit({ type: NODE.content, namespace: row.namespace, key: row.target_digest });
      }
      const labels = refLabels(
        tx,
        `SELECT key, value FROM image_labels WHERE namespace = ? AND image = ? AND ${REF_RANGE}`,
        row.namespace,
        row.name,
      );
      labelReferences(row.namespace, labels, emit);
    }
  },
});

/** Containers: every container roots its snapshot and what its labels reference. */
export const containerProvider: GCProvider = Object.freeze<GCProvider>({
  name: "containers",
  roots(tx, _now, emit) {
    const rows = tx.all<
      { namespace: string; id: string; snapshotter: string; snapshot_key: string }
    >("SELECT namespace, id, snapshotter, snapshot_key FROM containers");
    for (const row of rows) {
      if (row.snapshotter !== "") {
        emit({
          type: NODE.snapshot,
          namespace: row.namespace,
          key: `${row.snapshotter}/${row.snapshot_key}`,
        });
      }
      const labels = refLabels(
        tx,
        `SELECT key, value FROM container_labels WHERE namespace = ? AND container = ? AND ${REF_RANGE}`,
        row.namespace,
        row.id,
      );
      labelReferences(row.namespace, labels, emit);
    }
  },
});

function splitSnapshotKey(key: string): [string, string] | undefined {
  const slash = key.indexOf("/");
  if (slash <= 0) return undefined;
  return [key.slice(0, slash), key.slice(slash + 1)];
}

/**
 * Snapshot rows: gc.root ones are roots; parent and labels are edges (a flat snapshot
 * follows only its parent); unreached rows are swept and their snapshotter marked dirty.
 */
export const snapshotProvider: GCProvider = Object.freeze<GCProvider>({
  name: "snapshots",
  roots(tx, _now, emit) {
    const rows = tx.all<{ namespace: string; snapshotter: string; snapshot: string }>(
      "SELECT namespace, snapshotter, snapshot FROM snapshot_labels WHERE key = ?",
      LABEL_GC_ROOT,
    );
    for (const row of rows) {
      emit({
        type: NODE.snapshot,
        namespace: row.namespace,
        key: `${row.snapshotter}/${row.snapshot}`,
      });
    }
  },
  references(tx, node, emit) {
    if (node.type !== NODE.snapshot) return;
    const parts = splitSnapshotKey(node.key);
    if (!parts) return;
    const [snapshotter, key] = parts;
    const row = tx.get<{ parent: string }>(
      "SELECT parent FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
      node.namespace,
      snapshotter,
      key,
    );
    if (!row) return;
    if (row.parent !== "") {
      emit({
        type: NODE.snapshot,
        namespace: node.namespace,
        key: `${snapshotter}/${row.parent}`,
        ...(node.flat ? { flat: true } : {}),
      });
    }
    if (node.flat) return;
    const labels = refLabels(
      tx,
      `SELECT key, value FROM snapshot_labels WHERE namespace = ? AND snapshotter = ? AND snapshot = ? AND ${REF_RANGE}`,
      node.namespace,
      snapshotter,
      key,
    );
    labelReferences(node.namespace, labels, emit);
  },
  all(tx, emit) {
    const rows = tx.all<{ namespace: string; snapshotter: string; key: string }>(
      "SELECT namespace, snapshotter, key FROM snapshots",
    );
    for (const row of rows) {
      emit({ type: NODE.snapshot, namespace: row.namespace, key: `${row.snapshotter}/${row.key}` });
    }
  },
  remove(tx, node) {
    if (node.type !== NODE.snapshot) return;
    const parts = splitSnapshotKey(node.key);
    if (!parts) return;
    tx.run(
      "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
      node.namespace,
      parts[0],
      parts[1],
    );
    tx.dirty(`snapshotter/${parts[0]}`);
  },
});

/** The providers every metadata store starts with, in sweep order. */
export function coreProviders(): GCProvider[] {
  return [
    leaseProvider,
    imageProvider,
    containerProvider,
    contentProvider,
    ingestProvider,
    snapshotProvider,
  ];
}
