/**
 * `importArchive`: what `ctr images import` does, for OCI image-layout archives, through
 * the typed client. Under a lease (deleted at the end) every blob of the tar is written to
 * the content store, the index and manifests get ctr's `containerd.io/gc.ref.content.*`
 * labels, image records are created (or their target updated) for every index entry named
 * by `io.containerd.image.name` / `org.opencontainers.image.ref.name`, and then (unless
 * `unpack: false`) the layers are applied into snapshots keyed by their chain IDs.
 * docker-save archives are refused with a NotImplementedError.
 *
 * @example
 * ```ts
 * import { connect, importArchive } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const [image] = await importArchive(client, "./testbox.tar", {
 *   onProgress: (p) => console.error(p.stage, p.digest ?? p.chainID),
 * });
 * console.log(image.name, image.layers.length);
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { readTar } from "../plugins/diff/tar.ts";
import type { Client } from "./client.ts";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
} from "./errors.ts";
import type { Descriptor } from "./images.ts";
import type { CallOptions } from "./rpc.ts";
import { DEFAULT_SNAPSHOTTER } from "./snapshots.ts";

/** What `onProgress` reports. */
export interface ImportProgress {
  /** `blob`: a tar member was stored; `image`: a record written; `layer`: a layer unpacked. */
  stage: "blob" | "image" | "layer";
  /** Blob or layer digest. */
  digest?: string;
  /** Bytes of the blob or layer. */
  size?: number;
  /** The image name (stage `image`). */
  name?: string;
  /** The snapshot (stage `layer`); `skipped` when it existed already. */
  chainID?: string;
  skipped?: boolean;
}

/** Options of {@link importArchive}. */
export interface ImportOptions {
  /**
   * Snapshotter to unpack into. Default: the namespace's `containerd.io/defaults/snapshotter`
   * label, else `overlayfs`.
   */
  snapshotter?: string;
  /** Unpack the layers into snapshots (default true). */
  unpack?: boolean;
  /** Called as blobs, images and layers are done. */
  onProgress?: (progress: ImportProgress) => void;
  /** Cancels the import. */
  signal?: AbortSignal;
}

/** An imported image. */
export interface ImportedImage {
  name: string;
  /** The image record's target: the index.json entry, annotations included. */
  target: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  /** Uncompressed layer digests (from the config). */
  diffIDs: string[];
  /** Snapshot names, bottom first (`chainIDs(diffIDs)`). */
  chainIDs: string[];
  /** Where the layers were unpacked; undefined with `unpack: false`. */
  snapshotter?: string;
}

const INDEX_TYPES = new Set([
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
]);
const MANIFEST_TYPES = new Set([
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
]);
const LEASE_MS = 24 * 3600 * 1000;

function sha256(data: Uint8Array | string): string {
  return "sha256:" + createHash("sha256").update(data).digest("hex");
}

/**
 * The chain IDs of a layer stack: `chain[0] = diffIDs[0]`,
 * `chain[i] = sha256(chain[i-1] + " " + diffIDs[i])`.
 *
 * @example
 * ```ts
 * import { chainIDs } from "./mod.ts";
 * const [bottom, top] = chainIDs(["sha256:aa...", "sha256:bb..."]);
 * ```
 */
export function chainIDs(diffIDs: string[]): string[] {
  const out: string[] = [];
  for (const id of diffIDs) {
    out.push(out.length === 0 ? id : sha256(`${out[out.length - 1]} ${id}`));
  }
  return out;
}

function uniquePart(): string {
  const nanos = Date.now() % 1000 * 1_000_000 + Math.floor(Math.random() * 1_000_000);
  const b = crypto.getRandomValues(new Uint8Array(3));
  const b64 = btoa(String.fromCharCode(...b)).replaceAll("+", "-").replaceAll("/", "_");
  return `${nanos}-${b64}`;
}

