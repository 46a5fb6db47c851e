/**
 * Apply a layer onto a directory: containerd's archive.Apply, streaming.
 *
 * The blob is read, decompressed, parsed as tar and written entry by entry, while the
 * uncompressed bytes are hashed: the result is the layer's diff ID and uncompressed size.
 *
 * Layer semantics (OCI image-spec "Applying Changesets", as containerd implements them):
 * - `.wh.<name>` removes `<dir>/<name>`; `.wh..wh..opq` empties its directory of everything
 *   this layer did not itself put there (wherever in the layer the marker comes).
 * - With `overlay: true` the target is a bare overlayfs upperdir: a whiteout becomes a 0/0
 *   character device owned like the whiteout entry, an opaque directory gets the xattr
 *   `trusted.overlay.opaque=y`.
 * - An existing path is replaced, except that a directory entry over an existing directory
 *   merges (only its metadata is applied). Missing parents are created with mode 0755.
 * - Regular files, directories, symlinks, hardlinks, character and block devices and FIFOs;
 *   then owner (lchown), xattrs from `SCHILY.xattr.*` (`trusted.*` ignored, as containerd
 *   does; unsupported ones warned about and skipped), mode including setuid/setgid/sticky
 *   (not for symlinks), and atime/mtime with nanoseconds via utimensat without following
 *   symlinks, so symlinks get their times too. Directory times are set again after the whole
 *   layer is written. Times before 1970 or after 2262 become the epoch (containerd's
 *   boundTime).
 *
 * Security: nothing outside the target is ever written, read through or removed.
 * - Entry names and hardlink targets are archive paths: an absolute one, or one whose `..`
 *   climbs above the root, fails the apply with InvalidArgumentError naming the entry, as do
 *   names with a component over 255 bytes or over 4096 bytes in all.
 * - Parent directories are resolved component by component with lstat inside the target.
 *   Symlinks met on the way are followed the way containerd's fs.RootPath does, relative to
 *   the target (an absolute `/run` means `<target>/run`), with one difference: a symlink whose
 *   resolution would leave the target (`..` above the root) or that points at `/` itself is
 *   refused as an escape attempt (InvalidArgumentError) instead of being clamped.
 * - The final component is never followed: an existing entry is removed first (a symlink as
 *   a symlink), and files are created with O_CREAT|O_EXCL, which fails on a symlink.
 * - Whiteouts are checked like entries and may only name a child of their directory.
 *
 * Deviations from containerd, all stricter: absolute entry/link names and escaping symlinks
 * fail instead of being clamped into the root; a non-empty tar must end with its
 * end-of-archive marker; names must be valid UTF-8 (Deno's fs API takes strings).
 * Not supported: GNU sparse files; applying with `parents` (containerd copies lower parent
 * directories' metadata into an upperdir: here missing parents get 0755 root:root).
 *
 * @example
 * ```ts
 * import { applyLayer } from "./apply.ts";
 * const blob = "/var/lib/containerd-ts/blobs/sha256/…";
 * const result = await applyLayer(
 *   { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: "sha256:…", size: 0 },
 *   async () => (await Deno.open(blob)).readable,
 *   "/mnt/rootfs",
 *   { overlay: false },
 * );
 * console.log(result.digest); // the diff ID
 * ```
 * @module
 */
import {
  ErrdefsError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
} from "../../server/errdefs.ts";
import { Sha256 } from "../../server/digest.ts";
import type {
  Applier,
  ApplierLogger,
  ApplyOptions,
  ApplyResult,
  LayerDescriptor,
  LayerReader,
} from "./api.ts";
import type * as Decompress from "./decompress.ts";
import { ErrnoError, type Libc, openLibc, S_IFBLK, S_IFCHR, S_IFIFO } from "./libc.ts";
import { readTar, type TarEntry, type TarHeader, type TarTime } from "./tar.ts";

/** Prefix of a whiteout entry's name: `.wh.<name>` deletes `<name>`. */
export const WHITEOUT_PREFIX = ".wh.";
/** Name of the opaque-directory marker. */
export const WHITEOUT_OPAQUE = ".wh..wh..opq";
/** Longest path component accepted, in bytes (Linux NAME_MAX). */
export const MAX_NAME_BYTES = 255;
/** Longest entry name or link target accepted, in bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Most symlinks followed while resolving one path (as continuity's fs.RootPath). */
export const MAX_SYMLINKS = 255;

