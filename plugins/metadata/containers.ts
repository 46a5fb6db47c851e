/**
 * The containers table: containerd's metadata/containers.go over SQLite. A container is a
 * record — id, labels, image name, runtime (name + options), OCI spec, the snapshotter and
 * snapshot key of its root filesystem, extensions — in one namespace; it has no state (tasks
 * do). While it exists, its snapshot and whatever its `containerd.io/gc.ref.*` labels name
 * stay alive through the GC's container roots (gc.ts `containerProvider`); deleting it marks
 * the store dirty so the scheduler collects the snapshot.
 *
 * Validation and error texts follow containerd 1.6 (create prefixes them with `create container
 * failed validation: `, update with `update failed validation: `): `container.ID: identifier …`,
 * `container.Runtime.Name must be set`, `container.Spec must be set`, `container.Snapshotter
 * must be set if container.SnapshotKey is set`, `container "x": already exists`,
 * `container "x" in namespace "ns": not found` (Get), `container "x": not found` (Update,
 * Delete), `cannot update "f" field on "x"`, `container.Snapshotter field is immutable`,
 * `container.Runtime.Name field is immutable`.
 *
 * Any values (spec, runtime options, extensions) are kept as `{ typeUrl, value }`; the spec
 * ctr writes is `types.containerd.io/opencontainers/runtime-spec/1/Spec` with the OCI spec
 * JSON as value ({@link specJSON} decodes it).
 *
 * @example
 * ```ts
 * import { SqlContainerStore } from "./containers.ts";
 * const containers = new SqlContainerStore(metadata);
 * containers.create("default", {
 *   id: "c1",
 *   image: "docker.io/library/busybox:latest",
 *   runtime: { name: "io.containerd.runc.v2" },
 *   spec: { typeUrl: OCI_SPEC_TYPE_URL, value: new TextEncoder().encode("{}") },
 *   snapshotter: "overlayfs",
 *   snapshotKey: "c1",
 * });
 * containers.list("default", ["runtime.name==io.containerd.runc.v2"]);
 * ```
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from "../../server/errdefs.ts";
import { type Adaptor, adaptRecord, parseAll } from "../../server/filters.ts";
import type { Labels, MetadataStore, Tx } from "./api.ts";
import { readLabels, readLabelsOf, withoutEmpty, writeLabels } from "./labels.ts";
import { validateIdentifier, validateLabels } from "./validate.ts";

/** The type URL of an OCI runtime spec as containerd's clients marshal it. */
export const OCI_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/** A protobuf Any: a type URL and the encoded message (or JSON, for OCI specs). */
export interface AnyValue {
  typeUrl: string;
  value: Uint8Array;
}

/** Which runtime runs the container's tasks, e.g. `io.containerd.runc.v2`. */
export interface ContainerRuntime {
  name: string;
  /** Runtime options (e.g. `containerd.runc.v1.Options`); absent when none were given. */
  options?: AnyValue | undefined;
}

/** A container as the Containers service carries it. */
export interface Container {
  id: string;
  labels: Labels;
  /** Image reference the container was made from ("" when none). */
  image: string;
  runtime: ContainerRuntime;
  /** The runtime spec (always set for a stored container). */
  spec: AnyValue;
  /** Snapshotter of the root filesystem ("" when the rootfs is not a snapshot). */
  snapshotter: string;
  /** Snapshot key of the root filesystem ("" when none). */
  snapshotKey: string;
  createdAt: Date;
  updatedAt: Date;
  extensions: Record<string, AnyValue>;
}

/** What create and update read: a container without its times; only `id` is required here. */
export interface ContainerInput {
  id: string;
  labels?: Labels | undefined;
  image?: string | undefined;
  runtime?: ContainerRuntime | undefined;
  spec?: AnyValue | undefined;
  snapshotter?: string | undefined;
  snapshotKey?: string | undefined;
  extensions?: Record<string, AnyValue> | undefined;
}

