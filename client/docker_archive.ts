/**
 * The pieces of containerd 1.6's archive importer that have to agree with it byte for byte
 * when a `docker save` archive is imported: Go-compatible JSON encoding of the synthesized
 * manifest and index, Docker reference normalization (`alpine` →
 * `docker.io/library/alpine:latest`), the OCI ref name derived from it, Go's `path.Clean`,
 * and the lenient (Go `encoding/json`) reading of `manifest.json`, `oci-layout` and
 * descriptors.
 *
 * @example
 * ```ts
 * import { normalizeDockerRef, ociRefName } from "./docker_archive.ts";
 * const name = normalizeDockerRef("busybox"); // "docker.io/library/busybox:latest"
 * ociRefName(name); // "latest"
 * ```
 * @module
 */
import { InvalidArgumentError } from "../server/errdefs.ts";
import type { Platform } from "./platforms.ts";

/** Docker's image config media type (what the importer gives a docker-save config). */
export const MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json";
/** Docker schema 2 manifest. */
export const MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
/** Docker manifest list. */
export const MEDIA_DOCKER_INDEX = "application/vnd.docker.distribution.manifest.list.v2+json";
/** Uncompressed Docker layer. */
export const MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar";
/** Gzip (or otherwise compressed) Docker layer, as the importer labels every compressed one. */
export const MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/** OCI image index. */
export const MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json";
/** OCI image manifest. */
export const MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
/** OCI image config. */
export const MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
/** The annotation naming an image for containerd. */
export const ANNOTATION_IMAGE_NAME = "io.containerd.image.name";
/** The OCI ref name annotation. */
export const ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name";

/** An OCI descriptor with every field the importer reads or writes. */
export interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
}

// ---------------------------------------------------------------------------------------
// Go encoding/json output

/**
 * A string as Go's `json.Marshal` writes it: `<`, `>`, `&`, U+2028 and U+2029 as `\u....`,
 * control characters other than `\n`, `\r`, `\t` as `\u00xx`, everything else as is.
 */
export function goJSONString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || ch === "<" || ch === ">" || ch === "&" || c === 0x2028 || c === 0x2029) {
      out += "\\u" + c.toString(16).padStart(4, "0");
    } else if (c >= 0xd800 && c <= 0xdfff) out += "\ufffd"; // lone surrogate
    else out += ch;
  }
  return out + '"';
}

function goStringMap(m: Record<string, string>): string {
  // Go sorts map keys by their bytes; UTF-16 order agrees for the keys that occur here.
  const keys = Object.keys(m).sort((a, b) => {
    const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      if (x[i] !== y[i]) return x[i]! - y[i]!;
    }
    return x.length - y.length;
  });
  return "{" + keys.map((k) => `${goJSONString(k)}:${goJSONString(m[k]!)}`).join(",") + "}";
}

function goPlatformJSON(p: Platform): string {
  let s = `{"architecture":${goJSONString(p.architecture)},"os":${goJSONString(p.os)}`;
  if (p.osVersion) s += `,"os.version":${goJSONString(p.osVersion)}`;
  if (p.osFeatures && p.osFeatures.length > 0) {
    s += `,"os.features":[${p.osFeatures.map(goJSONString).join(",")}]`;
  }
  if (p.variant) s += `,"variant":${goJSONString(p.variant)}`;
  return s + "}";
}

/** An `ocispec.Descriptor` as Go marshals it (field order, omitempty). */
export function goDescriptorJSON(d: OciDescriptor): string {
  let s = "{";
  if (d.mediaType) s += `"mediaType":${goJSONString(d.mediaType)},`;
  s += `"digest":${goJSONString(d.digest)},"size":${d.size}`;
  if (d.urls && d.urls.length > 0) s += `,"urls":[${d.urls.map(goJSONString).join(",")}]`;
  if (d.annotations && Object.keys(d.annotations).length > 0) {
    s += `,"annotations":${goStringMap(d.annotations)}`;
  }
  if (d.platform) s += `,"platform":${goPlatformJSON(d.platform)}`;
  return s + "}";
}

/** The manifest the importer writes for one `manifest.json` entry. */
export function dockerManifestJSON(config: OciDescriptor, layers: OciDescriptor[]): string {
  return `{"schemaVersion":2,"mediaType":${goJSONString(MEDIA_DOCKER_MANIFEST)},` +
    `"config":${goDescriptorJSON(config)},` +
    `"layers":[${layers.map(goDescriptorJSON).join(",")}]}`;
}

