/**
 * `importArchive`: what `ctr images import` does, through the typed client, for OCI
 * image-layout archives and `docker save` archives alike, read from a file or a stream.
 *
 * Under a lease (deleted at the end) every regular file of the tar except `oci-layout` and
 * `manifest.json` is written to the content store (as ingest `tar-<path>`). An OCI archive
 * (`oci-layout` version 1.0.0) is then described by its `index.json`. For a docker-save
 * archive the manifest and index containerd 1.6's importer would synthesize are written,
 * byte for byte the same: a Docker schema 2 manifest per `manifest.json` entry (layers that
 * already have a compressed twin labelled `containerd.io/uncompressed` in the namespace are
 * replaced by it; others get the Docker tar or tar+gzip media type from their first bytes),
 * the platform from the image config, and one index entry per `RepoTags` name, normalized
 * (`busybox:1` → `docker.io/library/busybox:1`). Then, as ctr by default: the index is walked
 * for the host's platforms, each blob gets `containerd.io/gc.ref.content.*` labels for its
 * children, image records are created (or their target updated) for the entries named by
 * `io.containerd.image.name` / `org.opencontainers.image.ref.name`, and (unless
 * `unpack: false`) each image's layers are applied into snapshots keyed by their chain IDs.
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
  ANNOTATION_IMAGE_NAME,
  ANNOTATION_REF_NAME,
  decodeDescriptor,
  decodeDockerManifest,
  type DockerManifestEntry,
  dockerManifestJSON,
  goField,
  goObject,
  goPathClean,
  goString,
  goStrings,
  MEDIA_DOCKER_CONFIG,
  MEDIA_DOCKER_INDEX,
  MEDIA_DOCKER_LAYER,
  MEDIA_DOCKER_LAYER_GZIP,
  MEDIA_DOCKER_MANIFEST,
  MEDIA_OCI_CONFIG,
  MEDIA_OCI_INDEX,
  MEDIA_OCI_MANIFEST,
  normalizeDockerRef,
  type OciDescriptor,
  ociIndexJSON,
  ociRefName,
  parseJSON,
  symlinkTarget,
} from "./docker_archive.ts";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "./errors.ts";
import type { Descriptor } from "./images.ts";
import type { Lease } from "./leases.ts";
import {
  ALL_PLATFORMS,
  defaultMatcher,
  normalizePlatform,
  parsePlatform,
  type PlatformMatcher,
  strictMatcher,
} from "./platforms.ts";
import type { CallOptions } from "./rpc.ts";
import { DEFAULT_SNAPSHOTTER } from "./snapshots.ts";
import { concatBytes } from "../server/bytes.ts";

/** What `onProgress` reports. */
export interface ImportProgress {
  /**
   * `blob`: a tar member (or a synthesized manifest/index) was stored; `image`: a record
   * written; `layer`: a layer unpacked.
   */
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

/** Options of {@link importArchive}; the defaults are ctr's. */
export interface ImportOptions {
  /**
   * Snapshotter to unpack into. Default: the namespace's `containerd.io/defaults/snapshotter`
   * label, else `overlayfs`.
   */
  snapshotter?: string;
  /** Unpack the layers into snapshots (default true; ctr's `--no-unpack` is `false`). */
  unpack?: boolean;
  /**
   * Take only this platform (`os/arch[/variant]`, ctr's `--platform`): children of other
   * platforms are not labelled, and images are unpacked for it. Default: the host's
   * platforms (linux/amd64 and linux/386 on an amd64 host).
   */
  platform?: string;
  /** Label the content of every platform (ctr's `--all-platforms`); default false. */
  allPlatforms?: boolean;
  /**
   * ctr's `--base-name`: OCI entries named only by a tag (`org.opencontainers.image.ref.name`
   * without `/`, `:` or `@`) become `<baseName>:<tag>`, and entries with a full name outside
   * `baseName` are not imported. Default: `import-<yyyy-mm-dd>` (local date) as a prefix for
   * tag-only names, nothing filtered.
   */
  baseName?: string;
  /** Also create an image record of this name for the archive's index (`--index-name`). */
  indexName?: string;
  /** Called as blobs, images and layers are done. */
  onProgress?: (progress: ImportProgress) => void;
  /** Cancels the import. */
  signal?: AbortSignal;
}

/** An imported image. */
export interface ImportedImage {
  name: string;
  /** The image record's target: the index entry, annotations included. */
  target: Descriptor;
  /** The config of the manifest chosen for the platform. */
  config: Descriptor;
  layers: Descriptor[];
  /** Uncompressed layer digests (from the config). */
  diffIDs: string[];
  /** Snapshot names, bottom first (`chainIDs(diffIDs)`). */
  chainIDs: string[];
  /** Where the layers were unpacked; undefined with `unpack: false`. */
  snapshotter?: string;
}

const INDEX_TYPES = new Set([MEDIA_OCI_INDEX, MEDIA_DOCKER_INDEX]);
const MANIFEST_TYPES = new Set([MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST]);
const CONFIG_TYPES = new Set([
  MEDIA_DOCKER_CONFIG,
  MEDIA_OCI_CONFIG,
  "application/vnd.containerd.container.criu.checkpoint.criu.tar",
  "application/vnd.containerd.container.checkpoint.config.v1+proto",
]);
const DOCKER_LAYER_TYPES = new Set([
  MEDIA_DOCKER_LAYER,
  MEDIA_DOCKER_LAYER_GZIP,
  "application/vnd.docker.image.rootfs.foreign.diff.tar",
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
]);
const UNCOMPRESSED_LABEL = "containerd.io/uncompressed";
const LEASE_MS = 24 * 3600 * 1000;
/** Largest `oci-layout` / `manifest.json` read (the importer's limit). */
const JSON_LIMIT = 20 * 1024 * 1024;

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

/** The image-record form of a descriptor. */
function recordTarget(d: OciDescriptor): Descriptor {
  return {
    mediaType: d.mediaType,
    digest: d.digest,
    size: d.size,
    annotations: { ...d.annotations },
  };
}

async function collect(body: AsyncIterable<Uint8Array>, limit = Infinity): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of body) {
    if (n >= limit) continue; // drain the rest
    const part = n + c.length > limit ? c.subarray(0, limit - n) : c;
    chunks.push(part.slice());
    n += part.length;
  }
  return concatBytes(chunks, n);
}

