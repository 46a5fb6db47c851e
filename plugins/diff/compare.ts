/**
 * The changes between two directory trees, written as a layer: containerd's fs.Changes
 * (double walk) and archive.WriteDiff, for the walking differ's Diff.
 *
 * Both trees are walked together in name order. A path only in the lower tree is a deletion
 * (a `.wh.<name>` whiteout entry); a path only in the upper tree is an addition (with
 * everything below it); a path in both is a modification when its type, mode, owner, size,
 * modification time, device numbers or symlink target differ (directories: mode, owner,
 * time). Parent directories of a change are written before it, as containerd does, so the
 * layer applies onto any base. Hardlinked files of the upper tree become one file and link
 * entries. Extended attributes are not carried (a stated limitation).
 *
 * The tar stream is hashed (the diff ID) and, for the gzip media type, compressed before it
 * is committed to the content store with the `containerd.io/uncompressed` label.
 *
 * @example
 * ```ts
 * import { treeChanges } from "./compare.ts";
 * for await (const change of treeChanges("/lower", "/upper")) console.log(change.kind, change.path);
 * ```
 * @module
 */
import {
  FailedPreconditionError,
  isAlreadyExists,
  NotImplementedError,
} from "../../server/errdefs.ts";
import { Sha256 } from "../../server/digest.ts";
import type { ScopedContentStore } from "../metadata/api.ts";
import type { Descriptor } from "./differ.ts";
import { encodeHeader, endOfArchive, padBlock, type TarWriteHeader } from "./tar.ts";

/** One difference between the trees; `path` is relative, `/`-separated, without a leading `/`. */
export interface Change {
  kind: "add" | "modify" | "delete";
  path: string;
  /** The upper tree's entry (absent for deletions). */
  info?: Deno.FileInfo;
}

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  // Byte order of the UTF-8 names, as Go's sort of strings.
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function kindOf(info: Deno.FileInfo): string {
  if (info.isSymlink) return "symlink";
  if (info.isDirectory) return "dir";
  if (info.isFile) return "file";
  return `other:${(info.mode ?? 0) & 0o170000}`;
}

async function sameEntry(
  lowerPath: string,
  lower: Deno.FileInfo,
  upperPath: string,
  upper: Deno.FileInfo,
): Promise<boolean> {
  if (kindOf(lower) !== kindOf(upper)) return false;
  if (lower.mode !== upper.mode || lower.uid !== upper.uid || lower.gid !== upper.gid) return false;
  if (lower.mtime?.getTime() !== upper.mtime?.getTime()) return false;
  if (upper.isDirectory) return true;
  if (lower.size !== upper.size || lower.rdev !== upper.rdev) return false;
  if (upper.isSymlink) return (await Deno.readLink(lowerPath)) === (await Deno.readLink(upperPath));
  return true;
}

async function* addAll(upper: string, rel: string): AsyncGenerator<Change> {
  for (const name of await names(upper)) {
    const path = rel === "" ? name : `${rel}/${name}`;
    const info = await Deno.lstat(`${upper}/${name}`);
    yield { kind: "add", path, info };
    if (info.isDirectory) yield* addAll(`${upper}/${name}`, path);
  }
}

/** The changes that turn the tree at `lower` into the tree at `upper`, parents first. */
export async function* treeChanges(
  lower: string,
  upper: string,
  rel = "",
): AsyncGenerator<Change> {
  const lowerNames = await names(lower);
  const upperNames = await names(upper);
  const all = [...new Set([...lowerNames, ...upperNames])].sort((a, b) =>
    a < b ? -1 : a > b ? 1 : 0
  );
  for (const name of all) {
    const path = rel === "" ? name : `${rel}/${name}`;
    const lp = `${lower}/${name}`;
    const up = `${upper}/${name}`;
    const l = await lstatOrNull(lp);
    const u = await lstatOrNull(up);
    if (u === null) {
      if (l !== null) yield { kind: "delete", path };
      continue;
    }
    if (l === null) {
      yield { kind: "add", path, info: u };
      if (u.isDirectory) yield* addAll(up, path);
      continue;
    }
    if (!(await sameEntry(lp, l, up, u))) yield { kind: "modify", path, info: u };
    if (u.isDirectory) {
      if (l.isDirectory) yield* treeChanges(lp, up, path);
      else yield* addAll(up, path);
    }
  }
}

function headerOf(path: string, info: Deno.FileInfo): TarWriteHeader {
  const mode = (info.mode ?? 0) & 0o7777;
  const mtime = (info.mtime?.getTime() ?? 0) / 1000;
  const base = { mode, uid: info.uid ?? 0, gid: info.gid ?? 0, mtime };
  if (info.isDirectory) return { ...base, name: `${path}/`, type: "dir" };
  if (info.isSymlink) return { ...base, name: path, type: "symlink" };
  if (info.isFile) return { ...base, name: path, type: "file", size: info.size };
  const fmt = (info.mode ?? 0) & 0o170000;
  const rdev = info.rdev ?? 0;
  const devmajor = ((rdev >> 8) & 0xfff) | ((rdev >>> 32) & ~0xfff);
  const devminor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  if (fmt === 0o020000) return { ...base, name: path, type: "char", devmajor, devminor };
  if (fmt === 0o060000) return { ...base, name: path, type: "block", devmajor, devminor };
  if (fmt === 0o010000) return { ...base, name: path, type: "fifo" };
  throw new NotImplementedError(
    `cannot write ${JSON.stringify(path)} to a layer: file type 0o${
      fmt.toString(8)
    } is not supported`,
  );
}

