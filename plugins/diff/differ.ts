/**
 * The walking differ (io.containerd.differ.v1.walking): containerd's diff/apply fsApplier
 * plus diff/walking, over this daemon's content store and layer applier.
 *
 * `apply` reads a layer blob of the caller's namespace from the content store, mounts the
 * given mounts on a fresh directory under `<root>/tmpmounts`, unpacks the layer there with the
 * applier (apply.ts: whiteouts, opaque dirs, and never a byte outside the mount), and always
 * unmounts. It answers with the uncompressed layer's descriptor — media type
 * `application/vnd.oci.image.layer.v1.tar`, the diff ID and the uncompressed size — which the
 * client checks against the image config's `rootfs.diff_ids`.
 *
 * `compare` (Diff/Diff) mounts both sides read-only, walks them (compare.ts), writes the
 * changes as a gzip layer into the content store with the `containerd.io/uncompressed`
 * label and answers with its descriptor.
 *
 * @example
 * ```ts
 * import { WalkingDiffer } from "./differ.ts";
 * const differ = new WalkingDiffer({ metadata, root: "/var/lib/containerd-ts" });
 * const applied = await differ.apply({ namespace: "default" }, layerDescriptor, mounts);
 * console.log(applied.digest); // the layer's diff ID
 * ```
 * @module
 */
import { InvalidArgumentError, isNotFound, NotFoundError } from "../../server/errdefs.ts";
import type { Logger } from "../../server/log.ts";
import { type MountSpec, withTempMount } from "../../server/mount.ts";
import type { MetadataStore, Scope } from "../metadata/api.ts";
import type { Applier } from "./api.ts";
import { createApplier } from "./apply.ts";
import { writeDiff } from "./compare.ts";

/** Media type of the uncompressed layer `apply` reports (ocispec.MediaTypeImageLayer). */
export const MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar";
/** Media type of a gzip layer (the default of `compare`). */
export const MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
/** Content label carrying a compressed layer's diff ID. */
export const LABEL_UNCOMPRESSED = "containerd.io/uncompressed";

/** A content descriptor (containerd.types.Descriptor). */
export interface Descriptor {
  mediaType: string;
  /** `sha256:<hex>`. */
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/** Options of {@link Differ.apply}. */
export interface DiffApplyOptions {
  /** Aborts the apply (the mounts are still undone). */
  signal?: AbortSignal;
}

/** Options of {@link Differ.compare}. */
export interface DiffCompareOptions {
  /** Media type of the layer to write: `…tar` or `…tar+gzip` (default gzip). */
  mediaType?: string;
  /** Ingest ref in the content store (default: a generated one). */
  ref?: string;
  /** Labels of the committed content (the uncompressed label is added). */
  labels?: Record<string, string>;
  signal?: AbortSignal;
}

/** A differ plugin's instance (io.containerd.differ.v1). */
export interface Differ {
  /** Unpack the layer `desc` of the scope's namespace onto `mounts`; returns the applied layer. */
  apply(
    scope: Scope,
    desc: Descriptor,
    mounts: readonly MountSpec[],
    options?: DiffApplyOptions,
  ): Promise<Descriptor>;
  /** Write the changes from `lower` to `upper` as a layer into the content store. */
  compare(
    scope: Scope,
    lower: readonly MountSpec[],
    upper: readonly MountSpec[],
    options?: DiffCompareOptions,
  ): Promise<Descriptor>;
}

/** Options of {@link WalkingDiffer}. */
export interface WalkingDifferOptions {
  /** Where the layers are read from and written to. */
  metadata: MetadataStore;
  /** The daemon's root; temp mounts go to `<root>/tmpmounts`. */
  root: string;
  /** The applier; default {@link createApplier}. */
  applier?: Applier;
  /** Where the applier's warnings go. */
  log?: Logger;
}

/** Mounts as a read-only version of themselves (binds get `ro`, overlays keep lowerdirs only). */
export function readonlyMounts(mounts: readonly MountSpec[]): MountSpec[] {
  return mounts.map((m) => {
    if (m.type === "overlay") {
      const lower = m.options.filter((o) =>
        !o.startsWith("upperdir=") && !o.startsWith("workdir=")
      );
      const upper = m.options.find((o) => o.startsWith("upperdir="));
      if (upper === undefined) return { ...m, options: [...lower] };
      // The upper dir becomes the topmost lower dir: a read-only view of the same tree.
      const dir = upper.slice("upperdir=".length);
      const at = lower.findIndex((o) => o.startsWith("lowerdir="));
      if (at < 0) return { type: "bind", source: dir, options: ["rbind", "ro"] };
      const out = [...lower];
      out[at] = `lowerdir=${dir}:${lower[at]!.slice("lowerdir=".length)}`;
      return { ...m, options: out };
    }
    const options = m.options.filter((o) => o !== "rw" && o !== "ro");
    return { ...m, options: [...options, "ro"] };
  });
}

/** See the module doc. */
export class WalkingDiffer implements Differ {
  readonly #metadata: MetadataStore;
  readonly #root: string;
  readonly #applier: Applier;

