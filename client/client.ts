/**
 * The client: one connection to the daemon, a namespace and optional lease sent with every
 * call, and a typed wrapper per service (`client.version`, `client.introspection`,
 * `client.health`, `client.namespaces`, `client.content`, `client.leases`,
 * `client.images`, `client.snapshots`, `client.diff`, `client.containers`, `client.tasks`,
 * `client.events`; any other {@link ServiceDef} through `client.use(def)`).
 *
 * `withNamespace(ns)` and `withLease(lease)` derive clients that share the connection and
 * differ only in their headers. The client from {@link connect} owns the connection: `await
 * using` it (or call `close()`) to close the HTTP/2 session.
 *
 * @example
 * ```ts
 * import { connect } from "./client.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * console.log(await client.version.get());
 * const build = client.withNamespace("build");
 * console.log(await build.content.list());
 * ```
 * @module
 */
import type { Transport } from "@connectrpc/connect";
import { type Connection, dial, fromTransport } from "./connection.ts";
import { Rpc, type ServiceDef } from "./rpc.ts";
import { type ContentClient, contentService } from "./content.ts";
import { type EventsClient, eventsService } from "./events.ts";
import { type HealthClient, healthService } from "./health.ts";
import { type IntrospectionClient, introspectionService } from "./introspection.ts";
import { type LeasesClient, leasesService } from "./leases.ts";
import { type NamespacesClient, namespacesService } from "./namespaces.ts";
import { type VersionClient, versionService } from "./version.ts";
import { type ImagesClient, imagesService } from "./images.ts";
import { type SnapshotsClient, snapshotsService } from "./snapshots.ts";
import { type DiffClient, diffService } from "./diff.ts";
import { type ContainersClient, containersService } from "./containers.ts";
import { type TasksClient, tasksService } from "./tasks.ts";

/** The namespace a client uses unless told otherwise (ctr's default too). */
export const DEFAULT_NAMESPACE = "default";

/** Options of {@link connect}. */
export interface ConnectOptions {
  /**
   * The daemon's gRPC socket: a path (also `unix:///path`) or `host:port` for a TCP
   * listener. Required: scripts name the daemon they talk to.
   */
  address: string;
  /** Sent as `containerd-namespace` with every call. Default "default"; "" sends none. */
  namespace?: string;
  /** Sent as `containerd-lease` with every call. Default: none. */
  lease?: string;
  /**
   * Deadline of each unary call, and of establishing the connection, in milliseconds.
   * Default: no call deadline, 10 s to connect. Streams take `timeoutMs` per call.
   */
  timeoutMs?: number;
}

/** Options of {@link clientFromTransport}. */
export interface TransportClientOptions {
  /** Named in errors. Default "in-process". */
  address?: string;
  /** As in {@link ConnectOptions.namespace}. */
  namespace?: string;
  /** As in {@link ConnectOptions.lease}. */
  lease?: string;
  /** As in {@link ConnectOptions.timeoutMs}. */
  timeoutMs?: number;
}

/** The parts of a {@link Client}; built by {@link connect} and {@link clientFromTransport}. */
export interface ClientState {
  /** The shared connection. */
  readonly connection: Connection;
  readonly namespace: string;
  readonly lease: string;
  readonly timeoutMs: number | undefined;
  /** Whether disposing this client closes the connection. */
  readonly owner: boolean;
}

/**
 * A client of one daemon. Get one from {@link connect}; derive others with
 * {@link Client.withNamespace} and {@link Client.withLease}.
 *
 * @example
 * ```ts
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const plugins = await client.introspection.plugins();
 * ```
 */
export class Client implements AsyncDisposable {
  readonly #state: ClientState;
  readonly #services = new Map<ServiceDef<unknown>, unknown>();
  /** The call layer service wrappers use; for calls no wrapper covers. */
  readonly rpc: Rpc;

  /** Use {@link connect} or {@link clientFromTransport}; this is their common ground. */
  constructor(state: ClientState) {
    this.#state = state;
    const connection = state.connection;
    this.rpc = new Rpc({
      transport: connection.transport,
      address: connection.address,
      namespace: state.namespace,
      lease: state.lease,
      timeoutMs: state.timeoutMs,
      isClosed: () => connection.closed,
    });
  }

  /** The daemon's address. */
  get address(): string {
    return this.#state.connection.address;
  }

  /** The namespace sent with each call ("" when none). */
  get namespace(): string {
    return this.#state.namespace;
  }

  /** The lease sent with each call ("" when none). */
  get lease(): string {
    return this.#state.lease;
  }

  /** True once the shared connection was closed. */
  get closed(): boolean {
    return this.#state.connection.closed;
  }

