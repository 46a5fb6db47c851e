/**
 * `containerd.services.version.v1.Version`: the daemon's version and revision (`ctr
 * version`).
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const { version, revision } = await client.version.get();
 * console.log(version, revision);
 * ```
 * @module
 */
import { Version } from "../proto/gen/containerd/services/version/v1/version_pb.ts";
import { type CallOptions, defineService, type Rpc, type ServiceDef } from "./rpc.ts";

/** What Version answers. */
export interface VersionInfo {
  /** Release version, e.g. "0.1.0". */
  version: string;
  /** Source revision, or "unknown". */
  revision: string;
}

/**
 * The Version service.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * console.log((await client.version.get()).version);
 * ```
 */
export class VersionClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.version`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * The daemon's version and revision.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { version } = await client.version.get({ timeoutMs: 2000 });
   * ```
   */
  async get(options: CallOptions = {}): Promise<VersionInfo> {
    const res = await this.#rpc.unary(Version.method.version, {}, options);
    return { version: res.version, revision: res.revision };
  }
}

/**
 * The definition `client.use()` builds {@link VersionClient} from.
 *
 * @example
 * ```ts
 * import { connect, versionService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const v = client.use(versionService); // same as client.version
 * ```
 */
export const versionService: ServiceDef<VersionClient> = defineService(
  "version",
  (rpc) => new VersionClient(rpc),
);
