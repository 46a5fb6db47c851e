/**
 * Types of the diff plugin's applier: unpack a layer blob onto a directory.
 *
 * The applier knows nothing of the content store, snapshots or gRPC: the caller hands it a
 * way to read the blob and the directory to write into (a mounted snapshot, or a bare overlay
 * upperdir), and gets back the layer's diff ID (the digest of the uncompressed tar), which
 * it checks against the image config's `rootfs.diff_ids` as containerd does.
 *
 * @example
 * ```ts
 * import type { Applier } from "./api.ts";
 * import { createApplier } from "./apply.ts";
 * const applier: Applier = createApplier();
 * const desc = { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: "sha256:…", size: 123 };
 * const { digest, size } = await applier.apply(
 *   desc,
 *   async () => (await Deno.open("/path/to/blob")).readable,
 *   "/mnt/snapshot",
 *   { overlay: false },
 * );
 * ```
 * @module
 */

/** The layer blob being applied, as its descriptor names it. */
export interface LayerDescriptor {
  /** Layer media type; decides the decompression (see decompress.ts). */
  mediaType: string;
  /** Digest of the (compressed) blob; used to name the layer in errors. */
  digest: string;
  /** Size of the (compressed) blob in bytes. */
  size: number;
}

/** A stream of the blob's bytes. Chunks handed over must not be modified afterwards. */
export type LayerStream = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/** Opens the blob for reading; called once per apply. May return a promise of the stream. */
export type LayerReader = () => LayerStream | Promise<LayerStream>;

/** How to apply. */
export interface ApplyOptions {
  /**
   * `false`: the target is a plain directory or a mounted snapshot; whiteouts remove paths
   * and opaque directories are emptied of what lower layers put there.
   * `true`: the target is a bare overlayfs upperdir (not mounted); whiteouts are written as
   * overlay whiteouts: a 0/0 character device for a removed path and the xattr
   * `trusted.overlay.opaque=y` on an opaque directory (needs root).
   */
  overlay: boolean;
  /** Aborts the apply between entries and data chunks; the error is the signal's reason. */
  signal?: AbortSignal;
}

/** What an apply produced. */
export interface ApplyResult {
  /** `sha256:<hex>` of the uncompressed tar stream: the layer's diff ID. */
  digest: string;
  /** Bytes of the uncompressed tar stream. */
  size: number;
}

/** Warnings the applier reports (ignored xattrs and the like); a Logger fits. */
export interface ApplierLogger {
  /** Report something skipped that does not fail the apply. */
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** Applies layer blobs onto directories. */
export interface Applier {
  /**
   * Unpack the layer `desc`, read through `readLayer`, onto the existing directory `target`.
   * Streams: decompress → tar → filesystem, never holding the layer in memory.
   *
   * Errors: InvalidArgumentError for a bad layer (corrupt or truncated data, an entry that
   * would escape `target`, an over-long name, a link to nowhere), NotImplementedError for an
   * unsupported media type or entry kind, NotFoundError when `target` does not exist; I/O
   * failures keep their cause. A failed apply may leave `target` partly written (the caller
   * discards the snapshot), but never touches anything outside `target`.
   */
  apply(
    desc: LayerDescriptor,
    readLayer: LayerReader,
    target: string,
    options: ApplyOptions,
  ): Promise<ApplyResult>;
}
