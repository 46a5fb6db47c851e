/**
 * `containerd.services.containers.v1.Containers`: the container records of the client's
 * namespace (`ctr containers`) — id, image, runtime, OCI spec, snapshot, labels.
 *
 * The spec travels as a protobuf `Any` with type URL {@link OCI_SPEC_TYPE_URL} and the spec's
 * JSON as bytes, as containerd's typeurl encodes it; this wrapper takes and returns the parsed
 * object ({@link OciSpec}). {@link defaultSpec} builds the small spec containerd's
 * `oci.WithDefaultSpec` would, enough for runc.
 *
 * @example
 * ```ts
 * import { connect, defaultSpec } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * await client.containers.create({
 *   id: "c1",
 *   image: "docker.io/library/testbox:latest",
 *   spec: defaultSpec({ namespace: client.namespace, id: "c1", args: ["/bin/echo", "hi"] }),
 *   snapshotter: "overlayfs",
 *   snapshotKey: "c1",
 * });
 * for (const c of await client.containers.list()) console.log(c.id, c.image);
 * ```
 * @module
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type Container,
  Containers,
} from "../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import { InvalidArgumentError } from "./errors.ts";
import { type CallOptions, defineService, type Rpc, type ServiceDef } from "./rpc.ts";

/** The type URL of an OCI runtime spec in an `Any` (containerd's typeurl name). */
export const OCI_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/** The type URL of an OCI process (Exec's spec) in an `Any`. */
export const OCI_PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/** The type URL of OCI Linux resources (Tasks.Update) in an `Any`. */
export const OCI_RESOURCES_TYPE_URL =
  "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
/** The runtime a container gets unless told otherwise (ctr's default too). */
export const DEFAULT_RUNTIME = "io.containerd.runc.v2";
/** The PATH containerd's `oci.WithDefaultPathEnv` sets. */
export const DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** A protobuf `Any` kept opaque: the type URL and the encoded bytes. */
export interface AnyValue {
  typeUrl: string;
  value: Uint8Array;
}

/** An OCI mount (`mounts[]` of a spec). */
export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

/** An OCI process (`process` of a spec; also what Exec runs). */
export interface OciProcess {
  args: string[];
  /** Absolute; runc requires one. */
  cwd: string;
  env?: string[];
  terminal?: boolean;
  user?: { uid: number; gid: number; additionalGids?: number[]; umask?: number };
  capabilities?: {
    bounding?: string[];
    effective?: string[];
    inheritable?: string[];
    permitted?: string[];
    ambient?: string[];
  };
  rlimits?: { type: string; hard: number; soft: number }[];
  noNewPrivileges?: boolean;
  [key: string]: unknown;
}

/**
 * An OCI runtime spec (config.json) as a parsed object. The common fields are typed; the
 * rest of the OCI schema passes through unchanged.
 */
export interface OciSpec {
  ociVersion: string;
  process?: OciProcess;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  linux?: Record<string, unknown>;
  [key: string]: unknown;
}

/** A container's runtime: the shim's name (`io.containerd.runc.v2`) and its options. */
export interface ContainerRuntime {
  name: string;
  /** The runtime's options (for runc, a `containerd.runc.v1.Options`), opaque. */
  options?: AnyValue;
}

/** A container record. */
export interface ContainerInfo {
  id: string;
  labels: Record<string, string>;
  /** The image name it was made from; "" for none. */
  image: string;
  runtime: ContainerRuntime;
  /** The spec, parsed; undefined when the record's spec is not an OCI spec (see `rawSpec`). */
  spec?: OciSpec;
  /** The spec exactly as stored. */
  rawSpec?: AnyValue;
  /** "" when the container has no snapshot. */
  snapshotter: string;
  snapshotKey: string;
  createdAt?: Date;
  updatedAt?: Date;
  extensions: Record<string, AnyValue>;
}

