/**
 * mount(2) and umount2(2) through FFI, for the mounts that need no mount(8) logic.
 *
 * util-linux's `mount`/`umount` cost a process each: the overlay check at boot (one mount, one
 * unmount) took 11–14 ms that way, and every layer an import applies pays the same. An overlay
 * whose options are all `key=value` data, or a read-write (r)bind, is one system call: those
 * go through here. mount.ts keeps util-linux for everything else (flag words such as `ro`,
 * read-only binds that need a remount, lowerdir lists too long for one page of mount data)
 * and as the fallback when a direct call fails, so errors still read as mount(8)'s.
 *
 * @example
 * ```ts
 * import { directMountPlan, openMountSyscalls } from "./mount_syscall.ts";
 * const plan = directMountPlan({ type: "bind", source: "/src", options: ["rbind", "rw"] });
 * const calls = openMountSyscalls();
 * if (plan && calls) {
 *   calls.mount("/src", "/mnt", plan);
 *   calls.unmount("/mnt");
 *   calls.close();
 * }
 * ```
 * @module
 */

const MS_BIND = 0x1000;
const MS_REC = 0x4000;
/**
 * The size of the kernel's buffer for mount data (one page): longer option strings are
 * refused. mount.ts shortens lowerdir lists that would not fit.
 */
export const MOUNT_DATA_LIMIT = 4096;

/** What mount(2) gets for a mount that needs no mount(8) logic. */
export interface DirectMount {
  /** The filesystem type argument (empty for binds). */
  fstype: string;
  /** MS_* flags. */
  flags: number;
  /** The data string (filesystem options); empty for binds. */
  data: string;
}

/** The subset of mount.ts's MountSpec this module reads. */
export interface MountRequest {
  type: string;
  source: string;
  options: readonly string[];
}

/** A bind mount: type `bind`, or a `bind`/`rbind` option (made without a filesystem type). */
export function isBindMount(m: MountRequest): boolean {
  return m.type === "bind" || m.options.includes("bind") || m.options.includes("rbind");
}

/**
 * How to perform `m` with one mount(2) call, or undefined when mount(8) must: an overlay whose
 * options are all `key=value` and fit in a page, or a bind whose options are only `bind`,
 * `rbind` and `rw`.
 */
export function directMountPlan(m: MountRequest): DirectMount | undefined {
  if (isBindMount(m)) {
    if (!m.options.every((o) => o === "bind" || o === "rbind" || o === "rw")) return undefined;
    return { fstype: "", flags: MS_BIND | (m.options.includes("rbind") ? MS_REC : 0), data: "" };
  }
  if (m.type !== "overlay" || !m.options.every((o) => o.includes("="))) return undefined;
  const data = m.options.join(",");
  if (new TextEncoder().encode(data).byteLength >= MOUNT_DATA_LIMIT) return undefined;
  return { fstype: "overlay", flags: 0, data };
}

/** A failed mount(2)/umount2(2): `code` is the errno name when known. */
export class MountSyscallError extends Error {
  /** The errno value. */
  readonly errno: number;
  constructor(call: string, target: string, errno: number, reason: string) {
    super(`${call} ${target}: ${reason} (errno ${errno})`);
    this.name = "MountSyscallError";
    this.errno = errno;
  }
}

/** The bound calls; close when done. */
export interface MountSyscalls {
  /** mount(2) `source` on `target` as planned; throws MountSyscallError. */
  mount(source: string, target: string, plan: DirectMount): void;
  /** umount2(2) of the top mount at `target`; throws MountSyscallError. */
  unmount(target: string): void;
  /** Release the library handle. */
  close(): void;
}

const encoder = new TextEncoder();

function cstr(s: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(s);
  const out = new Uint8Array(bytes.byteLength + 1);
  out.set(bytes);
  return out;
}

/**
 * Bind mount(2) and umount2(2) from libc; undefined where that is not possible (not Linux,
 * no FFI permission, no glibc), and callers then use util-linux.
 */
export function openMountSyscalls(): MountSyscalls | undefined {
  if (Deno.build.os !== "linux") return undefined;
  let lib;
  try {
    lib = Deno.dlopen(
      "libc.so.6",
      {
        mount: { parameters: ["buffer", "buffer", "buffer", "usize", "buffer"], result: "i32" },
        umount2: { parameters: ["buffer", "i32"], result: "i32" },
        __errno_location: { parameters: [], result: "pointer" },
        strerror: { parameters: ["i32"], result: "pointer" },
      } as const,
    );
  } catch {
    return undefined;
  }
  const s = lib.symbols;
  const failure = (call: string, target: string): MountSyscallError => {
    const ptr = s.__errno_location();
    const errno = ptr === null ? 0 : new Deno.UnsafePointerView(ptr).getInt32();
    const msg = s.strerror(errno);
    const reason = msg === null ? "error" : new Deno.UnsafePointerView(msg).getCString();
    return new MountSyscallError(call, target, errno, reason);
  };
  return {
    mount(source, target, plan) {
      const result = s.mount(
        cstr(source),
        cstr(target),
        cstr(plan.fstype),
        BigInt(plan.flags),
        cstr(plan.data),
      );
      if (result !== 0) throw failure("mount", target);
    },
    unmount(target) {
      if (s.umount2(cstr(target), 0) !== 0) throw failure("umount2", target);
    },
    close() {
      lib.close();
    },
  };
}