/** The containers of every namespace (containerd's `containers.Store`). */
export interface ContainerStore {
  /** NotFoundError `container "x" in namespace "ns": not found`. */
  get(namespace: string, id: string): Container;
  /**
   * The namespace's containers matching any filter (fields `id`, `image`, `runtime.name`,
   * `labels.<k>`), sorted by id. InvalidArgumentError for a malformed filter.
   */
  list(namespace: string, filters?: readonly string[]): Container[];
  /**
   * Add a container; InvalidArgumentError when it fails validation, AlreadyExistsError
   * `container "x": already exists`; creates the namespace implicitly.
   */
  create(namespace: string, container: ContainerInput): Container;
  /**
   * Change a container by field paths: `labels`, `labels.<k>`, `spec`, `image`,
   * `snapshotkey`, `extensions`, `extensions.<k>`; none replaces all of those (and then a
   * different snapshotter or runtime name is InvalidArgumentError: they are immutable). Any
   * other path is InvalidArgumentError `cannot update "p" field on "x"`. NotFoundError when
   * it does not exist.
   */
  update(namespace: string, container: ContainerInput, paths?: readonly string[]): Container;
  /** Remove a container (its snapshot goes at the next GC); NotFoundError when missing. */
  delete(namespace: string, id: string): void;
}

interface ContainerRow {
  id: string;
  image: string;
  runtime_name: string;
  runtime_options: Uint8Array | null;
  spec: Uint8Array | null;
  snapshotter: string;
  snapshot_key: string;
  extensions: Uint8Array | null;
  created_at: number;
  updated_at: number;
}

const SELECT_CONTAINER = `SELECT id, image, runtime_name, runtime_options, spec, snapshotter,
  snapshot_key, extensions, created_at, updated_at FROM containers`;

/** Encode an Any as protobuf bytes (the column format), or null when absent. */
function encodeAny(value: AnyValue | undefined): Uint8Array | null {
  if (value === undefined) return null;
  return toBinary(AnySchema, create(AnySchema, { typeUrl: value.typeUrl, value: value.value }));
}