  /**
   * A client for namespace `namespace` on the same connection. Disposing it does not close
   * the connection.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const other = client.withNamespace("build");
   * await other.content.list(); // only build's blobs
   * ```
   */
  withNamespace(namespace: string): Client {
    return new Client({ ...this.#state, namespace, owner: false });
  }

  /**
   * A client whose calls carry `containerd-lease: <id>`, so what they create joins the lease.
   * Accepts the lease handle or its id. Disposing it does not close the connection.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const bytes = new TextEncoder().encode("hello");
   * await using lease = await client.leases.create();
   * await client.withLease(lease).content.write("ref", bytes);
   * ```
   */
  withLease(lease: string | { readonly id: string }): Client {
    const id = typeof lease === "string" ? lease : lease.id;
    return new Client({ ...this.#state, lease: id, owner: false });
  }

  /**
   * The wrapper `def` describes, built once per client; the hook for services without a
   * property here.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * import { versionService } from "./version.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const version = client.use(versionService);
   * ```
   */
  use<T>(def: ServiceDef<T>): T {
    let service = this.#services.get(def) as T | undefined;
    if (service === undefined) {
      service = def.create(this.rpc);
      this.#services.set(def, service);
    }
    return service;
  }

  /** containerd.services.version.v1.Version. */
  get version(): VersionClient {
    return this.use(versionService);
  }

  /** containerd.services.introspection.v1.Introspection. */
  get introspection(): IntrospectionClient {
    return this.use(introspectionService);
  }

  /** grpc.health.v1.Health. */
  get health(): HealthClient {
    return this.use(healthService);
  }

  /** containerd.services.namespaces.v1.Namespaces. */
  get namespaces(): NamespacesClient {
    return this.use(namespacesService);
  }

  /** containerd.services.content.v1.Content (namespaced). */
  get content(): ContentClient {
    return this.use(contentService);
  }

  /** containerd.services.leases.v1.Leases (namespaced). */
  get leases(): LeasesClient {
    return this.use(leasesService);
  }

  /** containerd.services.images.v1.Images (namespaced). */
  get images(): ImagesClient {
    return this.use(imagesService);
  }

  /** containerd.services.snapshots.v1.Snapshots (namespaced). */
  get snapshots(): SnapshotsClient {
    return this.use(snapshotsService);
  }

  /** containerd.services.diff.v1.Diff. */
  get diff(): DiffClient {
    return this.use(diffService);
  }

  /** containerd.services.containers.v1.Containers (namespaced). */
  get containers(): ContainersClient {
    return this.use(containersService);
  }

  /** containerd.services.tasks.v1.Tasks (namespaced). */
  get tasks(): TasksClient {
    return this.use(tasksService);
  }

  /** containerd.services.events.v1.Events (subscribe sees every namespace). */
  get events(): EventsClient {
    return this.use(eventsService);
  }

  /**
   * Close the connection this client shares with the clients derived from it; their calls
   * then reject with CanceledError. Idempotent.
   *
   * @example
   * ```ts
   * const client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * try { await client.version.get(); } finally { await client.close(); }
   * ```
   */
  close(): Promise<void> {
    return this.#state.connection.close();
  }

  /** Close the connection if this client opened it (derived clients leave it open). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state.owner) await this.close();
  }
}

/**
 * Connect to a daemon. Nothing is dialed until the first call, so this never fails; a
 * daemon that is not there makes calls reject with UnavailableError naming the address.
 *
 * @example
 * ```ts
 * import { connect } from "./client.ts";
 * await using client = connect({
 *   address: "/run/containerd-ts/containerd-ts.sock",
 *   namespace: "default",
 *   timeoutMs: 5000,
 * });
 * console.log((await client.version.get()).version);
 * ```
 */
export function connect(options: ConnectOptions): Client {
  const connection = dial({
    address: options.address,
    ...(options.timeoutMs !== undefined ? { connectTimeoutMs: options.timeoutMs } : {}),
  });
  return new Client({
    connection,
    namespace: options.namespace ?? DEFAULT_NAMESPACE,
    lease: options.lease ?? "",
    timeoutMs: options.timeoutMs,
    owner: true,
  });
}

/**
 * A client over any Connect transport — an in-process router in tests, or a Connect /
 * gRPC-web transport. Closing it marks it closed; the transport is the caller's.
 *
 * @example
 * ```ts
 * import { createRouterTransport } from "@connectrpc/connect";
 * import { clientFromTransport } from "./client.ts";
 * const client = clientFromTransport(createRouterTransport(() => {}));
 * ```
 */
export function clientFromTransport(
  transport: Transport,
  options: TransportClientOptions = {},
): Client {
  return new Client({
    connection: fromTransport(transport, options.address ?? "in-process"),
    namespace: options.namespace ?? DEFAULT_NAMESPACE,
    lease: options.lease ?? "",
    timeoutMs: options.timeoutMs,
    owner: true,
  });
}
