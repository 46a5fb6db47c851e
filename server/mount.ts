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