/** Sockets cannot be archived; they are left out of layers, as Docker and containerd do. */
function isSocket(info: Deno.FileInfo): boolean {
  return ((info.mode ?? 0) & 0o170000) === 0o140000;
}

/**
 * The tar stream of the changes from `lower` to `upper` (containerd's WriteDiff): entries
 * for additions and modifications, whiteouts for deletions, parents written first.
 */
export async function* diffTar(
  lower: string,
  upper: string,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
  const written = new Set<string>();
  const links = new Map<string, string>();
  async function* parents(path: string): AsyncGenerator<Uint8Array> {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (written.has(dir)) continue;
      written.add(dir);
      yield encodeHeader(headerOf(dir, await Deno.lstat(`${upper}/${dir}`)));
    }
  }
  for await (const change of treeChanges(lower, upper)) {
    signal?.throwIfAborted();
    yield* parents(change.path);
    if (change.kind === "delete") {
      const slash = change.path.lastIndexOf("/");
      const name = slash < 0
        ? `.wh.${change.path}`
        : `${change.path.slice(0, slash)}/.wh.${change.path.slice(slash + 1)}`;
      yield encodeHeader({ name, type: "file", mode: 0, size: 0 });
      continue;
    }
    const info = change.info!;
    if (isSocket(info)) continue;
    written.add(change.path);
    const full = `${upper}/${change.path}`;
    const header = headerOf(change.path, info);
    if (info.isSymlink) header.linkname = await Deno.readLink(full);
    if (info.isFile && (info.nlink ?? 1) > 1 && info.ino !== null) {
      const id = `${info.dev}:${info.ino}`;
      const first = links.get(id);
      if (first !== undefined) {
        yield encodeHeader({ ...header, type: "link", size: 0, linkname: first });
        continue;
      }
      links.set(id, change.path);
    }
    yield encodeHeader(header);
    if (info.isFile && info.size > 0) {
      let left = info.size;
      const file = await Deno.open(full, { read: true });
      try {
        // Plain awaited reads, not file.readable: breaking out of a stream may close the file
        // under a pending read, which Deno 2.9.3 turns into a double close of the descriptor.
        const buf = new Uint8Array(Math.min(left, 1 << 20));
        while (left > 0) {
          signal?.throwIfAborted();
          const n = await file.read(buf.subarray(0, Math.min(left, buf.length)));
          if (n === null) break;
          left -= n;
          yield buf.slice(0, n);
        }
      } finally {
        file.close();
      }
      if (left > 0) {
        throw new FailedPreconditionError(`${full} shrank while it was written to a layer`);
      }
      yield padBlock(info.size);
    }
  }
  yield endOfArchive();
}

/** Options of {@link writeDiff}. */
export interface WriteDiffOptions {
  ref: string;
  /** `application/vnd.oci.image.layer.v1.tar` or `…tar+gzip`. */
  mediaType: string;
  labels: Record<string, string>;
  signal?: AbortSignal;
}

async function* gzip(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  async function* buffers(): AsyncGenerator<Uint8Array<ArrayBuffer>> {
    for await (const chunk of source) yield new Uint8Array(chunk);
  }
  const stream = ReadableStream.from(buffers()).pipeThrough(new CompressionStream("gzip"));
  for await (const chunk of stream) yield chunk;
}

/**
 * Write the layer of the changes from `lower` to `upper` into `store` under `ref`, labelled
 * `containerd.io/uncompressed=<diff ID>`; returns its descriptor. A layer the namespace has
 * already is reported as it is.
 */
export async function writeDiff(
  store: ScopedContentStore,
  lower: string,
  upper: string,
  options: WriteDiffOptions,
): Promise<Descriptor> {
  const hash = new Sha256();
  async function* tapped(): AsyncGenerator<Uint8Array> {
    for await (const chunk of diffTar(lower, upper, options.signal)) {
      hash.update(chunk);
      yield chunk;
    }
  }
  const compressed = options.mediaType.endsWith("+gzip");
  const writer = await store.writer(options.ref);
  let offset = writer.status().offset;
  if (offset > 0) {
    await writer.write(new Uint8Array(0), 0);
    offset = 0;
  }
  try {
    for await (const chunk of compressed ? gzip(tapped()) : tapped()) {
      if (chunk.length === 0) continue;
      offset += await writer.write(chunk, offset);
    }
    const diffId = hash.digest();
    const labels = { ...options.labels, "containerd.io/uncompressed": diffId };
    let digest: string;
    try {
      digest = (await writer.commit({ size: offset, labels })).digest;
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      digest = writer.digest();
    }
    return { mediaType: options.mediaType, digest, size: offset };
  } finally {
    await writer.close();
  }
}