/** Options of createApplier. */
export interface ApplierOptions {
  /** Where warnings go (skipped xattrs). Default: dropped. */
  log?: ApplierLogger;
}

/** An Applier writing onto local directories. */
export function createApplier(options: ApplierOptions = {}): Applier {
  return {
    apply: (desc, readLayer, target, applyOptions) =>
      applyLayer(desc, readLayer, target, applyOptions, options.log),
  };
}

const encoder = new TextEncoder();

function byteLength(s: string): number {
  return s.length * 3 <= MAX_NAME_BYTES ? s.length : encoder.encode(s).length;
}

/** A name quoted for an error message; long ones are shortened (keeping both ends). */
function q(s: string): string {
  if (s.length <= 160) return JSON.stringify(s);
  return `${JSON.stringify(`${s.slice(0, 100)}…${s.slice(-40)}`)} (${s.length} characters)`;
}

/**
 * Split an archive path (entry name or hardlink target) into clean components, refusing
 * absolute paths, `..` above the root and over-long names. `[]` is the root itself.
 */
export function archivePath(name: string, what = "name"): string[] {
  if (encoder.encode(name).length > MAX_PATH_BYTES) {
    throw new InvalidArgumentError(`${what} is longer than ${MAX_PATH_BYTES} bytes`);
  }
  if (name.startsWith("/") && !/^[/.]*$/.test(name)) {
    throw new InvalidArgumentError(`${what} ${q(name)} is an absolute path`);
  }
  const out: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) {
        throw new InvalidArgumentError(`${what} ${q(name)} escapes the target directory`);
      }
      out.pop();
      continue;
    }
    if (byteLength(part) > MAX_NAME_BYTES) {
      throw new InvalidArgumentError(
        `${what} has a component longer than ${MAX_NAME_BYTES} bytes`,
      );
    }
    out.push(part);
  }
  return out;
}

/** Largest seconds value a 64-bit nanosecond time holds (year 2262). */
const MAX_TIME_SEC = 9223372036;

function boundTime(t: TarTime): TarTime {
  return t.sec < 0 || t.sec >= MAX_TIME_SEC ? { sec: 0, nsec: 0 } : t;
}

function later(a: TarTime, b: TarTime): TarTime {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec > b.nsec) ? a : b;
}

// lstat, chmod and readlink are synchronous: they cost microseconds, where the async forms
// cost tens of them per call, paid several times per entry. Creating inodes and writing data
// stay asynchronous.
function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

async function writeAll(file: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.length) off += await file.write(chunk.subarray(off));
}