async function drain(body: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const _ of body) { /* skip */ }
}

async function readBlob(client: Client, digest: string, so: CallOptions): Promise<Uint8Array> {
  return await new Response(client.content.read(digest, so)).bytes();
}

/** Add labels to a blob, one `labels.<k>` path each (as ctr). */
async function label(
  client: Client,
  digest: string,
  labels: Record<string, string>,
  so: CallOptions = {},
) {
  const keys = Object.keys(labels);
  if (keys.length === 0) return;
  await client.content.update(digest, labels, { fields: keys.map((k) => `labels.${k}`), ...so });
}

/** The compression a blob starts with (containerd's DetectCompression). */
function compressed(head: Uint8Array): boolean {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return true;
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f) {
    if (head[3] === 0xfd) return true;
  }
  if (head.length >= 8) {
    const magic = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
    if ((magic & 0xfffffff0) >>> 0 === 0x184d2a50) return true; // zstd skippable frame
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// (1) reading the archive

/** What the tar held, as the importer keeps it. */
interface Scanned {
  /** `imageLayoutVersion` of `oci-layout`, "" without one. */
  layoutVersion: string;
  /** `manifest.json`, null without one. */
  dockerManifests: DockerManifestEntry[] | null;
  /** Symlink member (name as archived) → cleaned target path. */
  symlinks: Map<string, string>;
  /** Cleaned member path → the blob it was stored as. */
  blobs: Map<string, { digest: string; size: number }>;
}

/** A body that hashes what passes through it. */
async function* hashing(
  body: AsyncIterable<Uint8Array>,
  hash: ReturnType<typeof createHash>,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    hash.update(chunk);
    yield chunk;
  }
}

