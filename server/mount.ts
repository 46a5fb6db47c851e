/**
 * Mount table reading and the boot-time cleanup of `<root>/tmpmounts`.
 *
 * Temporary mounts (a snapshot mounted to apply a layer, to read /etc/passwd, ...) live under
 * `<root>/tmpmounts` and are always unmounted after use; a crash can leave some behind. Boot
 * unmounts whatever the kernel still has mounted there, deepest first, and removes the emptied
 * dirs. Failures are warnings: a stuck mount must not keep the daemon from starting.
 *
 * @example
 * ```ts
 * import { cleanupTempMounts } from "./mount.ts";
 * const warnings = await cleanupTempMounts("/var/lib/containerd-ts/tmpmounts");
 * ```
 * @module
 */
import {
  directMountPlan,
  isBindMount,
  MOUNT_DATA_LIMIT,
  type MountSyscalls,
  openMountSyscalls,
} from "./mount_syscall.ts";

/** One line of /proc/self/mountinfo, the parts this project uses. */
export interface MountInfo {
  mountPoint: string;
  fsType: string;
  source: string;
  options: string;
}

/** Undo the kernel's octal escapes (`\040` for space, ...) in mountinfo paths. */
function unescapeMountPath(text: string): string {
  return text.replace(
    /\\([0-7]{3})/g,
    (_, octal: string) => String.fromCharCode(parseInt(octal, 8)),
  );
}

/** Parse the text of /proc/self/mountinfo. Malformed lines are skipped. */
export function parseMountInfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const separator = fields.indexOf("-");
    if (fields.length < 10 || separator < 6) continue;
    mounts.push({
      mountPoint: unescapeMountPath(fields[4] ?? ""),
      options: fields[5] ?? "",
      fsType: fields[separator + 1] ?? "",
      source: unescapeMountPath(fields[separator + 2] ?? ""),
    });
  }
  return mounts;
}

/** The current mount table of this process's mount namespace. */
export async function readMounts(): Promise<MountInfo[]> {
  return parseMountInfo(await Deno.readTextFile("/proc/self/mountinfo"));
}

/** Mount points strictly below `dir`, deepest first (the order to unmount them in). */
export function mountsUnder(mounts: readonly MountInfo[], dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : dir + "/";
  const points = new Set(
    mounts.map((m) => m.mountPoint).filter((point) => point.startsWith(prefix)),
  );
  return [...points].sort((a, b) =>
    b.split("/").length - a.split("/").length || b.localeCompare(a)
  );
}

/** Unmount `target` with util-linux umount; throws with umount's own message on failure. */
export async function unmount(target: string): Promise<void> {
  const result = await new Deno.Command("umount", {
    args: [target],
    stderr: "piped",
    stdout: "null",
  })
    .output();
  if (!result.success) {
    const reason = new TextDecoder().decode(result.stderr).trim() || `exit ${result.code}`;
    throw new Error(`unmount ${target}: ${reason}`);
  }
}

/**
 * Unmount everything mounted below `dir` and remove the emptied dirs; `dir` itself is
 * created (0700) if missing. Returns the warnings to log, one per failure.
 */
export async function cleanupTempMounts(
  dir: string,
  deps: { readMounts?: () => Promise<MountInfo[]>; unmount?: (target: string) => Promise<void> } =
    {},
): Promise<string[]> {
  const warnings: string[] = [];
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  let mounts: MountInfo[];
  try {
    mounts = await (deps.readMounts ?? readMounts)();
  } catch (err) {
    return [`reading the mount table to clean ${dir}: ${(err as Error).message}`];
  }
  for (const point of mountsUnder(mounts, dir)) {
    // A point can be stacked (mounted more than once): unmount until umount says it is not.
    for (let layer = 0; layer < 16; layer++) {
      try {
        await (deps.unmount ?? unmount)(point);
      } catch (err) {
        if (layer === 0) {
          warnings.push(`failed to unmount leftover temp mount: ${(err as Error).message}`);
        }
        break;
      }
    }
  }
  for await (const entry of Deno.readDir(dir)) {
    try {
      await Deno.remove(`${dir}/${entry.name}`);
    } catch {
      // Not empty or still mounted: leave it; the next boot tries again.
    }
  }
  return warnings;
}