  /** A differ over `options.metadata`, mounting under `<options.root>/tmpmounts`. */
  constructor(options: WalkingDifferOptions) {
    this.#metadata = options.metadata;
    this.#root = options.root;
    this.#applier = options.applier ??
      createApplier(options.log ? { log: options.log } : {});
  }

  async apply(
    scope: Scope,
    desc: Descriptor,
    mounts: readonly MountSpec[],
    options: DiffApplyOptions = {},
  ): Promise<Descriptor> {
    if (mounts.length === 0) {
      throw new InvalidArgumentError(`apply layer ${desc.digest}: no mounts to apply onto`);
    }
    const store = this.#metadata.content(scope);
    try {
      store.info(desc.digest);
    } catch (err) {
      if (isNotFound(err)) {
        throw new NotFoundError(
          `failed to get reader from content store: content digest ${desc.digest}: not found`,
          { cause: err },
        );
      }
      throw err;
    }
    const layer = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    const result = await withTempMount(
      this.#root,
      mounts,
      (dir) =>
        this.#applier.apply(layer, () => store.read(desc.digest), dir, {
          overlay: false,
          ...(options.signal ? { signal: options.signal } : {}),
        }),
    );
    return { mediaType: MEDIA_TYPE_LAYER, digest: result.digest, size: result.size };
  }

  async compare(
    scope: Scope,
    lower: readonly MountSpec[],
    upper: readonly MountSpec[],
    options: DiffCompareOptions = {},
  ): Promise<Descriptor> {
    const mediaType = options.mediaType || MEDIA_TYPE_LAYER_GZIP;
    if (mediaType !== MEDIA_TYPE_LAYER && mediaType !== MEDIA_TYPE_LAYER_GZIP) {
      throw new InvalidArgumentError(
        `unsupported diff media type ${
          JSON.stringify(mediaType)
        }: only ${MEDIA_TYPE_LAYER} and ${MEDIA_TYPE_LAYER_GZIP}`,
      );
    }
    const store = this.#metadata.content(scope);
    const ref = options.ref || `diff-${Date.now()}-${crypto.randomUUID()}`;
    const labels = options.labels ?? {};
    const withLower = (fn: (dir: string) => Promise<Descriptor>) =>
      lower.length === 0
        ? withEmptyDir(this.#root, fn)
        : withTempMount(this.#root, readonlyMounts(lower), fn);
    return await withLower((lowerDir) =>
      withTempMount(
        this.#root,
        readonlyMounts(upper),
        (upperDir) =>
          writeDiff(store, lowerDir, upperDir, {
            ref,
            mediaType,
            labels,
            ...(options.signal ? { signal: options.signal } : {}),
          }),
      )
    );
  }
}

async function withEmptyDir<T>(root: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const base = `${root}/tmpmounts`;
  await Deno.mkdir(base, { recursive: true, mode: 0o700 });
  const dir = await Deno.makeTempDir({ dir: base, prefix: "containerd-empty" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