function desc(d: {
  mediaType?: string;
  digest?: string;
  size?: number;
  annotations?: Record<string, string>;
}): Descriptor {
  return {
    mediaType: d.mediaType ?? "",
    digest: d.digest ?? "",
    size: d.size ?? 0,
    annotations: { ...d.annotations },
  };
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of body) {
    chunks.push(c.slice());
    n += c.length;
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

async function drain(body: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const _ of body) { /* skip */ }
}

async function readJSON(client: Client, digest: string): Promise<Record<string, unknown>> {
  const bytes = await new Response(client.content.read(digest)).bytes();
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** Add labels to a blob, one `labels.<k>` path each (as ctr). */
async function label(client: Client, digest: string, labels: Record<string, string>) {
  const keys = Object.keys(labels);
  if (keys.length === 0) return;
  await client.content.update(digest, labels, { fields: keys.map((k) => `labels.${k}`) });
}

/**
 * Import an OCI image-layout tar (`ctr images import FILE`): store its blobs, label them for
 * GC as ctr does, create or update the image records and unpack the layers.
 *
 * Throws NotImplementedError for docker-save archives (`manifest.json`, no `index.json`),
 * InvalidArgumentError for other non-OCI tars, and the daemon's errors otherwise.
 *
 * @example
 * ```ts
 * import { connect, importArchive } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * const images = await importArchive(client.withNamespace("build"), "./testbox.tar", {
 *   snapshotter: "native",
 * });
 * for (const img of images) console.log(img.name, img.chainIDs.at(-1));
 * ```
 */
export async function importArchive(
  client: Client,
  path: string,
  options: ImportOptions = {},
): Promise<ImportedImage[]> {
  const signal = options.signal;
  const so: CallOptions = signal ? { signal } : {};
  const images: ImportedImage[] = [];
  {
    await using lease = await client.leases.create({ expiresInMs: LEASE_MS, ...so });
    const c = client.withLease(lease);

    // (1) every blob of the archive, in tar order.
    let indexBytes: Uint8Array | undefined;
    let docker = false;
    using file = await Deno.open(path);
    for await (const entry of readTar(file.readable)) {
      signal?.throwIfAborted();
      const name = entry.header.name.replace(/^(\.\/)+/, "");
      if (entry.header.type !== "file") {
        await drain(entry.body);
        continue;
      }
      const blob = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name);
      if (name === "index.json") {
        indexBytes = await collect(entry.body);
        const digest = sha256(indexBytes);
        await c.content.write("tar-index.json", indexBytes, { expected: digest, ...so });
        options.onProgress?.({ stage: "blob", digest, size: indexBytes.length });
      } else if (blob) {
        const digest = `sha256:${blob[1]}`;
        await c.content.write(`tar-${name}`, entry.body, {
          total: entry.header.size,
          expected: digest,
          ...so,
        });
        await drain(entry.body);
        options.onProgress?.({ stage: "blob", digest, size: entry.header.size });
      } else {
        if (name === "manifest.json" || name === "repositories") docker = true;
        await drain(entry.body);
      }
    }
    if (indexBytes === undefined) {
      if (docker) {
        throw new NotImplementedError(
          `${path}: docker-save archives (manifest.json) are not supported by importArchive; ` +
            "use an OCI image-layout archive (index.json) or `ctr images import`",
        );
      }
      throw new InvalidArgumentError(`${path}: not an OCI image layout archive (no index.json)`);
    }

    // (2) gc.ref labels: index → manifests, manifest → config and layers.
    const index = JSON.parse(new TextDecoder().decode(indexBytes)) as {
      manifests?: Parameters<typeof desc>[0][];
    };
    const entries = (index.manifests ?? []).map(desc);
    await label(
      c,
      sha256(indexBytes),
      Object.fromEntries(entries.map((m, i) => [`containerd.io/gc.ref.content.m.${i}`, m.digest])),
    );
    const parsed = new Map<string, { config: Descriptor; layers: Descriptor[] }>();
    for (const m of entries) {
      if (INDEX_TYPES.has(m.mediaType)) {
        throw new NotImplementedError(`${path}: nested image indexes are not supported`);
      }
      if (!MANIFEST_TYPES.has(m.mediaType) || parsed.has(m.digest)) continue;
      const manifest = await readJSON(c, m.digest) as {
        config?: Parameters<typeof desc>[0];
        layers?: Parameters<typeof desc>[0][];
      };
      const config = desc(manifest.config ?? {});
      const layers = (manifest.layers ?? []).map(desc);
      const labels: Record<string, string> = {
        "containerd.io/gc.ref.content.config": config.digest,
      };
      layers.forEach((l, i) => labels[`containerd.io/gc.ref.content.l.${i}`] = l.digest);
      await label(c, m.digest, labels);
      parsed.set(m.digest, { config, layers });
    }

    // (3) image records: update the target, create when absent.
    for (const m of entries) {
      const name = m.annotations?.["io.containerd.image.name"] ||
        m.annotations?.["org.opencontainers.image.ref.name"] || "";
      const p = parsed.get(m.digest);
      if (!name || !p) continue;
      try {
        await c.images.update({ name, target: m }, { fields: ["target"], ...so });
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
        await c.images.create({ name, target: m }, so);
      }
      options.onProgress?.({ stage: "image", name, digest: m.digest, size: m.size });
      images.push({
        name,
        target: m,
        config: p.config,
        layers: p.layers,
        diffIDs: [],
        chainIDs: [],
      });
    }
  } // lease deleted

  // (4) config diff_ids, and the unpack under a second lease.
  for (const img of images) {
    const config = await readJSON(client, img.config.digest) as {
      rootfs?: { diff_ids?: string[] };
    };
    img.diffIDs = config.rootfs?.diff_ids ?? [];
    if (img.diffIDs.length !== img.layers.length) {
      throw new InvalidArgumentError(
        `image ${img.name}: ${img.layers.length} layers but ${img.diffIDs.length} diff_ids`,
      );
    }
    img.chainIDs = chainIDs(img.diffIDs);
  }
  if (options.unpack === false || images.length === 0) return images;

  let snapshotter = options.snapshotter;
  if (snapshotter === undefined) {
    const ns = await client.namespaces.get(client.namespace, so);
    snapshotter = ns.labels["containerd.io/defaults/snapshotter"] || DEFAULT_SNAPSHOTTER;
  }
  await using lease = await client.leases.create({ expiresInMs: LEASE_MS, ...so });
  const c = client.withLease(lease);
  const unpacked = new Set<string>();
  for (const img of images) {
    img.snapshotter = snapshotter;
    if (unpacked.has(img.config.digest)) continue;
    let parent = "";
    for (let i = 0; i < img.layers.length; i++) {
      signal?.throwIfAborted();
      const layer = img.layers[i]!, diffID = img.diffIDs[i]!, chainID = img.chainIDs[i]!;
      let exists = true;
      try {
        await c.snapshots.stat(chainID, { snapshotter, ...so });
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
        exists = false;
      }
      if (!exists) {
        const key = `extract-${uniquePart()} ${chainID}`;
        const mounts = await c.snapshots.prepare(key, parent, { snapshotter, ...so });
        try {
          const applied = await c.diff.apply(layer, mounts, so);
          if (applied.digest !== diffID) {
            throw new FailedPreconditionError(
              `wrong diff id calculated on extraction "${applied.digest}", expected "${diffID}"`,
            );
          }
          try {
            await c.snapshots.commit(chainID, key, { snapshotter, ...so });
          } catch (err) {
            if (!(err instanceof AlreadyExistsError)) throw err;
            await c.snapshots.remove(key, { snapshotter, ...so });
          }
        } catch (err) {
          await c.snapshots.remove(key, { snapshotter }).catch(() => {});
          throw err;
        }
      }
      await label(c, layer.digest, { "containerd.io/uncompressed": diffID });
      options.onProgress?.({
        stage: "layer",
        digest: layer.digest,
        size: layer.size,
        chainID,
        skipped: exists,
      });
      parent = chainID;
    }
    if (parent) {
      await label(c, img.config.digest, {
        [`containerd.io/gc.ref.snapshot.${snapshotter}`]: parent,
      });
    }
    unpacked.add(img.config.digest);
  }
  return images;
}