/** The index the importer writes over a docker-save archive (`manifests` null when empty). */
export function ociIndexJSON(manifests: OciDescriptor[]): string {
  const list = manifests.length === 0 ? "null" : `[${manifests.map(goDescriptorJSON).join(",")}]`;
  return `{"schemaVersion":2,"manifests":${list}}`;
}

// ---------------------------------------------------------------------------------------
// Go encoding/json input: case-insensitive keys, null leaves the zero value, wrong types fail

/**
 * The value of struct field `name` in a decoded JSON object as Go would pick it: the last
 * key equal to `name` ignoring case.
 */
export function goField(obj: Record<string, unknown>, name: string): unknown {
  const lower = name.toLowerCase();
  let value: unknown;
  for (const [k, v] of Object.entries(obj)) {
    if (k === name || k.toLowerCase() === lower) value = v;
  }
  return value;
}

function typeError(what: string, want: string, got: unknown): InvalidArgumentError {
  const kind = got === null ? "null" : Array.isArray(got) ? "array" : typeof got;
  return new InvalidArgumentError(`${what}: cannot decode a JSON ${kind} as ${want}`);
}

/** A JSON object (or null → undefined); anything else is a decode error. */
export function goObject(v: unknown, what: string): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw typeError(what, "an object", v);
  return v as Record<string, unknown>;
}

/** A JSON string field ("" when absent or null). */
export function goString(v: unknown, what: string): string {
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw typeError(what, "a string", v);
  return v;
}

/** A JSON string array field (undefined when absent or null). */
export function goStrings(v: unknown, what: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw typeError(what, "a string array", v);
  return v.map((x, i) => goString(x, `${what}[${i}]`));
}

function goInt(v: unknown, what: string): number {
  if (v === undefined || v === null) return 0;
  if (typeof v !== "number" || !Number.isInteger(v)) throw typeError(what, "an integer", v);
  return v;
}

/** Parse JSON text, naming `what` when it is not JSON. */
export function parseJSON(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new InvalidArgumentError(`${what}: not valid JSON: ${(err as Error).message}`);
  }
}

/** An `ocispec.Platform` from decoded JSON. */
export function decodePlatform(v: unknown, what: string): Platform | undefined {
  const o = goObject(v, what);
  if (!o) return undefined;
  const p: Platform = {
    architecture: goString(goField(o, "architecture"), `${what}.architecture`),
    os: goString(goField(o, "os"), `${what}.os`),
  };
  const osVersion = goString(goField(o, "os.version"), `${what}.os.version`);
  if (osVersion) p.osVersion = osVersion;
  const osFeatures = goStrings(goField(o, "os.features"), `${what}.os.features`);
  if (osFeatures) p.osFeatures = osFeatures;
  const variant = goString(goField(o, "variant"), `${what}.variant`);
  if (variant) p.variant = variant;
  return p;
}

/** An `ocispec.Descriptor` from decoded JSON. */
export function decodeDescriptor(v: unknown, what: string): OciDescriptor {
  const o = goObject(v, what) ?? {};
  const d: OciDescriptor = {
    mediaType: goString(goField(o, "mediaType"), `${what}.mediaType`),
    digest: goString(goField(o, "digest"), `${what}.digest`),
    size: goInt(goField(o, "size"), `${what}.size`),
  };
  const urls = goStrings(goField(o, "urls"), `${what}.urls`);
  if (urls) d.urls = urls;
  const ann = goObject(goField(o, "annotations"), `${what}.annotations`);
  if (ann) {
    d.annotations = {};
    for (const [k, val] of Object.entries(ann)) {
      d.annotations[k] = goString(val, `${what}.annotations.${k}`);
    }
  }
  const platform = decodePlatform(goField(o, "platform"), `${what}.platform`);
  if (platform) d.platform = platform;
  return d;
}

/** One entry of a docker-save `manifest.json`. */
export interface DockerManifestEntry {
  /** Archive path of the image config. */
  config: string;
  /** The image's names as written by docker (`busybox:latest`); may be empty. */
  repoTags: string[];
  /** Archive paths of the layer tars, bottom first. */
  layers: string[];
}