function errnoCode(err: unknown): string | undefined {
  if (err instanceof ErrnoError) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Put `label` in front of an error's message, typing OS errors that have an errdefs kind. */
function labelled(err: unknown, label: string): unknown {
  if (err instanceof DOMException) return err; // cancellation keeps its kind
  if (err instanceof ErrdefsError) {
    err.message = `${label}: ${err.message}`;
    return err;
  }
  const message = `${label}: ${err instanceof Error ? err.message : String(err)}`;
  switch (errnoCode(err)) {
    case "ENAMETOOLONG":
    case "ELOOP":
      return new InvalidArgumentError(message, { cause: err });
    case "EPERM":
    case "EACCES":
      return new PermissionDeniedError(message, { cause: err });
    case "ENOSPC":
    case "EDQUOT":
      return new ResourceExhaustedError(message, { cause: err });
  }
  return new Error(message, { cause: err });
}

/**
 * Apply the layer `desc`, read through `readLayer`, onto the directory `target`; see the
 * module documentation for the semantics and {@linkcode Applier.apply} for the errors.
 * Returns the digest and size of the uncompressed tar stream.
 */
export async function applyLayer(
  desc: LayerDescriptor,
  readLayer: LayerReader,
  target: string,
  options: ApplyOptions,
  log?: ApplierLogger,
): Promise<ApplyResult> {
  const label = `apply layer ${desc.digest} onto ${target}`;
  const signal = options.signal;
  signal?.throwIfAborted();
  let root: string;
  try {
    root = await Deno.realPath(target);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new NotFoundError(`${label}: target directory does not exist`);
    }
    throw labelled(err, label);
  }
  if (!(await Deno.stat(root)).isDirectory) {
    throw new InvalidArgumentError(`${label}: target is not a directory`);
  }
  if (root === "/") throw new InvalidArgumentError(`${label}: refusing to apply onto /`);
  // Loaded with the first layer, not at boot: with it come node:zlib and the zstd decoder,
  // which a boot that applies nothing does not need (tests/build_test.ts checks the split).
  const { asAsyncIterable, declaredCompression, decompressLayer }: typeof Decompress = await import(
    "./decompress.ts"
  );
  try {
    declaredCompression(desc.mediaType);
  } catch (err) {
    throw labelled(err, label);
  }

  using libc = openLibc();
  const hash = new Sha256();
  let size = 0;
  // Errors of the blob reader are the caller's: they pass through without our label.
  const foreign = new WeakSet<object>();
  const raw = asAsyncIterable(await readLayer());
  const guarded = async function* (): AsyncGenerator<Uint8Array, void, undefined> {
    const it = raw[Symbol.asyncIterator]();
    try {
      for (;;) {
        let r: IteratorResult<Uint8Array>;
        try {
          r = await it.next();
        } catch (err) {
          if (typeof err === "object" && err !== null) foreign.add(err);
          throw err;
        }
        if (r.done) return;
        yield r.value;
      }
    } finally {
      await it.return?.();
    }
  };
  const tapped = async function* (): AsyncGenerator<Uint8Array, void, undefined> {
    for await (const chunk of decompressLayer(desc.mediaType, guarded())) {
      signal?.throwIfAborted();
      hash.update(chunk);
      size += chunk.length;
      yield chunk;
    }
  };
  // The reader's errors and the abort reason are rethrown exactly as they came.
  const passThrough = (err: unknown) =>
    (signal !== undefined && err === signal.reason) ||
    (typeof err === "object" && err !== null && foreign.has(err));
  const run = new Application(root, options.overlay, libc, log, signal, passThrough);
  try {
    await run.apply(readTar(tapped()));
  } catch (err) {
    if (passThrough(err)) throw err;
    throw labelled(err, label);
  }
  return { digest: hash.digest(), size };
}

/** The state of one apply: which paths this layer wrote, directories to re-time, a cache. */
class Application {
  /** Archive directory path → its resolved real path; cleared whenever anything is removed. */
  readonly #dirCache = new Map<string, string>();
  /** Real paths this layer created (for opaque directories). */
  readonly #unpacked = new Set<string>();
  readonly #dirs: { path: string; atime: TarTime; mtime: TarTime }[] = [];

  constructor(
    readonly root: string,
    readonly overlay: boolean,
    readonly libc: Libc,
    readonly log: ApplierLogger | undefined,
    readonly signal: AbortSignal | undefined,
    readonly passThrough: (err: unknown) => boolean,
  ) {}

  async apply(entries: AsyncIterable<TarEntry>): Promise<void> {
    for await (const entry of entries) {
      this.signal?.throwIfAborted();
      try {
        await this.#entry(entry);
      } catch (err) {
        const name = q(entry.header.name);
        if (this.passThrough(err)) throw err;
        if (err instanceof Error && err.message.includes(name)) throw err;
        throw labelled(err, `entry ${name}`);
      }
    }
    for (const d of this.#dirs) {
      try {
        this.libc.utimensat(d.path, d.atime, d.mtime);
      } catch (err) {
        // Removed or replaced later in the layer: nothing to restore.
        if (!(err instanceof ErrnoError && err.code === "ENOENT")) throw labelled(err, d.path);
      }
    }
  }

