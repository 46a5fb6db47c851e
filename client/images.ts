/**
 * `containerd.services.images.v1.Images`: image records (name → target descriptor) of the
 * client's namespace (`ctr images`).
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * for (const img of await client.images.list()) console.log(img.name, img.target.digest);
 * ```
 * @module
 */
import { timestampDate, timestampNow } from "@bufbuild/protobuf/wkt";
import { type Image, Images } from "../proto/gen/containerd/services/images/v1/images_pb.ts";
import type { Descriptor as DescriptorMessage } from "../proto/gen/containerd/types/descriptor_pb.ts";
import { type CallOptions, defineService, type Rpc, type ServiceDef } from "./rpc.ts";

/** An OCI descriptor: what a digest is, how big, with annotations. */
export interface Descriptor {
  mediaType: string;
  /** `sha256:<hex>`. */
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/** An image record. */
export interface ImageInfo {
  name: string;
  labels: Record<string, string>;
  target: Descriptor;
  createdAt?: Date;
  updatedAt?: Date;
}

/** What {@link ImagesClient.create} and {@link ImagesClient.update} take. */
export interface ImageInit {
  name: string;
  labels?: Record<string, string>;
  target: Descriptor;
}

/** Options of {@link ImagesClient.update}. */
export interface UpdateImageOptions extends CallOptions {
  /** Fields to change (`target`, `labels`, `labels.<key>`); default: all. */
  fields?: string[];
}

/** Options of {@link ImagesClient.delete}. */
export interface DeleteImageOptions extends CallOptions {
  /** Run garbage collection before the reply. */
  sync?: boolean;
}

/** Convert a protobuf descriptor to {@link Descriptor}. */
export function fromDescriptor(d: DescriptorMessage | undefined): Descriptor {
  return {
    mediaType: d?.mediaType ?? "",
    digest: d?.digest ?? "",
    size: Number(d?.size ?? 0n),
    annotations: { ...d?.annotations },
  };
}

/** Convert a {@link Descriptor} to the protobuf init shape. */
export function toDescriptor(
  d: Descriptor,
): { mediaType: string; digest: string; size: bigint; annotations: Record<string, string> } {
  return {
    mediaType: d.mediaType,
    digest: d.digest,
    size: BigInt(d.size),
    annotations: { ...d.annotations },
  };
}

function toInfo(img: Image | undefined): ImageInfo {
  const out: ImageInfo = {
    name: img?.name ?? "",
    labels: { ...img?.labels },
    target: fromDescriptor(img?.target),
  };
  if (img?.createdAt) out.createdAt = timestampDate(img.createdAt);
  if (img?.updatedAt) out.updatedAt = timestampDate(img.updatedAt);
  return out;
}

function toImage(init: ImageInit) {
  return { name: init.name, labels: { ...init.labels }, target: toDescriptor(init.target) };
}

/**
 * The Images service.
 *
 * @example
 * ```ts
 * import { connect } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const img = await client.images.get("docker.io/library/testbox:latest");
 * ```
 */
export class ImagesClient {
  readonly #rpc: Rpc;

  /** Bind to a client's call layer (the client does this; use `client.images`). */
  constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  /**
   * One image; NotFoundError when absent.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const { target } = await client.images.get("docker.io/library/testbox:latest");
   * ```
   */
  async get(name: string, options: CallOptions = {}): Promise<ImageInfo> {
    const res = await this.#rpc.unary(Images.method.get, { name }, options);
    return toInfo(res.image);
  }

  /**
   * Images matching any of `filters` (fields name, target.digest, target.mediatype, labels).
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const imgs = await client.images.list({ filters: ["name~=testbox"] });
   * ```
   */
  async list(options: CallOptions & { filters?: string[] } = {}): Promise<ImageInfo[]> {
    const res = await this.#rpc.unary(
      Images.method.list,
      { filters: options.filters ?? [] },
      options,
    );
    return res.images.map(toInfo);
  }

  /**
   * Create an image record; AlreadyExistsError when the name is taken.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.images.create({
   *   name: "example.com/x:1",
   *   target: { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: "sha256:...", size: 1 },
   * });
   * ```
   */
  async create(image: ImageInit, options: CallOptions = {}): Promise<ImageInfo> {
    const now = timestampNow();
    const res = await this.#rpc.unary(
      Images.method.create,
      { image: { ...toImage(image), createdAt: now, updatedAt: now } },
      options,
    );
    return toInfo(res.image);
  }

  /**
   * Update an image record; NotFoundError when absent.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * const img = await client.images.get("example.com/x:1");
   * await client.images.update({ ...img, labels: { a: "b" } }, { fields: ["labels.a"] });
   * ```
   */
  async update(image: ImageInit, options: UpdateImageOptions = {}): Promise<ImageInfo> {
    const res = await this.#rpc.unary(
      Images.method.update,
      {
        image: toImage(image),
        ...(options.fields ? { updateMask: { paths: options.fields } } : {}),
      },
      options,
    );
    return toInfo(res.image);
  }

  /**
   * Delete an image record; NotFoundError when absent.
   *
   * @example
   * ```ts
   * import { connect } from "./mod.ts";
   * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
   * await client.images.delete("example.com/x:1", { sync: true });
   * ```
   */
  async delete(name: string, options: DeleteImageOptions = {}): Promise<void> {
    await this.#rpc.unary(Images.method.delete, { name, sync: options.sync ?? false }, options);
  }
}

/**
 * The definition `client.use()` builds {@link ImagesClient} from.
 *
 * @example
 * ```ts
 * import { connect, imagesService } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const images = client.use(imagesService); // same as client.images
 * ```
 */
export const imagesService: ServiceDef<ImagesClient> = defineService(
  "images",
  (rpc) => new ImagesClient(rpc),
);
