/**
 * `containerd.services.diff.v1.Diff`: apply a layer blob from the content store onto
 * mounts (how images are unpacked into snapshots).
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const mounts = await client.snapshots.prepare("extract-1", "");
 * const applied = await client.diff.apply(
 *   { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: "sha256:...", size: 1 },
 *   mounts,
 * );
 * ```
 * @module
 */
import { Diff } from "../proto/gen/containerd/services/diff/v1/diff_pb.ts";
import { type Descriptor, fromDescriptor, toDescriptor } from "./images.ts";
import type { MountInfo } from "./snapshots.ts";
import { type CallOptions, defineService, type Rpc, type ServiceDef } from "./rpc.ts";

/**
 * The Diff service.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const diff = client.diff;
 * ```
 */
export class DiffClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.diff`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * Apply layer `diff` (a blob in the content store) onto `mounts`; returns the applied
   * uncompressed descriptor (its digest is the layer's diff ID).
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const mounts = await client.snapshots.prepare("extract-1", "");
   * const { digest: diffID } = await client.diff.apply(
   *   { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: "sha256:...", size: 1 },
   *   mounts,
   * );
   * ```
   */
  async apply(
    diff: Descriptor,
    mounts: MountInfo[],
    options: CallOptions = {},
  ): Promise<Descriptor> {
    const res = await this.#rpc.unary(Diff.method.apply, {
      diff: toDescriptor(diff),
      mounts: mounts.map((m) => ({ ...m, options: [...m.options] })),
    }, options);
    return fromDescriptor(res.applied);
  }
}

/**
 * The definition `client.use()` builds {@link DiffClient} from.
 *
 * @example
 * ```ts
 * import { connect, diffService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const diff = client.use(diffService); // same as client.diff
 * ```
 */
export const diffService: ServiceDef<DiffClient> = defineService(
  "diff",
  (rpc) => new DiffClient(rpc),
);