async function scan(
  c: Client,
  stream: AsyncIterable<Uint8Array>,
  options: ImportOptions,
  so: CallOptions,
): Promise<Scanned> {
  const out: Scanned = {
    layoutVersion: "",
    dockerManifests: null,
    symlinks: new Map(),
    blobs: new Map(),
  };
  for await (const entry of readTar(stream)) {
    options.signal?.throwIfAborted();
    const { header } = entry;
    if (header.typeflag === "2") {
      out.symlinks.set(header.name, symlinkTarget(header.name, header.linkname));
    }
    // Regular files only ('0', or NUL without a trailing slash), as Go's tar reader has them.
    const regular = header.typeflag === "0" || (header.typeflag === "\0" && header.type === "file");
    if (!regular) {
      await drain(entry.body);
      continue;
    }
    const name = goPathClean(header.name);
    if (name === "oci-layout") {
      const layout = goObject(
        parseJSON(await collect(entry.body, JSON_LIMIT), "oci-layout"),
        "oci-layout",
      );
      const version = layout && goField(layout, "imageLayoutVersion");
      if (version !== undefined && version !== null) {
        out.layoutVersion = goString(version, "oci-layout.imageLayoutVersion");
      }
      continue;
    }
    if (name === "manifest.json") {
      const json = parseJSON(await collect(entry.body, JSON_LIMIT), "manifest.json");
      out.dockerManifests = decodeDockerManifest(json);
      continue;
    }
    const hash = createHash("sha256");
    let digest: string;
    try {
      const res = await c.content.write(`tar-${name}`, hashing(entry.body, hash), {
        total: header.size,
        ...so,
      });
      await drain(entry.body);
      digest = res.digest;
    } catch (err) {
      // The blob is there already: the commit says so once every byte went through `hash`.
      if (!(err instanceof AlreadyExistsError)) throw err;
      await drain(entry.body);
      digest = "sha256:" + hash.digest("hex");
    }
    out.blobs.set(name, { digest, size: header.size });
    options.onProgress?.({ stage: "blob", digest, size: header.size });
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// (2) docker-save archives: the manifests and index containerd synthesizes

async function writeJSONBlob(
  c: Client,
  json: string,
  mediaType: string,
  options: ImportOptions,
  so: CallOptions,
): Promise<OciDescriptor> {
  const bytes = new TextEncoder().encode(json);
  const digest = sha256(bytes);
  await c.content.write(`manifest-${digest}`, bytes, { expected: digest, ...so });
  options.onProgress?.({ stage: "blob", digest, size: bytes.length });
  return { mediaType, digest, size: bytes.length };
}

async function head(c: Client, digest: string, so: CallOptions): Promise<Uint8Array> {
  return await new Response(c.content.read(digest, { size: 10, ...so })).bytes();
}

/** Layer descriptors of one manifest.json entry (the importer's resolveLayers). */
async function resolveLayers(
  c: Client,
  files: string[],
  blobs: Scanned["blobs"],
  so: CallOptions,
): Promise<OciDescriptor[]> {
  const layers: OciDescriptor[] = files.map((f) => {
    const b = blobs.get(f);
    if (!b) throw new NotFoundError(`failed to resolve layers: layer "${f}" not found`);
    return { mediaType: "", digest: b.digest, size: b.size };
  });
  const byDigest = new Map<string, OciDescriptor>();
  for (const l of layers) byDigest.set(l.digest, l); // the last of equal layers, as Go's map
  if (layers.length > 0) {
    // A compressed blob already known to hold this tar stands in for it.
    const twins = await c.content.list({
      filters: layers.map((l) => `labels."${UNCOMPRESSED_LABEL}"==${l.digest}`),
      ...so,
    });
    twins.sort((a, b) => a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0);
    for (const info of twins) {
      const layer = byDigest.get(info.labels[UNCOMPRESSED_LABEL] ?? "");
      if (!layer) continue;
      layer.digest = info.digest;
      layer.size = info.size;
      const h = await head(c, info.digest, so);
      layer.mediaType = h.length < 10 || !compressed(h)
        ? MEDIA_DOCKER_LAYER
        : MEDIA_DOCKER_LAYER_GZIP;
    }
  }
  for (const layer of layers) {
    if (layer.mediaType !== "") continue;
    layer.mediaType = compressed(await head(c, layer.digest, so))
      ? MEDIA_DOCKER_LAYER_GZIP
      : MEDIA_DOCKER_LAYER;
  }
  return layers;
}

/** Write the manifests and the index for a docker-save archive; returns the index. */
async function synthesizeIndex(
  c: Client,
  scanned: Scanned,
  options: ImportOptions,
  so: CallOptions,
): Promise<OciDescriptor> {
  const blobs = scanned.blobs;
  for (const [name, target] of scanned.symlinks) {
    const b = blobs.get(target);
    if (!b) {
      throw new NotFoundError(`no target for symlink layer from "${name}" to "${target}"`);
    }
    blobs.set(name, b);
  }
  const entries: OciDescriptor[] = [];
  for (const m of scanned.dockerManifests ?? []) {
    const cfg = blobs.get(m.config);
    if (!cfg) throw new NotFoundError(`image config "${m.config}" not found`);
    const config: OciDescriptor = { mediaType: MEDIA_DOCKER_CONFIG, ...cfg };
    const layers = await resolveLayers(c, m.layers, blobs, so);
    const desc = await writeJSONBlob(
      c,
      dockerManifestJSON(config, layers),
      MEDIA_DOCKER_MANIFEST,
      options,
      so,
    );
    const image = goObject(
      parseJSON(await readBlob(c, config.digest, so), `image config ${config.digest}`),
      `image config ${config.digest}`,
    ) ?? {};
    desc.platform = normalizePlatform({
      os: goString(goField(image, "os"), `image config ${config.digest}: os`),
      architecture: goString(
        goField(image, "architecture"),
        `image config ${config.digest}: architecture`,
      ),
    });
    if (m.repoTags.length === 0) {
      entries.push(desc);
      continue;
    }
    for (const ref of m.repoTags) {
      const name = normalizeDockerRef(ref);
      entries.push({
        ...desc,
        annotations: { [ANNOTATION_IMAGE_NAME]: name, [ANNOTATION_REF_NAME]: ociRefName(name) },
      });
    }
  }
  return await writeJSONBlob(c, ociIndexJSON(entries), MEDIA_OCI_INDEX, options, so);
}

// ---------------------------------------------------------------------------------------
// (3) walking the index: names, platform filter, gc.ref labels

/** The importer's checks that a manifest is a manifest and an index an index. */
function checkMediaType(doc: Record<string, unknown>, mediaType: string, digest: string) {
  const mt = goString(goField(doc, "mediaType"), `${digest}: mediaType`);
  // `config` counts when present at all (even null); the lists when non-empty.
  const has = (k: string) => {
    const v = goField(doc, k);
    return k === "config" ? v !== undefined : Array.isArray(v) && v.length > 0;
  };
  if (has("fsLayers")) {
    throw new InvalidArgumentError(`${digest}: media-type: schema 1 not supported`);
  }
  if (MANIFEST_TYPES.has(mediaType) && (has("manifests") || INDEX_TYPES.has(mt))) {
    throw new InvalidArgumentError(
      `${digest}: media-type: expected manifest but found index (${mediaType})`,
    );
  }
  if (INDEX_TYPES.has(mediaType) && (has("config") || has("layers") || MANIFEST_TYPES.has(mt))) {
    throw new InvalidArgumentError(
      `${digest}: media-type: expected index but found manifest (${mediaType})`,
    );
  }
}

async function readDoc(
  c: Client,
  d: OciDescriptor,
  so: CallOptions,
  check = true,
): Promise<Record<string, unknown>> {
  const what = `${d.mediaType} ${d.digest}`;
  const doc = goObject(parseJSON(await readBlob(c, d.digest, so), what), what) ?? {};
  if (check) checkMediaType(doc, d.mediaType, d.digest);
  return doc;
}

function descriptors(v: unknown, what: string): OciDescriptor[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new InvalidArgumentError(`${what}: not an array`);
  return v.map((d, i) => decodeDescriptor(d, `${what}[${i}]`));
}

/** A blob's children (containerd's images.Children). */
async function children(c: Client, d: OciDescriptor, so: CallOptions): Promise<OciDescriptor[]> {
  if (MANIFEST_TYPES.has(d.mediaType)) {
    const doc = await readDoc(c, d, so);
    const config = decodeDescriptor(goField(doc, "config"), `${d.digest}: config`);
    return [config, ...descriptors(goField(doc, "layers"), `${d.digest}: layers`)];
  }
  if (INDEX_TYPES.has(d.mediaType)) {
    return descriptors(goField(await readDoc(c, d, so), "manifests"), `${d.digest}: manifests`);
  }
  return [];
}

function isLayerType(mt: string): boolean {
  return mt.startsWith("application/vnd.oci.image.layer.") ||
    DOCKER_LAYER_TYPES.has(mt.split("+")[0]!);
}

/** The gc.ref label (prefix) a parent gets for a child (containerd's ChildGCLabels). */
function childLabel(mt: string): string {
  if (CONFIG_TYPES.has(mt)) return "containerd.io/gc.ref.content.config";
  if (MANIFEST_TYPES.has(mt)) return "containerd.io/gc.ref.content.m.";
  if (isLayerType(mt)) return "containerd.io/gc.ref.content.l.";
  return "containerd.io/gc.ref.content.";
}

function childLabels(kids: OciDescriptor[]): Record<string, string> {
  const labels: Record<string, string> = {};
  const seen = new Map<string, number>();
  for (const k of kids) {
    let key = childLabel(k.mediaType);
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    if (n > 0 || key.endsWith(".")) key += n;
    labels[key] = k.digest;
  }
  return labels;
}

function localDate(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/** ctr's translation of `org.opencontainers.image.ref.name` values. */
function refTranslator(baseName: string | undefined): (ref: string) => string {
  const image = baseName || `import-${localDate()}`;
  const filter = !!baseName;
  return (ref) => {
    if (!/[/:@]/.test(ref)) return `${image}:${ref}`;
    if (filter) {
      if (!ref.startsWith(image)) return "";
      const next = ref[image.length];
      if (next !== undefined && next !== "/" && next !== ":" && next !== "@") return "";
    }
    return ref;
  };
}

/** Image records (name, target) found at the top of the index, after labelling the tree. */
async function walkIndex(
  c: Client,
  index: OciDescriptor,
  matcher: PlatformMatcher,
  translate: (ref: string) => string,
  so: CallOptions,
  signal: AbortSignal | undefined,
): Promise<{ name: string; target: OciDescriptor }[]> {
  const records: { name: string; target: OciDescriptor }[] = [];
  let empty = true;
  const visit = async (d: OciDescriptor): Promise<void> => {
    signal?.throwIfAborted();
    let kids: OciDescriptor[];
    if (d.digest === index.digest) {
      const doc = await readDoc(c, d, so, false);
      kids = descriptors(goField(doc, "manifests"), `${d.digest}: manifests`);
      for (const m of kids) {
        let name = m.annotations?.[ANNOTATION_IMAGE_NAME] ?? "";
        if (!name) {
          name = m.annotations?.[ANNOTATION_REF_NAME] ?? "";
          if (name) name = translate(name);
        }
        if (name) records.push({ name, target: m });
      }
    } else {
      kids = await children(c, d, so);
    }
    kids = kids.filter((k) => !k.platform || matcher.match(k.platform));
    if (kids.length === 0) return;
    empty = false;
    await label(c, d.digest, childLabels(kids), so);
    for (const k of kids) await visit(k);
  };
  await visit(index);
  if (empty) {
    throw new NotFoundError(
      `index ${index.digest} has no manifest for the platform: image might be filtered out`,
    );
  }
  return records;
}

// ---------------------------------------------------------------------------------------
// (4) the manifest for the platform, and the unpack

/** The manifest an image target resolves to for `matcher` (containerd's images.Manifest). */
async function resolveManifest(
  c: Client,
  image: OciDescriptor,
  matcher: PlatformMatcher,
  so: CallOptions,
): Promise<{ config: OciDescriptor; layers: OciDescriptor[] }> {
  const found: { config: OciDescriptor; layers: OciDescriptor[] }[] = [];
  let wasIndex = false;
  const visit = async (d: OciDescriptor): Promise<void> => {
    if (MANIFEST_TYPES.has(d.mediaType)) {
      const doc = await readDoc(c, d, so);
      const config = decodeDescriptor(goField(doc, "config"), `${d.digest}: config`);
      const layers = descriptors(goField(doc, "layers"), `${d.digest}: layers`);
      if (d.digest !== image.digest) {
        if (d.platform && !matcher.match(d.platform)) return;
        if (!d.platform) {
          const cfg = await readDoc(c, config, so, false);
          const p = normalizePlatform({
            os: goString(goField(cfg, "os"), `${config.digest}: os`),
            architecture: goString(goField(cfg, "architecture"), `${config.digest}: architecture`),
          });
          if (!matcher.match(p)) return;
        }
      }
      found.push({ config, layers });
      return;
    }
    if (INDEX_TYPES.has(d.mediaType)) {
      const doc = await readDoc(c, d, so);
      const kids = descriptors(goField(doc, "manifests"), `${d.digest}: manifests`)
        .filter((k) => !k.platform || matcher.match(k.platform));
      const less = (a: OciDescriptor, b: OciDescriptor) =>
        !a.platform ? false : !b.platform ? true : matcher.less(a.platform, b.platform);
      kids.sort((a, b) => less(a, b) ? -1 : less(b, a) ? 1 : 0);
      wasIndex = true;
      for (const k of kids.slice(0, 1)) await visit(k);
      return;
    }
    throw new NotFoundError(`unexpected media type ${d.mediaType} for ${d.digest}`);
  };
  await visit(image);
  const first = found[0];
  if (!first) {
    throw new NotFoundError(
      wasIndex
        ? `no match for platform in manifest ${image.digest}`
        : `manifest ${image.digest}: not found`,
    );
  }
  return first;
}

async function diffIDsOf(c: Client, config: OciDescriptor, so: CallOptions): Promise<string[]> {
  const doc = await readDoc(c, config, so, false);
  const rootfs = goObject(goField(doc, "rootfs"), `${config.digest}: rootfs`) ?? {};
  return goStrings(goField(rootfs, "diff_ids"), `${config.digest}: rootfs.diff_ids`) ?? [];
}

/** Where the archive comes from. */
function openSource(
  source: string | URL | ReadableStream<Uint8Array>,
): Promise<{ stream: AsyncIterable<Uint8Array>; close: () => void }> {
  if (source instanceof ReadableStream) {
    return Promise.resolve({
      stream: source,
      close: () => source.cancel().catch(() => {}),
    });
  }
  return Deno.open(source).then((file) => ({
    stream: file.readable,
    close: () => {
      try {
        file.close();
      } catch {
        // closed with its stream already
      }
    },
  }));
}

/**
 * Import an image archive (`ctr images import FILE`, or `ctr images import -` for a
 * stream): an OCI image layout (`oci-layout` + `index.json` + `blobs/`) or a `docker save`
 * archive (`manifest.json`, `repositories`, `<id>/layer.tar` or `blobs/sha256/<hex>`
 * members). Stores the blobs, writes the manifest and index ctr would write for a docker
 * archive, labels everything for GC as ctr does, creates or updates the image records and
 * unpacks the layers. The result equals ctr's on the same daemon: records, blobs, labels and
 * snapshots.
 *
 * `source` is a file path (or file URL) or a byte stream of the tar; a stream is read once,
 * front to back, and is cancelled if the import fails. Layers in docker archives are stored
 * as they are (ctr's `--compress-blobs` is not offered).
 *
 * Throws InvalidArgumentError for a tar that is neither format (or malformed JSON in it),
 * NotFoundError for members `manifest.json` names but the tar lacks, for an archive with
 * nothing for the platform (ctr's "image might be filtered out"; no record is written then)
 * or an image with no manifest for the unpack platform, and the daemon's errors otherwise.
 *
 * @example
 * ```ts
 * import { connect, importArchive } from "./mod.ts";
 * await using client = connect({ address: "/run/containerd-ts/containerd-ts.sock" });
 * // a file...
 * const images = await importArchive(client.withNamespace("build"), "./testbox.tar", {
 *   snapshotter: "native",
 * });
 * for (const img of images) console.log(img.name, img.chainIDs.at(-1));
 * // ...or a stream, e.g. `docker save busybox | deno run -A this.ts`
 * await importArchive(client, Deno.stdin.readable);
 * ```
 */
export async function importArchive(
  client: Client,
  source: string | URL | ReadableStream<Uint8Array>,
  options: ImportOptions = {},
): Promise<ImportedImage[]> {
  const signal = options.signal;
  const so: CallOptions = signal ? { signal } : {};
  const what = source instanceof ReadableStream ? "archive stream" : String(source);
  const walkMatcher = options.allPlatforms
    ? ALL_PLATFORMS
    : options.platform !== undefined && options.platform !== ""
    ? strictMatcher(parsePlatform(options.platform))
    : defaultMatcher();
  const unpackMatcher = options.platform !== undefined && options.platform !== ""
    ? strictMatcher(parsePlatform(options.platform))
    : defaultMatcher();
  const records: { name: string; target: OciDescriptor }[] = [];
  // One lease over the whole import (ctr holds one for the import and one per unpack): no
  // blob can be collected between the import and the unpack.
  let lease: Lease;
  try {
    lease = await client.leases.create({ expiresInMs: LEASE_MS, ...so });
  } catch (err) {
    if (source instanceof ReadableStream) source.cancel().catch(() => {});
    throw err;
  }
  await using _lease = lease;
  const c = client.withLease(lease);

  const { stream, close } = await openSource(source);
  let scanned: Scanned;
  try {
    scanned = await scan(c, stream, options, so);
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      throw new InvalidArgumentError(`${what}: ${err.message}`, { cause: err });
    }
    throw err;
  } finally {
    close();
  }

  let index: OciDescriptor;
  if (scanned.layoutVersion !== "") {
    if (scanned.layoutVersion !== "1.0.0") {
      throw new InvalidArgumentError(
        `${what}: unsupported OCI version ${scanned.layoutVersion}`,
      );
    }
    const blob = scanned.blobs.get("index.json");
    if (!blob) throw new InvalidArgumentError(`${what}: missing index.json in OCI layout 1.0.0`);
    index = { mediaType: MEDIA_OCI_INDEX, ...blob };
  } else if (scanned.dockerManifests === null) {
    throw new InvalidArgumentError(
      `${what}: unrecognized image format (neither oci-layout nor manifest.json)`,
    );
  } else {
    index = await synthesizeIndex(c, scanned, options, so);
  }

  if (options.indexName) records.push({ name: options.indexName, target: index });
  records.push(
    ...await walkIndex(c, index, walkMatcher, refTranslator(options.baseName), so, signal),
  );
  for (const r of records) {
    const target = recordTarget(r.target);
    try {
      await c.images.update({ name: r.name, target }, { fields: ["target"], ...so });
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      await c.images.create({ name: r.name, target }, so);
    }
    options.onProgress?.({
      stage: "image",
      name: r.name,
      digest: target.digest,
      size: target.size,
    });
  }

  // The manifest of each image for the unpack platform, its config's diff_ids.
  const images: ImportedImage[] = [];
  for (const r of records) {
    const { config, layers } = await resolveManifest(c, r.target, unpackMatcher, so);
    const diffIDs = await diffIDsOf(c, config, so);
    if (diffIDs.length !== layers.length) {
      throw new InvalidArgumentError(
        `image ${r.name}: mismatched image rootfs and manifest layers ` +
          `(${layers.length} layers, ${diffIDs.length} diff_ids)`,
      );
    }
    images.push({
      name: r.name,
      target: recordTarget(r.target),
      config: recordTarget(config),
      layers: layers.map(recordTarget),
      diffIDs,
      chainIDs: chainIDs(diffIDs),
    });
  }
  if (options.unpack === false || images.length === 0) return images;

  let snapshotter = options.snapshotter;
  if (snapshotter === undefined) {
    const ns = await client.namespaces.get(client.namespace, so);
    snapshotter = ns.labels["containerd.io/defaults/snapshotter"] || DEFAULT_SNAPSHOTTER;
  }
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
      let applied = false;
      if (!exists) {
        const key = `extract-${uniquePart()} ${chainID}`;
        const mounts = await c.snapshots.prepare(key, parent, { snapshotter, ...so });
        try {
          const result = await c.diff.apply(layer, mounts, so);
          if (result.digest !== diffID) {
            throw new FailedPreconditionError(
              `wrong diff id calculated on extraction "${result.digest}", expected "${diffID}"`,
            );
          }
          try {
            await c.snapshots.commit(chainID, key, { snapshotter, ...so });
            applied = true;
          } catch (err) {
            if (!(err instanceof AlreadyExistsError)) throw err;
            await c.snapshots.remove(key, { snapshotter, ...so });
          }
        } catch (err) {
          await c.snapshots.remove(key, { snapshotter }).catch(() => {});
          throw err;
        }
      }
      // As ctr: the uncompressed digest is recorded once an apply has verified it.
      if (applied) await label(c, layer.digest, { [UNCOMPRESSED_LABEL]: diffID }, so);
      options.onProgress?.({
        stage: "layer",
        digest: layer.digest,
        size: layer.size,
        chainID,
        skipped: !applied,
      });
      parent = chainID;
    }
    if (parent) {
      await label(c, img.config.digest, {
        [`containerd.io/gc.ref.snapshot.${snapshotter}`]: parent,
      }, so);
    }
    unpacked.add(img.config.digest);
  }
  return images;
}