/** What {@link ContainersClient.create} takes. */
export interface ContainerInit {
  /** Letters, digits and `._-`, as every containerd identifier. */
  id: string;
  labels?: Record<string, string>;
  image?: string;
  /** A name or a runtime; default {@link DEFAULT_RUNTIME} without options. */
  runtime?: string | ContainerRuntime;
  /** Required by the daemon. An {@link AnyValue} is sent as is. */
  spec: OciSpec | AnyValue;
  snapshotter?: string;
  /** Needs `snapshotter`. */
  snapshotKey?: string;
  extensions?: Record<string, AnyValue>;
}

/** What {@link ContainersClient.update} takes: the id and the fields to change. */
export interface ContainerUpdate {
  id: string;
  labels?: Record<string, string>;
  image?: string;
  spec?: OciSpec | AnyValue;
  snapshotKey?: string;
  extensions?: Record<string, AnyValue>;
}

/** Options of {@link ContainersClient.update}. */
export interface UpdateContainerOptions extends CallOptions {
  /**
   * Field paths to change: `labels`, `labels.<key>`, `spec`, `image`, `snapshotkey`,
   * `extensions`, `extensions.<key>`. Default: the fields present in the update (`labels`
   * for `labels`, and so on) — never the whole record.
   */
  fields?: string[];
}

/** Options of {@link defaultSpec}. */
export interface DefaultSpecOptions {
  /** The container's namespace; part of the cgroup path `/<namespace>/<id>`. */
  namespace: string;
  /** The container's id. */
  id: string;
  /** The command and its arguments. */
  args: string[];
  /** Extra `KEY=value` entries after {@link DEFAULT_PATH_ENV}. */
  env?: string[];
  /** Working directory; default "/". */
  cwd?: string;
  /** Allocate a terminal for the process; default false. */
  terminal?: boolean;
  /** Host name inside the container; default none (runc keeps the host's). */
  hostname?: string;
  /** Extra mounts, after the defaults. */
  mounts?: OciMount[];
  /** Make the root filesystem read-only; default false. */
  readonlyRootfs?: boolean;
}

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();

const DEFAULT_CAPS = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/**
 * The spec containerd's `oci.WithDefaultSpec` + `WithProcessArgs` builds on Linux: root
 * `rootfs` (the bundle's mount point of the task's rootfs), /proc, /dev, /dev/pts, /dev/shm,
 * /dev/mqueue, /sys and /run mounted, new pid/ipc/uts/mount/network namespaces, the default
 * capabilities, no devices, masked and read-only /proc paths, cgroup `/<namespace>/<id>`.
 *
 * @example
 * ```ts
 * import { defaultSpec } from "./mod.ts";
 * const spec = defaultSpec({ namespace: "default", id: "c1", args: ["/bin/sh", "-c", "echo hi"] });
 * console.log(spec.process?.args, spec.root?.path); // [ "/bin/sh", "-c", "echo hi" ] rootfs
 * ```
 */
