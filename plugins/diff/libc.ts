/**
 * The few libc calls layer application needs and Deno's fs API lacks: lchown, mknod,
 * lsetxattr/lgetxattr and utimensat (nanosecond times that do not follow symlinks).
 *
 * Bound through Deno FFI (`--allow-ffi`, part of `--allow-all`). A handle is opened per use and
 * closed with `close()` (or `using`), so the module keeps no state. Failures throw
 * {@linkcode ErrnoError} carrying the errno name, e.g. `EPERM`.
 *
 * @example
 * ```ts
 * import { openLibc } from "./libc.ts";
 * using libc = openLibc();
 * libc.mknod("/tmp/fifo", 0o010644, 0, 0);
 * libc.utimensat("/tmp/fifo", { sec: 0, nsec: 0 }, { sec: 1704067200, nsec: 0 });
 * ```
 * @module
 */

/** A timestamp for utimensat. */
export interface Timespec {
  /** Seconds since the epoch. */
  sec: number;
  /** Nanoseconds, 0..999999999. */
  nsec: number;
}

const SYMBOLS = {
  lchown: { parameters: ["buffer", "u32", "u32"], result: "i32" },
  mknod: { parameters: ["buffer", "u32", "u64"], result: "i32" },
  lsetxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  lgetxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "isize" },
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;

/** File type bits for mknod's mode. */
export const S_IFCHR = 0o020000;
/** Block device type bits. */
export const S_IFBLK = 0o060000;
/** FIFO type bits. */
export const S_IFIFO = 0o010000;

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  5: "EIO",
  7: "E2BIG",
  13: "EACCES",
  17: "EEXIST",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  28: "ENOSPC",
  30: "EROFS",
  34: "ERANGE",
  36: "ENAMETOOLONG",
  40: "ELOOP",
  61: "ENODATA",
  95: "ENOTSUP",
  122: "EDQUOT",
};

/** A failed libc call: `errno` is the number, `code` its name (e.g. `ENOTSUP`). */
export class ErrnoError extends Error {
  /** The errno value. */
  readonly errno: number;
  /** The errno's symbolic name, or `E<number>` when unknown here. */
  readonly code: string;
  constructor(call: string, path: string, errno: number, reason: string) {
    const code = ERRNO_NAMES[errno] ?? `E${errno}`;
    super(`${call} ${path}: ${reason} (${code})`);
    this.name = "ErrnoError";
    this.errno = errno;
    this.code = code;
  }
}

/** Split device numbers into Linux's dev_t encoding (glibc's makedev). */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) |
    (mi & 0xffn);
}

/** The bound calls; close when done. */
export interface Libc extends Disposable {
  /** Change owner without following a final symlink. */
  lchown(path: string, uid: number, gid: number): void;
  /** Create a device node or FIFO; `mode` includes the S_IF* type bits. */
  mknod(path: string, mode: number, major: number, minor: number): void;
  /** Set an extended attribute without following a final symlink. */
  lsetxattr(path: string, name: string, value: Uint8Array, flags?: number): void;
  /** Read an extended attribute; null when absent (ENODATA). */
  lgetxattr(path: string, name: string): Uint8Array | null;
  /** Set atime and mtime with nanoseconds, never following a final symlink. */
  utimensat(path: string, atime: Timespec, mtime: Timespec): void;
  /** Release the library handle. */
  close(): void;
}

const encoder = new TextEncoder();

function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(encoder.encode(s).length + 1);
  encoder.encodeInto(s, b);
  return b;
}

/** The calls that turn a failure into an {@link ErrnoError}. */
interface ErrnoSymbols {
  __errno_location(): Deno.PointerValue;
  strerror(errno: number): Deno.PointerValue;
}

/** The ErrnoError of the call that just failed on this thread. */
function lastError(s: ErrnoSymbols, call: string, path: string): ErrnoError {
  const ptr = s.__errno_location();
  const errno = ptr === null ? 0 : new Deno.UnsafePointerView(ptr).getInt32();
  const msgPtr = s.strerror(errno);
  const reason = msgPtr === null ? "error" : new Deno.UnsafePointerView(msgPtr).getCString();
  return new ErrnoError(call, path, errno, reason);
}

/**
 * Create a FIFO at `path` with permission bits `mode` (mknod with S_IFIFO). Binds only the
 * three calls it needs: a full {@link openLibc} costs about 1 ms, paid per container start.
 */
export function makeFifo(path: string, mode: number): void {
  const lib = Deno.dlopen("libc.so.6", {
    mknod: SYMBOLS.mknod,
    __errno_location: SYMBOLS.__errno_location,
    strerror: SYMBOLS.strerror,
  });
  try {
    if (lib.symbols.mknod(cstr(path), (S_IFIFO | mode) >>> 0, 0n) !== 0) {
      throw lastError(lib.symbols, "mknod", path);
    }
  } finally {
    lib.close();
  }
}

/** Open libc and bind the calls. Throws when FFI is not permitted. */
export function openLibc(): Libc {
  const lib = Deno.dlopen("libc.so.6", SYMBOLS);
  const s = lib.symbols;
  const fail = (call: string, path: string): never => {
    throw lastError(s, call, path);
  };
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      lib.close();
    }
  };
  return {
    lchown(path, uid, gid) {
      if (s.lchown(cstr(path), uid >>> 0, gid >>> 0) !== 0) fail("lchown", path);
    },
    mknod(path, mode, major, minor) {
      if (s.mknod(cstr(path), mode >>> 0, makedev(major, minor)) !== 0) fail("mknod", path);
    },
    lsetxattr(path, name, value, flags = 0) {
      const buf = new Uint8Array(value);
      if (s.lsetxattr(cstr(path), cstr(name), buf, BigInt(buf.length), flags) !== 0) {
        fail(`lsetxattr ${name}`, path);
      }
    },
    lgetxattr(path, name) {
      const p = cstr(path);
      const n = cstr(name);
      for (let size = 256;; size *= 4) {
        const buf = new Uint8Array(size);
        const got = Number(s.lgetxattr(p, n, buf, BigInt(size)));
        if (got >= 0) return buf.slice(0, got);
        try {
          fail(`lgetxattr ${name}`, path);
        } catch (err) {
          if (err instanceof ErrnoError && err.code === "ENODATA") return null;
          if (err instanceof ErrnoError && err.code === "ERANGE" && size < 1 << 24) continue;
          throw err;
        }
      }
    },
    utimensat(path, atime, mtime) {
      const times = new BigInt64Array([
        BigInt(atime.sec),
        BigInt(atime.nsec),
        BigInt(mtime.sec),
        BigInt(mtime.nsec),
      ]);
      if (s.utimensat(AT_FDCWD, cstr(path), times, AT_SYMLINK_NOFOLLOW) !== 0) {
        fail("utimensat", path);
      }
    },
    close,
    [Symbol.dispose]: close,
  };
}
