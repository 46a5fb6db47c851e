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
export {
  chainIDs,
  importArchive,
  type ImportedImage,
  type ImportOptions,
  type ImportProgress,
} from "./import.ts";