function decodeAny(bytes: Uint8Array | null): AnyValue | undefined {
  if (bytes === null) return undefined;
  const any = fromBinary(AnySchema, bytes);
  return { typeUrl: any.typeUrl, value: any.value };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** Extensions as a JSON object of `{ typeUrl, value (base64) }`, or null when empty. */
function encodeExtensions(extensions: Readonly<Record<string, AnyValue>>): Uint8Array | null {
  const entries = Object.entries(extensions);
  if (entries.length === 0) return null;
  const out: Record<string, { typeUrl: string; value: string }> = {};
  for (const [key, any] of entries) out[key] = { typeUrl: any.typeUrl, value: toBase64(any.value) };
  return encoder.encode(JSON.stringify(out));
}

function decodeExtensions(bytes: Uint8Array | null, id: string): Record<string, AnyValue> {
  if (bytes === null) return {};
  try {
    const parsed = JSON.parse(decoder.decode(bytes)) as Record<
      string,
      { typeUrl: string; value: string }
    >;
    const out: Record<string, AnyValue> = {};
    for (const [key, any] of Object.entries(parsed)) {
      out[key] = { typeUrl: any.typeUrl, value: fromBase64(any.value) };
    }
    return out;
  } catch (err) {
    throw new Error(`container ${JSON.stringify(id)}: unreadable extensions`, { cause: err });
  }
}

/** A container from its row; `labels` when the caller read them in bulk (List). */
function toContainer(tx: Tx, namespace: string, row: ContainerRow, labels?: Labels): Container {
  const options = decodeAny(row.runtime_options);
  return {
    id: row.id,
    labels: labels ?? readLabels(tx, "container", [namespace, row.id]),
    image: row.image,
    runtime: options === undefined
      ? { name: row.runtime_name }
      : { name: row.runtime_name, options },
    spec: decodeAny(row.spec) ?? { typeUrl: "", value: new Uint8Array() },
    snapshotter: row.snapshotter,
    snapshotKey: row.snapshot_key,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    extensions: decodeExtensions(row.extensions, row.id),
  };
}

function containerRow(tx: Tx, namespace: string, id: string): ContainerRow | undefined {
  return tx.get<ContainerRow>(`${SELECT_CONTAINER} WHERE namespace = ? AND id = ?`, namespace, id);
}

/** A container about to be written: every field filled, times not yet set. */
interface Draft {
  id: string;
  labels: Labels;
  image: string;
  runtime: ContainerRuntime;
  spec: AnyValue | undefined;
  snapshotter: string;
  snapshotKey: string;
  extensions: Record<string, AnyValue>;
}

function draftOf(input: ContainerInput): Draft {
  return {
    id: input.id,
    labels: { ...(input.labels ?? {}) },
    image: input.image ?? "",
    runtime: runtimeOf(input.runtime),
    spec: input.spec,
    snapshotter: input.snapshotter ?? "",
    snapshotKey: input.snapshotKey ?? "",
    extensions: { ...(input.extensions ?? {}) },
  };
}

function runtimeOf(runtime: ContainerRuntime | undefined): ContainerRuntime {
  const name = runtime?.name ?? "";
  return runtime?.options === undefined ? { name } : { name, options: runtime.options };
}

/**
 * containerd's validateContainer: a valid id, non-empty extension keys, labels within
 * limits, a runtime name, a spec, and a snapshotter whenever there is a snapshot key.
 *
 * @throws {InvalidArgumentError} naming the field at fault.
 */
export function validateContainer(container: {
  id: string;
  labels: Readonly<Labels>;
  runtime: ContainerRuntime;
  spec: AnyValue | undefined;
  snapshotter: string;
  snapshotKey: string;
  extensions: Readonly<Record<string, AnyValue>>;
}): void {
  try {
    validateIdentifier(container.id);
  } catch (err) {
    throw new InvalidArgumentError(`container.ID: ${(err as Error).message}`, { cause: err });
  }
  if (Object.hasOwn(container.extensions, "")) {
    throw new InvalidArgumentError("container.Extension keys must not be zero-length");
  }
  validateLabels(container.labels, "containers.Labels");
  if (container.runtime.name === "") {
    throw new InvalidArgumentError("container.Runtime.Name must be set");
  }
  if (container.spec === undefined) throw new InvalidArgumentError("container.Spec must be set");
  if (container.snapshotKey !== "" && container.snapshotter === "") {
    throw new InvalidArgumentError(
      "container.Snapshotter must be set if container.SnapshotKey is set",
    );
  }
}

/** {@link validateContainer} with containerd's prefix on the message (`<prefix>: <reason>`). */
function validated(draft: Draft, prefix: string): void {
  try {
    validateContainer(draft);
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err;
    throw new InvalidArgumentError(`${prefix}: ${err.message}`, { cause: err });
  }
}

/** The filter adaptor of a container, as containerd's adaptContainer. */
export function containerAdaptor(container: Container): Adaptor {
  return adaptRecord(
    { id: container.id, image: container.image, "runtime.name": container.runtime.name },
    { labels: container.labels },
  );
}

/** The OCI spec JSON of a container whose spec is JSON-encoded (as ctr and the Go client write it). */
export function specJSON(container: Pick<Container, "spec">): unknown {
  return JSON.parse(decoder.decode(container.spec.value));
}

function write(tx: Tx, namespace: string, draft: Draft, createdAt: number, updatedAt: number) {
  tx.run(
    `INSERT INTO containers(namespace, id, image, runtime_name, runtime_options, spec,
       snapshotter, snapshot_key, extensions, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT(namespace, id) DO UPDATE SET image = excluded.image,
       runtime_name = excluded.runtime_name, runtime_options = excluded.runtime_options,
       spec = excluded.spec, snapshotter = excluded.snapshotter,
       snapshot_key = excluded.snapshot_key, extensions = excluded.extensions,
       updated_at = excluded.updated_at`,
    namespace,
    draft.id,
    draft.image,
    draft.runtime.name,
    encodeAny(draft.runtime.options),
    encodeAny(draft.spec),
    draft.snapshotter,
    draft.snapshotKey,
    encodeExtensions(draft.extensions),
    createdAt,
    updatedAt,
  );
  writeLabels(tx, "container", [namespace, draft.id], draft.labels);
}

/** {@link ContainerStore} over the metadata database. */
export class SqlContainerStore implements ContainerStore {
  readonly #md: MetadataStore;

  /** Use the metadata store's database (through its transactions). */
  constructor(md: MetadataStore) {
    this.#md = md;
  }

  get(namespace: string, id: string): Container {
    return this.#md.view((tx) => {
      const row = containerRow(tx, namespace, id);
      if (!row) {
        throw new NotFoundError(
          `container ${JSON.stringify(id)} in namespace ${JSON.stringify(namespace)}: not found`,
        );
      }
      return toContainer(tx, namespace, row);
    });
  }

  list(namespace: string, filters: readonly string[] = []): Container[] {
    const filter = parseAll(filters);
    return this.#md.view((tx) => {
      const labels = readLabelsOf(tx, "container", [namespace]);
      return tx.all<ContainerRow>(`${SELECT_CONTAINER} WHERE namespace = ? ORDER BY id`, namespace)
        .map((row) => toContainer(tx, namespace, row, labels.get(row.id) ?? {}))
        .filter((container) => filter.match(containerAdaptor(container)));
    });
  }

  create(namespace: string, input: ContainerInput): Container {
    const draft = draftOf(input);
    draft.labels = withoutEmpty(draft.labels);
    validateIdentifier(namespace);
    validated(draft, "create container failed validation");
    return this.#md.update((tx) => {
      this.#md.ensureNamespace(tx, namespace);
      if (containerRow(tx, namespace, draft.id)) {
        throw new AlreadyExistsError(`container ${JSON.stringify(draft.id)}: already exists`);
      }
      const now = Date.now();
      write(tx, namespace, draft, now, now);
      return toContainer(tx, namespace, containerRow(tx, namespace, draft.id) as ContainerRow);
    });
  }

  update(namespace: string, input: ContainerInput, paths: readonly string[] = []): Container {
    const id = input.id;
    if (id === "") throw new InvalidArgumentError("must specify a container id");
    validateIdentifier(namespace);
    const incoming = draftOf(input);
    return this.#md.update((tx) => {
      const row = containerRow(tx, namespace, id);
      if (!row) throw new NotFoundError(`container ${JSON.stringify(id)}: not found`);
      const current = toContainer(tx, namespace, row);
      const next: Draft = {
        id,
        labels: { ...current.labels },
        image: current.image,
        runtime: current.runtime,
        spec: current.spec,
        snapshotter: current.snapshotter,
        snapshotKey: current.snapshotKey,
        extensions: { ...current.extensions },
      };
      let fieldpaths = paths;
      if (fieldpaths.length === 0) {
        fieldpaths = ["labels", "spec", "extensions", "image", "snapshotkey"];
        if (current.snapshotter !== incoming.snapshotter) {
          throw new InvalidArgumentError("container.Snapshotter field is immutable");
        }
        if (current.runtime.name !== incoming.runtime.name) {
          throw new InvalidArgumentError("container.Runtime.Name field is immutable");
        }
      }
      for (const path of fieldpaths) {
        if (path.startsWith("labels.")) {
          const key = path.slice("labels.".length);
          next.labels[key] = Object.hasOwn(incoming.labels, key) ? incoming.labels[key] ?? "" : "";
          continue;
        }
        if (path.startsWith("extensions.")) {
          const key = path.slice("extensions.".length);
          const value = Object.hasOwn(incoming.extensions, key)
            ? incoming.extensions[key]
            : undefined;
          if (value === undefined) delete next.extensions[key];
          else next.extensions[key] = value;
          continue;
        }
        switch (path) {
          case "labels":
            next.labels = { ...incoming.labels };
            break;
          case "spec":
            next.spec = incoming.spec;
            break;
          case "extensions":
            next.extensions = { ...incoming.extensions };
            break;
          case "image":
            next.image = incoming.image;
            break;
          case "snapshotkey":
            next.snapshotKey = incoming.snapshotKey;
            break;
          default:
            throw new InvalidArgumentError(
              `cannot update ${JSON.stringify(path)} field on ${JSON.stringify(id)}`,
            );
        }
      }
      next.labels = withoutEmpty(next.labels);
      validated(next, "update failed validation");
      write(tx, namespace, next, row.created_at, Date.now());
      if (current.snapshotKey !== next.snapshotKey) tx.dirty();
      return toContainer(tx, namespace, containerRow(tx, namespace, id) as ContainerRow);
    });
  }

  delete(namespace: string, id: string): void {
    this.#md.update((tx) => {
      const removed = tx.run(
        "DELETE FROM containers WHERE namespace = ? AND id = ?",
        namespace,
        id,
      );
      if (removed === 0) throw new NotFoundError(`container ${JSON.stringify(id)}: not found`);
      tx.dirty();
    });
  }
}