export function defaultSpec(options: DefaultSpecOptions): OciSpec {
  const spec: OciSpec = {
    ociVersion: "1.0.2-dev",
    process: {
      terminal: options.terminal ?? false,
      user: { uid: 0, gid: 0 },
      args: [...options.args],
      env: [DEFAULT_PATH_ENV, ...(options.env ?? [])],
      cwd: options.cwd ?? "/",
      capabilities: {
        bounding: [...DEFAULT_CAPS],
        effective: [...DEFAULT_CAPS],
        permitted: [...DEFAULT_CAPS],
      },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: "rootfs", ...(options.readonlyRootfs ? { readonly: true } : {}) },
    mounts: [
      {
        destination: "/proc",
        type: "proc",
        source: "proc",
        options: ["nosuid", "noexec", "nodev"],
      },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      {
        destination: "/dev/mqueue",
        type: "mqueue",
        source: "mqueue",
        options: ["nosuid", "noexec", "nodev"],
      },
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", "ro"],
      },
      {
        destination: "/run",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      ...(options.mounts ?? []),
    ],
    linux: {
      resources: { devices: [{ allow: false, access: "rwm" }] },
      cgroupsPath: `/${options.namespace}/${options.id}`,
      namespaces: [
        { type: "pid" },
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
        { type: "network" },
      ],
      maskedPaths: [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
      ],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
  };
  if (options.hostname !== undefined) spec.hostname = options.hostname;
  return spec;
}

/** Whether `v` is an {@link AnyValue} rather than a parsed object. */
function isAny(v: unknown): v is AnyValue {
  return typeof v === "object" && v !== null && typeof (v as AnyValue).typeUrl === "string" &&
    (v as AnyValue).value instanceof Uint8Array;
}

/**
 * An object as a JSON-encoded `Any` with `typeUrl` (containerd's typeurl encoding of Go
 * structs that are not protobuf messages: OCI specs, processes, resources).
 *
 * @example
 * ```ts
 * import { jsonAny, OCI_PROCESS_TYPE_URL } from "./mod.ts";
 * const any = jsonAny(OCI_PROCESS_TYPE_URL, { args: ["/bin/true"], cwd: "/" });
 * ```
 */
export function jsonAny(typeUrl: string, value: unknown): AnyValue {
  return { typeUrl, value: ENCODER.encode(JSON.stringify(value)) };
}

/** A spec given as object or Any, as the Any the API carries. */
function specAny(spec: OciSpec | AnyValue): AnyValue {
  return isAny(spec)
    ? { typeUrl: spec.typeUrl, value: spec.value }
    : jsonAny(OCI_SPEC_TYPE_URL, spec);
}

/** Parse an OCI spec `Any`; undefined when it is some other type or not JSON. */
export function parseSpec(any: AnyValue | undefined): OciSpec | undefined {
  if (any === undefined || any.typeUrl !== OCI_SPEC_TYPE_URL) return undefined;
  try {
    const parsed: unknown = JSON.parse(DECODER.decode(any.value));
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? parsed as OciSpec
      : undefined;
  } catch {
    return undefined;
  }
}

function copyAny(any: { typeUrl: string; value: Uint8Array }): AnyValue {
  return { typeUrl: any.typeUrl, value: any.value };
}

function toInfo(c: Container | undefined): ContainerInfo {
  const extensions: Record<string, AnyValue> = {};
  for (const [key, value] of Object.entries(c?.extensions ?? {})) extensions[key] = copyAny(value);
  const runtime: ContainerRuntime = { name: c?.runtime?.name ?? "" };
  if (c?.runtime?.options !== undefined) runtime.options = copyAny(c.runtime.options);
  const out: ContainerInfo = {
    id: c?.id ?? "",
    labels: { ...c?.labels },
    image: c?.image ?? "",
    runtime,
    snapshotter: c?.snapshotter ?? "",
    snapshotKey: c?.snapshotKey ?? "",
    extensions,
  };
  if (c?.spec !== undefined) {
    out.rawSpec = copyAny(c.spec);
    const spec = parseSpec(out.rawSpec);
    if (spec !== undefined) out.spec = spec;
  }
  if (c?.createdAt) out.createdAt = timestampDate(c.createdAt);
  if (c?.updatedAt) out.updatedAt = timestampDate(c.updatedAt);
  return out;
}

function runtimeOf(runtime: string | ContainerRuntime | undefined) {
  if (runtime === undefined) return { name: DEFAULT_RUNTIME };
  if (typeof runtime === "string") return { name: runtime };
  return runtime.options === undefined
    ? { name: runtime.name }
    : { name: runtime.name, options: copyAny(runtime.options) };
}

/** Field-mask path of each {@link ContainerUpdate} property. */
const UPDATE_PATHS: Record<string, string> = {
  labels: "labels",
  image: "image",
  spec: "spec",
  snapshotKey: "snapshotkey",
  extensions: "extensions",
};

/**
 * The Containers service.
 *
 * @example
 * ```ts
 * import { connect, NotFoundError } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * try {
 *   const c = await client.containers.get("c1");
 *   console.log(c.spec?.process?.args);
 * } catch (err) {
 *   if (!(err instanceof NotFoundError)) throw err;
 * }
 * ```
 */
export class ContainersClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.containers`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * One container; NotFoundError `container "<id>" in namespace "<ns>": not found` when absent.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { image, runtime, spec } = await client.containers.get("c1");
   * ```
   */
  async get(id: string, options: CallOptions = {}): Promise<ContainerInfo> {
    const res = await this.#rpc.unary(Containers.method.get, { id }, options);
    return toInfo(res.container);
  }

  /**
   * Containers matching any of `filters` (fields `id`, `image`, `runtime.name`, `labels`);
   * all of the namespace without filters.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const mine = await client.containers.list({ filters: ["labels.owner==me"] });
   * ```
   */
  async list(options: CallOptions & { filters?: string[] } = {}): Promise<ContainerInfo[]> {
    const res = await this.#rpc.unary(
      Containers.method.list,
      { filters: options.filters ?? [] },
      options,
    );
    return res.containers.map(toInfo);
  }

  /**
   * Create a container record; AlreadyExistsError when the id is taken, InvalidArgumentError
   * naming the field for a bad id, runtime or snapshot.
   *
   * @example
   * ```ts
   * import { connect, defaultSpec } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const c = await client.containers.create({
   *   id: "c1",
   *   spec: defaultSpec({ namespace: "default", id: "c1", args: ["/bin/true"] }),
   *   labels: { owner: "me" },
   * });
   * ```
   */
  async create(container: ContainerInit, options: CallOptions = {}): Promise<ContainerInfo> {
    const res = await this.#rpc.unary(Containers.method.create, {
      container: {
        id: container.id,
        labels: { ...container.labels },
        image: container.image ?? "",
        runtime: runtimeOf(container.runtime),
        spec: specAny(container.spec),
        snapshotter: container.snapshotter ?? "",
        snapshotKey: container.snapshotKey ?? "",
        extensions: { ...container.extensions },
      },
    }, options);
    return toInfo(res.container);
  }

  /**
   * Change fields of a container; NotFoundError when absent. Only the fields present in
   * `changes` change (or those named by `options.fields`); a label set to "" is removed.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.containers.update({ id: "c1", labels: { stage: "test" } }, {
   *   fields: ["labels.stage"],
   * });
   * ```
   */
  async update(
    changes: ContainerUpdate,
    options: UpdateContainerOptions = {},
  ): Promise<ContainerInfo> {
    const fields = options.fields ??
      Object.keys(UPDATE_PATHS).filter((k) => changes[k as keyof ContainerUpdate] !== undefined)
        .map((k) => UPDATE_PATHS[k] as string);
    if (fields.length === 0) {
      throw new InvalidArgumentError(
        `update of container ${JSON.stringify(changes.id)}: no fields to change`,
      );
    }
    const res = await this.#rpc.unary(Containers.method.update, {
      container: {
        id: changes.id,
        labels: { ...changes.labels },
        image: changes.image ?? "",
        ...(changes.spec !== undefined ? { spec: specAny(changes.spec) } : {}),
        snapshotKey: changes.snapshotKey ?? "",
        extensions: { ...changes.extensions },
      },
      updateMask: { paths: fields },
    }, options);
    return toInfo(res.container);
  }

  /**
   * Delete a container record (not its snapshot or task); NotFoundError when absent.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.containers.delete("c1");
   * ```
   */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.#rpc.unary(Containers.method.delete, { id }, options);
  }
}

/**
 * The definition `client.use()` builds {@link ContainersClient} from.
 *
 * @example
 * ```ts
 * import { connect, containersService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const containers = client.use(containersService); // same as client.containers
 * ```
 */
export const containersService: ServiceDef<ContainersClient> = defineService(
  "containers",
  (rpc) => new ContainersClient(rpc),
);
