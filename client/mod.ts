/**
 * containerd-ts's scripting client: typed wrappers over containerd's gRPC API on the
 * daemon's unix socket, with the daemon's typed errors.
 *
 * - {@link connect} opens a client (one HTTP/2 session, dialed lazily); `await using`
 *   closes it.
 * - Services: `client.version`, `client.introspection` (plugins with filters, server),
 *   `client.health` (check, watch as an async iterator, waitServing), `client.namespaces`,
 *   `client.content` (write from bytes/streams/files with resume and `onProgress`, read as a
 *   `ReadableStream`), `client.leases` (handles deleted on `await using`). A new service is
 *   one module exporting a {@link ServiceDef}, used as `client.use(def)`.
 * - `client.containers` (records with the OCI spec as a parsed object; {@link defaultSpec}
 *   builds containerd's default Linux spec) and `client.tasks` (create from rootfs mounts,
 *   start, `wait` with an AbortSignal, kill by signal name or number, exec, pause/resume,
 *   get/list with a {@link TaskStatus}, pids, metrics, delete) run containers; stdout can go
 *   to a file through {@link fileURI}. {@link runContainer} does `ctr run --rm` in one call;
 *   examples/run-container.ts shows the steps.
 * - `client.events.subscribe({ filters })` yields the daemon's events as an async iterator,
 *   decoded when they are containerd's event types; `client.events.publish()` sends one.
 * - `client.withNamespace(ns)` / `client.withLease(lease)` derive clients sending the
 *   `containerd-namespace` / `containerd-lease` headers, on the same connection.
 * - Failures are the classes of server/errdefs.ts (`NotFoundError`, `AlreadyExistsError`,
 *   `FailedPreconditionError`, `UnavailableError`, ...), converted in one place
 *   ({@link toTypedError}); no `ConnectError` reaches a caller.
 *
 * @example
 * ```ts
 * import { connect, NotFoundError } from "./mod.ts";
 *
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * await client.health.waitServing({ timeoutMs: 10_000 });
 * console.log(await client.version.get());
 * for (const p of await client.introspection.plugins()) console.log(p.uri, p.status);
 * try {
 *   await client.namespaces.get("nope");
 * } catch (err) {
 *   if (!(err instanceof NotFoundError)) throw err;
 * }
 * ```
 * @module
 */
export {
  Client,
  clientFromTransport,
  type ClientState,
  connect,
  type ConnectOptions,
  DEFAULT_NAMESPACE,
  type TransportClientOptions,
} from "./client.ts";
export {
  type Connection,
  dial,
  type DialOptions,
  type Endpoint,
  fromTransport,
  parseAddress,
} from "./connection.ts";
export {
  type CallOptions,
  defineService,
  LEASE_HEADER,
  NAMESPACE_HEADER,
  RequestQueue,
  Rpc,
  type RpcSettings,
  type ServiceDef,
} from "./rpc.ts";
// The typed errors (errdefs kinds) and toTypedError, exactly as client/errors.ts exports them.
export * from "./errors.ts";
export { VersionClient, type VersionInfo, versionService } from "./version.ts";
export {
  type DeprecationInfo,
  IntrospectionClient,
  introspectionService,
  type PluginInfo,
  type PluginsOptions,
  type PluginStatus,
  pluginStatus,
  type ServerInfo,
} from "./introspection.ts";
export {
  HealthClient,
  type HealthOptions,
  healthService,
  type ServingStatus,
  type WaitServingOptions,
} from "./health.ts";
export {
  type CreateNamespaceOptions,
  type NamespaceInfo,
  NamespacesClient,
  namespacesService,
  type UpdateNamespaceOptions,
} from "./namespaces.ts";
export {
  ContentClient,
  type ContentInfo,
  contentService,
  type IngestStatus,
  type ReadOptions,
  type UpdateContentOptions,
  type WriteOptions,
  type WriteProgress,
  type WriteResult,
  type WriteSource,
} from "./content.ts";
export {
  type CreateLeaseOptions,
  type DeleteLeaseOptions,
  EXPIRE_LABEL,
  Lease,
  type LeaseInfo,
  type LeaseResource,
  LeasesClient,
  leasesService,
} from "./leases.ts";
export {
  type EventEnvelope,
  EventsClient,
  eventsService,
  type PublishEvent,
  type SubscribeOptions,
} from "./events.ts";
export {
  type DeleteImageOptions,
  type Descriptor,
  fromDescriptor,
  type ImageInfo,
  type ImageInit,
  ImagesClient,
  imagesService,
  toDescriptor,
  type UpdateImageOptions,
} from "./images.ts";
export {
  DEFAULT_SNAPSHOTTER,
  type MountInfo,
  type SnapshotCreateOptions,
  type SnapshotInfo,
  type SnapshotKind,
  type SnapshotOptions,
  SnapshotsClient,
  snapshotsService,
  type SnapshotUsage,
} from "./snapshots.ts";
export { DiffClient, diffService } from "./diff.ts";
/** Container records and OCI specs: `client.containers`, {@link defaultSpec}. */
export {
  type AnyValue,
  type ContainerInfo,
  type ContainerInit,
  type ContainerRuntime,
  ContainersClient,
  containersService,
  type ContainerUpdate,
  DEFAULT_PATH_ENV,
  DEFAULT_RUNTIME,
  defaultSpec,
  type DefaultSpecOptions,
  jsonAny,
  OCI_PROCESS_TYPE_URL,
  OCI_RESOURCES_TYPE_URL,
  OCI_SPEC_TYPE_URL,
  type OciMount,
  type OciProcess,
  type OciSpec,
  parseSpec,
  type UpdateContainerOptions,
} from "./containers.ts";
/** `ctr run --rm` in one call, and the snapshots an image was unpacked into. */
export {
  imageChainIDs,
  type ImageChainOptions,
  runContainer,
  type RunContainerOptions,
  type RunResult,
} from "./run.ts";
/** Running containers: `client.tasks`, {@link parseSignal}, {@link fileURI}. */
export {
  type CreateTaskOptions,
  type DeletedProcess,
  type ExecOptions,
  type ExitStatus,
  fileURI,
  type KillOptions,
  parseSignal,
  type PidInfo,
  type ProcessIO,
  type ProcessOptions,
  type ProcessState,
  type ResizeOptions,
  type TaskMetric,
  TasksClient,
  tasksService,
  type TaskStatus,
  type UpdateTaskOptions,
} from "./tasks.ts";
export {
  chainIDs,
  importArchive,
  type ImportedImage,
  type ImportOptions,
  type ImportProgress,
} from "./import.ts";