// ---------------------------------------------------------------------------------------
// Performing mounts

/**
 * One mount to perform, as snapshotters describe it (containerd's `mount.Mount`):
 * `mount -t <type> -o <options> <source> <target>`. Binds (`type` "bind", or a `bind`/`rbind`
 * option) are made without `-t`.
 */
export interface MountSpec {
  /** `bind`, `overlay` or any filesystem type the kernel knows. */
  type: string;
  /** A directory for binds; a device or a placeholder such as `overlay` otherwise. */
  source: string;
  /** Mount options, e.g. `["rbind", "ro"]` or `["workdir=…", "upperdir=…", "lowerdir=…"]`. */
  options: readonly string[];
}

/** A mount or unmount failed; the message names the mount, the target and the kernel's reason. */
export class MountError extends Error {
  /** `message` names the mount, the target and the reason. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MountError";
  }
}

async function run(
  command: string,
  args: string[],
  cwd?: string,
): Promise<{ ok: true } | { ok: false; reason: string }> {
  const result = await new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    ...(cwd === undefined ? {} : { cwd }),
  }).output();
  if (result.success) return { ok: true };
  const reason = new TextDecoder().decode(result.stderr).trim() || `exit status ${result.code}`;
  return { ok: false, reason };
}

function commonDir(paths: readonly string[]): string {
  const split = paths.map((p) => p.split("/"));
  const first = split[0] ?? [];
  let n = 0;
  // The last component of each path is never part of the common dir, so relative paths
  // stay non-empty.
  const shortest = Math.min(...split.map((parts) => parts.length - 1));
  while (n < shortest && split.every((parts) => parts[n] === first[n])) n++;
  return first.slice(0, n).join("/");
}

/**
 * Options and working directory for an overlay mount: when the option string would not fit
 * the kernel's page of mount data, the lowerdirs are given relative to their common parent
 * and `mount` runs there (containerd's compactLowerdirOption).
 */
function compactOverlay(options: readonly string[]): { options: string[]; cwd?: string } {
  if (options.join(",").length < MOUNT_DATA_LIMIT) return { options: [...options] };
  const at = options.findIndex((o) => o.startsWith("lowerdir="));
  const lower = at >= 0 ? options[at] : undefined;
  if (lower === undefined) return { options: [...options] };
  const dirs = lower.slice("lowerdir=".length).split(":");
  if (dirs.length < 2 || !dirs.every((d) => d.startsWith("/"))) return { options: [...options] };
  const common = commonDir(dirs);
  if (common === "") return { options: [...options] };
  const relative = dirs.map((d) => d.slice(common.length + 1));
  const out = [...options];
  out[at] = `lowerdir=${relative.join(":")}`;
  return { options: out, cwd: common };
}

function describe(m: MountSpec): string {
  return `${m.type} mount of ${m.source}`;
}

/**
 * Perform one mount: with one mount(2) call when `calls` are bound and the mount needs no
 * mount(8) logic (mount_syscall.ts), else, or when that call fails, with util-linux `mount`
 * (whose words name the reason in the MountError). Exported for callers that keep one libc
 * binding for a mount and its unmount (the overlayfs support check).
 */
export async function mountOne(
  m: MountSpec,
  target: string,
  calls: MountSyscalls | undefined,
): Promise<void> {
  const plan = calls ? directMountPlan(m) : undefined;
  if (calls && plan) {
    try {
      calls.mount(m.source, target, plan);
      return;
    } catch {
      // util-linux below tries again and reports in mount(8)'s words.
    }
  }
  let options = [...m.options];
  let cwd: string | undefined;
  if (m.type === "overlay") ({ options, cwd } = compactOverlay(options));
  const args = isBindMount(m) ? [] : ["-t", m.type];
  if (options.length > 0) args.push("-o", options.join(","));
  args.push(m.source, target);
  const done = await run("mount", args, cwd);
  if (!done.ok) throw new MountError(`${describe(m)} on ${target} failed: ${done.reason}`);
  if (isBindMount(m) && m.options.includes("ro")) {
    // Make sure the bind is read-only even where mount(8) does not remount it by itself.
    const remount = await run("mount", ["-o", "remount,bind,ro", target]);
    if (!remount.ok) {
      await unmountAll(target).catch(() => {});
      throw new MountError(
        `${describe(m)} on ${target}: remount read-only failed: ${remount.reason}`,
      );
    }
  }
}

/**
 * Mount each of `mounts`, in order, onto `target` (containerd's `mount.All`). When one fails,
 * the ones this call made are unmounted again and a MountError names the failed mount.
 */
export async function mountAll(mounts: readonly MountSpec[], target: string): Promise<void> {
  let mounted = 0;
  const calls = openMountSyscalls();
  try {
    for (const m of mounts) {
      await mountOne(m, target, calls);
      mounted++;
    }
  } catch (err) {
    for (let i = 0; i < mounted; i++) {
      if (!(await run("umount", [target])).ok) break;
    }
    throw err;
  } finally {
    calls?.close();
  }
}

/** True when `target` or anything below it is a mount point in this mount namespace. */
export async function isMounted(target: string): Promise<boolean> {
  const mounts = await readMounts();
  return mounts.some((m) => m.mountPoint === target) || mountsUnder(mounts, target).length > 0;
}

/**
 * Unmount everything mounted at or below `target`, stacked mounts included (containerd's
 * `mount.UnmountAll`). A busy mount is detached lazily (`umount -l`) rather than left; a
 * MountError is thrown only when something is still mounted after that.
 */
export async function unmountAll(target: string): Promise<void> {
  let lastReason = "";
  // Bound only once something is mounted: most callers (every task's bundle removal) find
  // nothing, and binding libc costs more than reading the mount table.
  let calls: MountSyscalls | undefined | null = null;
  try {
    for (let attempt = 0; attempt < 64; attempt++) {
      const mounts = await readMounts();
      const below = mountsUnder(mounts, target);
      const points = mounts.some((m) => m.mountPoint === target) ? [target] : below;
      if (points.length === 0) return;
      if (calls === null) calls = openMountSyscalls();
      if (calls && unmountDirect(calls, mounts, target)) continue;
      for (const point of points) {
        const done = await run("umount", ["-R", point]);
        if (!done.ok) {
          lastReason = done.reason;
          const lazy = await run("umount", ["-l", "-R", point]);
          if (!lazy.ok) lastReason = lazy.reason;
        }
      }
    }
  } finally {
    calls?.close();
  }
  if (await isMounted(target)) {
    throw new MountError(`unmount ${target}: still mounted after retries: ${lastReason}`);
  }
}

/**
 * Unmount everything at or below `point` in `mounts` with umount2(2), the deepest and the most
 * recent first (what `umount -R` does). False at the first failure (busy, say): util-linux
 * then takes over, with its lazy detach.
 */
function unmountDirect(calls: MountSyscalls, mounts: readonly MountInfo[], point: string): boolean {
  const order = mounts
    .map((m, index) => ({ path: m.mountPoint, index }))
    .filter(({ path }) => path === point || path.startsWith(`${point}/`))
    .sort((a, b) => b.path.length - a.path.length || b.index - a.index);
  try {
    for (const { path } of order) calls.unmount(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Mount `mounts` on a fresh directory under `<root>/tmpmounts`, run `fn` with its path and
 * always unmount and remove the directory afterwards — also when `fn` or the mount throws
 * (containerd's `mount.WithTempMount`). `fn`'s error wins over a cleanup error. The directory
 * is removed only when empty, so a mount that would not go away never loses its contents.
 */
export async function withTempMount<T>(
  root: string,
  mounts: readonly MountSpec[],
  fn: (dir: string) => T | Promise<T>,
): Promise<T> {
  const base = `${root}/tmpmounts`;
  await Deno.mkdir(base, { recursive: true, mode: 0o700 });
  const dir = await Deno.makeTempDir({ dir: base, prefix: "containerd-mount" });
  let failed = false;
  try {
    await mountAll(mounts, dir);
    return await fn(dir);
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    let cleanupError: unknown;
    try {
      await unmountAll(dir);
    } catch (err) {
      cleanupError = err;
    }
    try {
      await Deno.remove(dir);
    } catch (err) {
      cleanupError ??= new MountError(`remove temp mount dir ${dir}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    // A cleanup failure is reported unless fn's own error is already on its way out.
    // deno-lint-ignore no-unsafe-finally
    if (cleanupError !== undefined && !failed) throw cleanupError;
  }
}
