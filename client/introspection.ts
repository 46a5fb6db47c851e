/**
 * `containerd.services.introspection.v1.Introspection`: which plugins loaded (and why the
 * others did not) and who the daemon is (`ctr plugins ls`, `ctr version`).
 *
 * A plugin's status follows ctr's rule: `ok` without an init error, `skip` when the error
 * message says "skip plugin", else `error`.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * for (const p of await client.introspection.plugins({ filters: ["type==io.containerd.grpc.v1"] })) {
 *   console.log(p.uri, p.status, p.error?.message ?? "");
 * }
 * ```
 * @module
 */
import type { Code } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  Introspection,
  type Plugin,
} from "../proto/gen/containerd/services/introspection/v1/introspection_pb.ts";
import { type CallOptions, defineService, type Rpc, type ServiceDef } from "./rpc.ts";

/** How a plugin's init went: loaded, skipped itself (not for this machine), or failed. */
export type PluginStatus = "ok" | "skip" | "error";

/** One plugin as the daemon reports it. */
export interface PluginInfo {
  /** Plugin type, e.g. `io.containerd.grpc.v1`. */
  type: string;
  /** Plugin id, e.g. `version`. */
  id: string;
  /** `type.id`, the name used in `required_plugins` and `disabled_plugins`. */
  uri: string;
  /** Types this plugin needs (`*`: every plugin). */
  requires: string[];
  /** Platforms the plugin supports. */
  platforms: { os: string; architecture: string; variant: string }[];
  /** Free-form facts the plugin exports (e.g. a root directory). */
  exports: Record<string, string>;
  /** Optional features the plugin has. */
  capabilities: string[];
  /** ok, skip or error. */
  status: PluginStatus;
  /** The skip or failure reason, in full; absent when status is ok. */
  error?: { code: Code; message: string };
}

/** A deprecated feature the daemon saw in use. */
export interface DeprecationInfo {
  /** e.g. `io.containerd.deprecation/...`. */
  id: string;
  message: string;
  /** When it was last used, when known. */
  lastOccurrence?: Date;
}

/** Who the daemon is. */
export interface ServerInfo {
  /** Stable across restarts on the same root. */
  uuid: string;
  /** The daemon's process id, in its own pid namespace. */
  pid: number;
  /** Inode of the daemon's pid namespace (0 when unknown), to tell whether `pid` is ours. */
  pidns: bigint;
  deprecations: DeprecationInfo[];
}

/**
 * ctr's classification of a plugin: `ok` without init error, `skip` when the message
 * contains "skip plugin", else `error`.
 *
 * @example
 * ```ts
 * import { create } from "@bufbuild/protobuf";
 * import { pluginStatus } from "./mod.ts";
 * import { StatusSchema } from "../proto/gen/google/rpc/status_pb.ts";
 * const initErr = create(StatusSchema, { code: 2, message: "no zfs: skip plugin" });
 * console.log(pluginStatus({ initErr })); // "skip"
 * ```
 */
export function pluginStatus(plugin: Pick<Plugin, "initErr">): PluginStatus {
  if (plugin.initErr === undefined) return "ok";
  return plugin.initErr.message.includes("skip plugin") ? "skip" : "error";
}

function toPluginInfo(p: Plugin): PluginInfo {
  const info: PluginInfo = {
    type: p.type,
    id: p.id,
    uri: `${p.type}.${p.id}`,
    requires: [...p.requires],
    platforms: p.platforms.map((x) => ({
      os: x.os,
      architecture: x.architecture,
      variant: x.variant,
    })),
    exports: { ...p.exports },
    capabilities: [...p.capabilities],
    status: pluginStatus(p),
  };
  if (p.initErr !== undefined) {
    info.error = { code: p.initErr.code as Code, message: p.initErr.message };
  }
  return info;
}

/** Options of {@link IntrospectionClient.plugins}. */
export interface PluginsOptions extends CallOptions {
  /**
   * containerd filters on `type` and `id`, e.g. `["type==io.containerd.grpc.v1"]`; several
   * filters are OR-ed. Default: every plugin. A malformed filter rejects with
   * InvalidArgumentError.
   */
  filters?: string[];
}

/**
 * The Introspection service.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const { uuid, pid } = await client.introspection.server();
 * ```
 */
export class IntrospectionClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.introspection`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * Every plugin the daemon knows (loaded, skipped and failed), in init order.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const failed = (await client.introspection.plugins()).filter((p) => p.status === "error");
   * ```
   */
  async plugins(options: PluginsOptions = {}): Promise<PluginInfo[]> {
    const res = await this.#rpc.unary(
      Introspection.method.plugins,
      { filters: options.filters ?? [] },
      options,
    );
    return res.plugins.map(toPluginInfo);
  }

  /**
   * One plugin by URI (`type.id`), or undefined when the daemon has none by that name —
   * the way to ask "does this daemon serve X?" before using a service.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const content = await client.introspection.plugin("io.containerd.grpc.v1.content");
   * if (content?.status !== "ok") console.log("no content service");
   * ```
   */
  async plugin(uri: string, options: CallOptions = {}): Promise<PluginInfo | undefined> {
    const dot = uri.lastIndexOf(".");
    const type = uri.slice(0, dot);
    const id = uri.slice(dot + 1);
    if (dot <= 0 || id === "") return undefined;
    const all = await this.plugins(options);
    return all.find((p) => p.type === type && p.id === id);
  }

  /**
   * The daemon's identity: UUID, pid, pid namespace and deprecations.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * console.log((await client.introspection.server()).uuid);
   * ```
   */
  async server(options: CallOptions = {}): Promise<ServerInfo> {
    const res = await this.#rpc.unary(Introspection.method.server, {}, options);
    return {
      uuid: res.uuid,
      pid: Number(res.pid),
      pidns: res.pidns,
      deprecations: res.deprecations.map((d) => {
        const out: DeprecationInfo = { id: d.id, message: d.message };
        if (d.lastOccurrence !== undefined) out.lastOccurrence = timestampDate(d.lastOccurrence);
        return out;
      }),
    };
  }
}

/**
 * The definition `client.use()` builds {@link IntrospectionClient} from.
 *
 * @example
 * ```ts
 * import { connect, introspectionService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const introspection = client.use(introspectionService); // same as client.introspection
 * ```
 */
export const introspectionService: ServiceDef<IntrospectionClient> = defineService(
  "introspection",
  (rpc) => new IntrospectionClient(rpc),
);