/** `manifest.json` of a docker-save archive; null for a JSON `null`. */
export function decodeDockerManifest(v: unknown): DockerManifestEntry[] | null {
  if (v === null) return null;
  if (!Array.isArray(v)) throw typeError("manifest.json", "an array", v);
  return v.map((e, i) => {
    const o = goObject(e, `manifest.json[${i}]`) ?? {};
    return {
      config: goString(goField(o, "Config"), `manifest.json[${i}].Config`),
      repoTags: goStrings(goField(o, "RepoTags"), `manifest.json[${i}].RepoTags`) ?? [],
      layers: goStrings(goField(o, "Layers"), `manifest.json[${i}].Layers`) ?? [],
    };
  });
}

// ---------------------------------------------------------------------------------------
// Go's path package

/** Go's `path.Clean`: lexical normalization of a slash-separated path. */
export function goPathClean(p: string): string {
  if (p === "") return ".";
  const rooted = p.startsWith("/");
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(part);
  }
  const s = (rooted ? "/" : "") + out.join("/");
  return s === "" ? "." : s;
}

/** Go's `path.Join(path.Dir(name), target)`: where a symlink member points. */
export function symlinkTarget(name: string, target: string): string {
  const i = name.lastIndexOf("/");
  const dir = goPathClean(name.slice(0, i + 1));
  const parts = [dir, target].filter((x) => x !== "");
  return goPathClean(parts.join("/"));
}

// ---------------------------------------------------------------------------------------
// References

const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?`;
const NAME_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*";
const NAME = `(?:${DOMAIN}/)?${NAME_COMPONENT}(?:/${NAME_COMPONENT})*`;
const TAG = "[\\w][\\w.-]{0,127}";
const DIGEST = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}";
const REFERENCE = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@(${DIGEST}))?$`);
const VALID_DIGEST = /^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$/;

/**
 * Normalize a Docker reference as containerd's `reference/docker.ParseDockerRef` does:
 * `docker.io` for names without a registry, `library/` for official images, `:latest` when
 * neither tag nor digest is given, and only the digest when both are. Throws
 * InvalidArgumentError for a reference Docker would refuse.
 */
export function normalizeDockerRef(ref: string): string {
  const bad = (why: string) => new InvalidArgumentError(`normalize image ref "${ref}": ${why}`);
  if (/^[a-f0-9]{64}$/.test(ref)) {
    throw bad("cannot specify 64-byte hexadecimal strings as a repository name");
  }
  let domain: string, remainder: string;
  const slash = ref.indexOf("/");
  const first = slash === -1 ? "" : ref.slice(0, slash);
  if (slash === -1 || (!/[.:]/.test(first) && first !== "localhost")) {
    domain = "docker.io";
    remainder = ref;
  } else {
    domain = first;
    remainder = ref.slice(slash + 1);
  }
  if (domain === "index.docker.io") domain = "docker.io";
  if (domain === "docker.io" && !remainder.includes("/")) remainder = `library/${remainder}`;
  const colon = remainder.indexOf(":");
  const remoteName = colon === -1 ? remainder : remainder.slice(0, colon);
  if (remoteName.toLowerCase() !== remoteName) {
    throw bad("invalid reference format: repository name must be lowercase");
  }
  const full = `${domain}/${remainder}`;
  const m = REFERENCE.exec(full);
  if (!m) {
    if (REFERENCE.test(full.toLowerCase())) throw bad("repository name must be lowercase");
    throw bad("invalid reference format");
  }
  const name = m[1]!, tag = m[2], digest = m[3];
  if (name.length > 255) throw bad("repository name must not be more than 255 characters");
  if (digest !== undefined) {
    if (!VALID_DIGEST.test(digest)) throw bad("invalid digest format");
    return `${name}@${digest}`;
  }
  return `${name}:${tag ?? "latest"}`;
}

/**
 * The OCI ref name containerd puts beside a full image name: what follows the repository
 * (the tag, or `@digest`), or the name itself when it has no host part.
 */
export function ociRefName(name: string): string {
  if (name.includes("://")) return name;
  const slash = name.indexOf("/");
  const host = slash === -1 ? name : name.slice(0, slash);
  if (host === "" || /[@?#]/.test(host)) return name;
  const path = slash === -1 ? "" : name.slice(slash);
  const at = path.search(/[:@]/);
  if (at === -1) return "";
  const object = path.slice(at);
  return object.startsWith(":") ? object.slice(1) : object;
}
