/**
 * Label rows for every object kind, and the field-mask rules Update RPCs share. One helper
 * per operation keeps the "an empty value deletes the label" rule and the `labels.<key>`
 * mask syntax identical across namespaces, content, leases, images and containers.
 *
 * @module
 */
import { InvalidArgumentError } from "../../server/errdefs.ts";
import type { Labels, Tx } from "./api.ts";

/** Where one object kind keeps its labels: the table and the columns naming the object. */
export interface LabelTable {
  readonly table: string;
  readonly keys: readonly string[];
}

/** The label tables of the schema (see migrations.ts). */
export const LABEL_TABLES = Object.freeze(
  {
    namespace: { table: "namespace_labels", keys: ["namespace"] },
    content: { table: "content_labels", keys: ["namespace", "digest"] },
    lease: { table: "lease_labels", keys: ["namespace", "lease"] },
    image: { table: "image_labels", keys: ["namespace", "image"] },
    container: { table: "container_labels", keys: ["namespace", "container"] },
    snapshot: { table: "snapshot_labels", keys: ["namespace", "snapshotter", "snapshot"] },
  } as const satisfies Record<string, LabelTable>,
);

/** An object kind that has labels. */
export type LabelKind = keyof typeof LABEL_TABLES;

function where(kind: LabelKind): { table: string; clause: string; arity: number } {
  const { table, keys } = LABEL_TABLES[kind];
  return { table, clause: keys.map((k) => `${k} = ?`).join(" AND "), arity: keys.length };
}

function checkIds(kind: LabelKind, ids: readonly string[], arity: number): void {
  if (ids.length !== arity) {
    throw new TypeError(`labels of ${kind} are keyed by ${arity} columns, got ${ids.length}`);
  }
}

/** The labels of one object (an empty map when it has none). */
export function readLabels(tx: Tx, kind: LabelKind, ids: readonly string[]): Labels {
  const { table, clause, arity } = where(kind);
  checkIds(kind, ids, arity);
  const labels: Labels = {};
  const rows = tx.all<{ key: string; value: string }>(
    `SELECT key, value FROM ${table} WHERE ${clause} ORDER BY key`,
    ...ids,
  );
  for (const row of rows) labels[row.key] = row.value;
  return labels;
}

/**
 * The labels of every object of `kind` whose leading key columns equal `prefix` (every key
 * column but the last), by the last one: a List reads all labels in one query instead of one
 * per object. Objects without labels are absent from the map.
 */
export function readLabelsOf(
  tx: Tx,
  kind: LabelKind,
  prefix: readonly string[],
): Map<string, Labels> {
  const { table, keys } = LABEL_TABLES[kind];
  checkIds(kind, [...prefix, ""], keys.length);
  const last = keys[keys.length - 1]!;
  const clause = keys.slice(0, -1).map((k) => `${k} = ?`).join(" AND ");
  const rows = tx.values(
    `SELECT ${last}, key, value FROM ${table}${clause ? ` WHERE ${clause}` : ""} ` +
      `ORDER BY ${last}, key`,
    ...prefix,
  );
  const byObject = new Map<string, Labels>();
  for (const [id, key, value] of rows as [string, string, string][]) {
    let labels = byObject.get(id);
    if (labels === undefined) byObject.set(id, labels = {});
    labels[key] = value;
  }
  return byObject;
}

/** Replace all labels of one object; entries with an empty value are not stored. */
export function writeLabels(
  tx: Tx,
  kind: LabelKind,
  ids: readonly string[],
  labels: Readonly<Labels>,
): void {
  const { table, clause, arity } = where(kind);
  checkIds(kind, ids, arity);
  tx.run(`DELETE FROM ${table} WHERE ${clause}`, ...ids);
  const columns = [...LABEL_TABLES[kind].keys, "key", "value"];
  const insert = `INSERT INTO ${table}(${columns.join(", ")}) VALUES (${
    columns.map(() => "?").join(", ")
  })`;
  for (const [key, value] of Object.entries(labels)) {
    if (value === "") continue;
    tx.run(insert, ...ids, key, value);
  }
}

/** Labels without the entries whose value is empty (containerd never stores those). */
export function withoutEmpty(labels: Readonly<Labels>): Labels {
  const out: Labels = {};
  for (const [key, value] of Object.entries(labels)) if (value !== "") out[key] = value;
  return out;
}

/**
 * Apply an update's field mask to labels: `labels.<key>` takes that key from `incoming`
 * (absent or empty removes it), `labels` takes all of `incoming`, no paths takes all of
 * `incoming`. Any other path is refused with the message `unknownPath` builds.
 */
export function applyLabelPaths(
  current: Readonly<Labels>,
  incoming: Readonly<Labels>,
  paths: readonly string[],
  unknownPath: (path: string) => string,
): Labels {
  if (paths.length === 0) return withoutEmpty(incoming);
  let next: Labels = { ...current };
  for (const path of paths) {
    if (path.startsWith("labels.")) {
      const key = path.slice("labels.".length);
      next[key] = Object.hasOwn(incoming, key) ? incoming[key] ?? "" : "";
      continue;
    }
    if (path === "labels") {
      next = { ...incoming };
      continue;
    }
    throw new InvalidArgumentError(unknownPath(path));
  }
  return withoutEmpty(next);
}
