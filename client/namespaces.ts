/**
 * `containerd.services.namespaces.v1.Namespaces`: create, list, label and delete
 * namespaces (`ctr namespaces`). Namespace calls need no `containerd-namespace` header; the
 * name is in the request.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * await client.namespaces.create("build", { labels: { team: "ci" } });
 * console.log((await client.namespaces.list()).map((n) => n.name));
 * await client.namespaces.delete("build");
 * ```
 * @module
 */
import { Namespaces } from "../proto/gen/containerd/services/namespaces/v1/namespace_pb.ts";
import { type CallOptions, defineService, type Rpc, type ServiceDef } from "./rpc.ts";

/** A namespace and its labels. */
export interface NamespaceInfo {
  name: string;
  labels: Record<string, string>;
}

/** Options of {@link NamespacesClient.create}. */
export interface CreateNamespaceOptions extends CallOptions {
  /** Labels to set (a key plus its value may not exceed 4096 bytes). */
  labels?: Record<string, string>;
}

/** Options of {@link NamespacesClient.update}. */
export interface UpdateNamespaceOptions extends CallOptions {
  /**
   * Which labels change, as `labels.<key>` paths (an empty value removes that label).
   * Default: none named, i.e. the namespace's labels are replaced by `labels` as a whole.
   */
  fields?: string[];
}

function toInfo(
  ns: { name: string; labels: { [key: string]: string } } | undefined,
): NamespaceInfo {
  return { name: ns?.name ?? "", labels: { ...ns?.labels } };
}

/**
 * The Namespaces service.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const names = (await client.namespaces.list()).map((n) => n.name);
 * ```
 */
export class NamespacesClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.namespaces`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * Every namespace, with labels.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * for (const ns of await client.namespaces.list()) console.log(ns.name, ns.labels);
   * ```
   */
  async list(options: CallOptions & { filter?: string } = {}): Promise<NamespaceInfo[]> {
    const res = await this.#rpc.unary(
      Namespaces.method.list,
      { filter: options.filter ?? "" },
      options,
    );
    return res.namespaces.map(toInfo);
  }

  /**
   * One namespace and its labels. As in containerd, a namespace that does not exist reads
   * as one without labels; {@link NamespacesClient.list} tells whether it exists.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { labels } = await client.namespaces.get("default");
   * ```
   */
  async get(name: string, options: CallOptions = {}): Promise<NamespaceInfo> {
    const res = await this.#rpc.unary(Namespaces.method.get, { name }, options);
    return toInfo(res.namespace);
  }

  /**
   * Create a namespace; AlreadyExistsError when it exists, InvalidArgumentError for a name
   * breaking containerd's identifier rule.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.namespaces.create("build", { labels: { team: "ci" } });
   * ```
   */
  async create(name: string, options: CreateNamespaceOptions = {}): Promise<NamespaceInfo> {
    const res = await this.#rpc.unary(
      Namespaces.method.create,
      { namespace: { name, labels: options.labels ?? {} } },
      options,
    );
    return toInfo(res.namespace);
  }

  /**
   * Change a namespace's labels; see {@link UpdateNamespaceOptions.fields}.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.namespaces.update("build", { team: "" }, { fields: ["labels.team"] });
   * ```
   */
  async update(
    name: string,
    labels: Record<string, string>,
    options: UpdateNamespaceOptions = {},
  ): Promise<NamespaceInfo> {
    const res = await this.#rpc.unary(
      Namespaces.method.update,
      {
        namespace: { name, labels },
        ...(options.fields ? { updateMask: { paths: options.fields } } : {}),
      },
      options,
    );
    return toInfo(res.namespace);
  }

  /**
   * Delete an empty namespace; NotFoundError when absent, FailedPreconditionError naming what
   * it still holds otherwise.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.namespaces.delete("build");
   * ```
   */
  async delete(name: string, options: CallOptions = {}): Promise<void> {
    await this.#rpc.unary(Namespaces.method.delete, { name }, options);
  }
}

/**
 * The definition `client.use()` builds {@link NamespacesClient} from.
 *
 * @example
 * ```ts
 * import { connect, namespacesService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const namespaces = client.use(namespacesService); // same as client.namespaces
 * ```
 */
export const namespacesService: ServiceDef<NamespacesClient> = defineService(
  "namespaces",
  (rpc) => new NamespacesClient(rpc),
);