  #join(parent: string, name: string): string {
    return `${parent}/${name}`;
  }

  async #entry(entry: TarEntry): Promise<void> {
    const h = entry.header;
    if (h.type === "unsupported") {
      throw new InvalidArgumentError(`unsupported tar entry type ${q(h.typeflag)}`);
    }
    const parts = archivePath(h.name);
    const base = parts.pop();
    if (base === undefined) return; // the root itself: ignored, as containerd does
    if (base.startsWith(WHITEOUT_PREFIX)) return await this.#whiteout(h, parts, base);

    const parent = (await this.#resolveDir(parts, true))!;
    const path = this.#join(parent, base);
    // Check what the entry needs before touching the existing path.
    let linkTarget: { path: string; isSymlink: boolean } | undefined;
    if (h.type === "link") {
      linkTarget = await this.#hardlinkTarget(h.linkname);
      if (linkTarget.path === path) throw new InvalidArgumentError("hardlink to itself");
    }
    if (h.type === "symlink") {
      if (h.linkname === "") throw new InvalidArgumentError("symlink has an empty target");
      if (encoder.encode(h.linkname).length >= MAX_PATH_BYTES) {
        throw new InvalidArgumentError(`symlink target is longer than ${MAX_PATH_BYTES - 1} bytes`);
      }
    }

    const existing = lstatOrNull(path);
    if (existing !== null && !(existing.isDirectory && h.type === "dir")) {
      await this.#removeAll(path);
    }
    const perm = h.mode & 0o7777;
    switch (h.type) {
      case "dir":
        if (existing === null || !existing.isDirectory) await Deno.mkdir(path, { mode: 0o700 });
        break;
      case "file":
        await this.#writeFile(path, entry.body);
        break;
      case "symlink":
        await Deno.symlink(h.linkname, path);
        break;
      case "link":
        await Deno.link(linkTarget!.path, path);
        break;
      case "char":
        this.libc.mknod(path, S_IFCHR | perm, h.devmajor, h.devminor);
        break;
      case "block":
        this.libc.mknod(path, S_IFBLK | perm, h.devmajor, h.devminor);
        break;
      case "fifo":
        this.libc.mknod(path, S_IFIFO | perm, 0, 0);
        break;
    }
    const isSymlink = h.type === "symlink" || linkTarget?.isSymlink === true;
    this.libc.lchown(path, h.uid, h.gid);
    this.#setXattrs(path, h);
    if (!isSymlink) Deno.chmodSync(path, perm); // after lchown, which clears setuid
    const mtime = boundTime(h.mtime);
    const atime = boundTime(later(h.atime ?? h.mtime, h.mtime));
    this.libc.utimensat(path, atime, mtime);
    if (h.type === "dir") this.#dirs.push({ path, atime, mtime });
    this.#unpacked.add(path);
  }

  async #writeFile(path: string, body: AsyncIterable<Uint8Array>): Promise<void> {
    // O_CREAT|O_EXCL: never opens through a symlink planted at the name.
    const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
    try {
      for await (const chunk of body) {
        this.signal?.throwIfAborted();
        await writeAll(file, chunk);
      }
    } finally {
      file.close();
    }
  }

  async #whiteout(h: TarHeader, parentParts: string[], base: string): Promise<void> {
    const parent = (await this.#resolveDir(parentParts, true))!;
    if (base === WHITEOUT_OPAQUE) {
      await this.#emptyOpaque(parent);
      if (this.overlay) {
        this.libc.lsetxattr(parent, "trusted.overlay.opaque", encoder.encode("y"));
      }
      return;
    }
    const victim = base.slice(WHITEOUT_PREFIX.length);
    if (victim === "" || victim === "." || victim === "..") {
      throw new InvalidArgumentError(`whiteout ${q(base)} does not name an entry of its directory`);
    }
    const path = this.#join(parent, victim);
    await this.#removeAll(path);
    if (this.overlay) {
      this.libc.mknod(path, S_IFCHR, 0, 0);
      this.libc.lchown(path, h.uid, h.gid);
      this.#unpacked.add(path);
    }
  }

  /** Remove from `dir`, recursively, everything this layer did not create. */
  async #emptyOpaque(dir: string): Promise<void> {
    const children: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(dir)) children.push(e);
    for (const e of children) {
      const path = this.#join(dir, e.name);
      if (!this.#unpacked.has(path)) await this.#removeAll(path);
      else if (e.isDirectory) await this.#emptyOpaque(path);
    }
  }

  /** Remove `path` (a directory recursively, a symlink as itself); absent is fine. */
  async #removeAll(path: string): Promise<void> {
    const st = lstatOrNull(path);
    if (st === null) return;
    this.#dirCache.clear();
    try {
      await Deno.remove(path, { recursive: st.isDirectory });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }

  /** Resolve a hardlink's target (an archive path) to an existing non-directory in the root. */
  async #hardlinkTarget(linkname: string): Promise<{ path: string; isSymlink: boolean }> {
    if (linkname === "") throw new InvalidArgumentError("hardlink has an empty target");
    const parts = archivePath(linkname, "hardlink target");
    const base = parts.pop();
    if (base === undefined) {
      throw new InvalidArgumentError(`hardlink target ${q(linkname)} is the root directory`);
    }
    const parent = await this.#resolveDir(parts, false, `hardlink target ${q(linkname)}`);
    const st = parent === null ? null : lstatOrNull(this.#join(parent, base));
    if (parent === null || st === null) {
      throw new InvalidArgumentError(`hardlink target ${q(linkname)} does not exist`);
    }
    if (st.isDirectory) {
      throw new InvalidArgumentError(`hardlink target ${q(linkname)} is a directory`);
    }
    return { path: this.#join(parent, base), isSymlink: st.isSymlink };
  }

  /**
   * The real path of the archive directory `parts` inside the root, following symlinks
   * relative to the root (never outside it). With `create`, missing directories are made
   * (0755); without, a missing one gives null. Throws InvalidArgumentError on an escape
   * attempt, a non-directory on the way, or too many symlinks.
   */
  async #resolveDir(parts: string[], create: boolean, what = "path"): Promise<string | null> {
    const key = parts.join("/");
    const hit = this.#dirCache.get(key);
    if (hit !== undefined) return hit;
    const stack: string[] = [];
    const pending = parts.slice().reverse();
    let links = 0;
    let via = "";
    while (pending.length > 0) {
      const c = pending.pop()!;
      if (c === "" || c === ".") continue;
      if (c === "..") {
        if (stack.length === 0) {
          throw new InvalidArgumentError(`${what} escapes the target directory${via}`);
        }
        stack.pop();
        continue;
      }
      stack.push(c);
      const real = `${this.root}/${stack.join("/")}`;
      const st = lstatOrNull(real);
      if (st === null) {
        if (!create) return null;
        await Deno.mkdir(real, { mode: 0o755 });
        Deno.chmodSync(real, 0o755);
        this.#unpacked.add(real);
        continue;
      }
      if (st.isDirectory) continue;
      const rel = stack.join("/");
      if (!st.isSymlink) throw new InvalidArgumentError(`${q(rel)} is not a directory`);
      if (++links > MAX_SYMLINKS) {
        throw new InvalidArgumentError(`too many levels of symlinks resolving ${q(key)}`);
      }
      const target = Deno.readLinkSync(real);
      via = ` through symlink ${q(rel)} -> ${q(target)}`;
      stack.pop();
      if (target.startsWith("/")) {
        if (/^[/.]*$/.test(target) && !target.includes("..")) {
          throw new InvalidArgumentError(`${what} escapes the target directory${via}`);
        }
        stack.length = 0; // absolute: relative to the root, as fs.RootPath
      }
      for (const t of target.split("/").reverse()) pending.push(t);
    }
    const real = stack.length === 0 ? this.root : `${this.root}/${stack.join("/")}`;
    this.#dirCache.set(key, real);
    return real;
  }

  #setXattrs(path: string, h: TarHeader): void {
    for (const [name, value] of h.xattrs) {
      if (name.startsWith("trusted.")) {
        this.log?.warn("ignored trusted xattr in layer", { path, xattr: name });
        continue;
      }
      try {
        this.libc.lsetxattr(path, name, value);
      } catch (err) {
        if (err instanceof ErrnoError) {
          if (err.code === "ENOTSUP") {
            this.log?.warn("ignored unsupported xattr in layer", { path, xattr: name });
            continue;
          }
          if (err.code === "EPERM" && name.startsWith("user.")) {
            // user.* is only allowed on regular files and directories.
            const st = Deno.lstatSync(path);
            if (!st.isFile && !st.isDirectory) {
              this.log?.warn("ignored user xattr on special file", { path, xattr: name });
              continue;
            }
          }
        }
        throw err;
      }
    }
  }
}
